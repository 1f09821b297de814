package record

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestLogRecordsOneLinePerExchange(t *testing.T) {
	var buf bytes.Buffer
	l := Log{Logger: slog.New(slog.NewJSONHandler(&buf, nil))}
	start := time.Now()
	err := l.Record(context.Background(), Exchange{
		RequestID: "r-1", SessionID: "s-1", Connection: "customers", Method: "GET", Path: "/7",
		Status: 200, Outcome: Completed, Started: start, Finished: start.Add(time.Millisecond),
	})
	if err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	if strings.Count(out, "\n") != 1 {
		t.Fatalf("want one line, got %q", out)
	}
	for _, want := range []string{`"request_id":"r-1"`, `"session_id":"s-1"`, `"connection":"customers"`, `"status":200`, `"outcome":"completed"`, `"path":"/7"`} {
		if !strings.Contains(out, want) {
			t.Errorf("line lacks %s: %s", want, out)
		}
	}
}
