package main

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/custos-dev/custos/config"
	"github.com/custos-dev/custos/extproc"
	"github.com/custos-dev/custos/filters/approval"
	"github.com/custos-dev/custos/filters/policy"
	"github.com/custos-dev/custos/filters/record"
	"github.com/custos-dev/custos/stack"
	"github.com/custos-dev/custos/stack/stacktest"
)

// holdLength is how long the approver takes: past every timer Envoy would
// cut a request with if Custos' xDS set them wrong (ext_proc's message
// timeout, the route timeout, the idle timers, request_headers_timeout).
const holdLength = 2 * time.Minute

// everyRequestNeedsApproval asks for an approval on every request.
type everyRequestNeedsApproval struct{}

func (everyRequestNeedsApproval) Decide(context.Context, policy.Input) (policy.Decision, error) {
	return policy.Decision{Approval: &policy.Approval{Rule: "hold-test", Approvers: []string{"ops"}, MinApprovals: 1, Scope: "request"}}, nil
}

// slowApprover approves each request holdLength after it was opened.
type slowApprover struct {
	mu     sync.Mutex
	opened map[string]time.Time
}

func (a *slowApprover) Find(context.Context, approval.Lookup) ([]approval.Grant, error) {
	return nil, nil
}

func (a *slowApprover) Request(context.Context, approval.Request) (approval.Pending, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	id := "hold-" + time.Now().Format("150405.000000")
	a.opened[id] = time.Now()
	return approval.Pending{ID: id}, nil
}

func (a *slowApprover) Await(ctx context.Context, id string) (string, error) {
	a.mu.Lock()
	at := a.opened[id].Add(holdLength)
	a.mu.Unlock()
	select {
	case <-time.After(time.Until(at)):
		return approval.StateApproved, nil
	case <-ctx.Done():
		return approval.StatePending, ctx.Err()
	}
}

// A request held two minutes for its approval completes through real
// Envoy (and the Go data plane, at the same time): override_message_timeout,
// max_message_timeout, the route and idle timeouts, request_headers_timeout
// and the circuit breakers are set right.
func TestHoldOfTwoMinutesCompletesThroughRealEnvoy(t *testing.T) {
	t.Parallel()
	stacktest.ForEachDataPlane(t, func(t *testing.T, dp stack.DataPlane) {
		t.Parallel()
		holdTwoMinutes(t, dp)
	})
}

func holdTwoMinutes(t *testing.T, dp stack.DataPlane) {
	approver := &slowApprover{opened: map[string]time.Time{}}
	s := stacktest.Start(t, dp, stacktest.Options{
		Extra: "approvals:\n  mode: hold\n  timeout: 3m\n",
		Stages: func(c *config.Config, l *slog.Logger) (extproc.Stages, error) {
			st, err := extproc.DefaultStages(c, l)
			st.Policy, st.Grants = everyRequestNeedsApproval{}, approver
			return st, err
		},
	})
	start := time.Now()
	resp, body := get(t, s.URL+"/customers/3", nil)
	if resp.StatusCode != 200 {
		t.Fatalf("after %s: status %d (%s)", time.Since(start).Round(time.Second), resp.StatusCode, describe(body))
	}
	id := resp.Header.Get("x-custos-request-id")
	if len(s.Events.Of(record.Held, id)) != 1 || len(s.Events.Of(record.Approved, id)) != 1 {
		t.Fatal("the request was not held for its approval")
	}
	if s.Upstream.Count() != 1 {
		t.Fatalf("the upstream saw %d requests", s.Upstream.Count())
	}
}
