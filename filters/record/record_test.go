package record

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestLogRecordsOneLinePerEvent(t *testing.T) {
	start := time.Now()
	for _, tc := range []struct {
		e    Event
		want []string
	}{
		{Event{Kind: Completed, RequestID: "r-1", SessionID: "s-1", Connection: "customers", Method: "GET", Path: "/7",
			Status: 200, Started: start, Finished: start.Add(time.Millisecond)},
			[]string{`"kind":"response"`, `"request_id":"r-1"`, `"session_id":"s-1"`, `"connection":"customers"`, `"status":200`, `"path":"/7"`, `"duration"`}},
		{Event{Kind: Decided, RequestID: "r-2", DecisionID: "d-2", Allow: false, Status: 403, Reasons: []string{"no"}, Risk: "write"},
			[]string{`"kind":"decision"`, `"decision_id":"d-2"`, `"allow":false`, `"reasons":["no"]`, `"risk":"write"`, `"status":403`}},
		{Event{Kind: Aborted, RequestID: "r-3", Detail: "client left"},
			[]string{`"kind":"aborted"`, `"detail":"client left"`}},
	} {
		var buf bytes.Buffer
		l := Log{Logger: slog.New(slog.NewJSONHandler(&buf, nil))}
		if err := l.Record(context.Background(), tc.e); err != nil {
			t.Fatal(err)
		}
		out := buf.String()
		if strings.Count(out, "\n") != 1 {
			t.Fatalf("want one line, got %q", out)
		}
		for _, want := range tc.want {
			if !strings.Contains(out, want) {
				t.Errorf("%s line lacks %s: %s", tc.e.Kind, want, out)
			}
		}
	}
}
