package audit_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/custos-dev/custos/audit"
)

func newKey(t testing.TB, name string) *audit.SigningKey {
	t.Helper()
	k, _, err := audit.GenerateSigningKey(name)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func openLog(t testing.TB, opts audit.Options) *audit.Log {
	t.Helper()
	l, err := audit.Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func event(i int) audit.Event {
	return audit.Event{
		Kind:       audit.Decision,
		Time:       time.Date(2026, 1, 2, 3, 4, 5, i, time.UTC),
		SessionID:  "s-1",
		Session:    "nightly",
		RequestID:  fmt.Sprintf("r-%d", i),
		Connection: "customers",
		Actor:      audit.Actor{UID: "https://issuer/agent-1", Type: "workload", Groups: []string{"agents"}},
		Request:    &audit.HTTPRequest{Method: "GET", Path: fmt.Sprintf("/customers/%d", i)},
		Decision:   &audit.DecisionInfo{ID: fmt.Sprintf("d-%d", i), Allow: i%3 != 0, Reasons: []string{"rule r"}, PolicyRevision: "rev-1"},
		Action:     &audit.Action{Kind: "http", Risk: "read", Summary: "GET /customers"},
	}
}

func appendN(t testing.TB, l *audit.Log, from, n int) []audit.Position {
	t.Helper()
	var out []audit.Position
	for i := from; i < from+n; i++ {
		p, err := l.Append(context.Background(), event(i))
		if err != nil {
			t.Fatalf("append %d: %v", i, err)
		}
		out = append(out, p)
	}
	return out
}
