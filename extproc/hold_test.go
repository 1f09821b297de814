package extproc

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/custos-dev/custos/filters/approval"
	"github.com/custos-dev/custos/filters/policy"
	"github.com/custos-dev/custos/filters/record"
	"github.com/custos-dev/custos/names"
)

// needsApproval asks for an approval on every request.
type needsApproval struct{}

func (needsApproval) Decide(context.Context, policy.Input) (policy.Decision, error) {
	return policy.Decision{Allow: false, Approval: &policy.Approval{Rule: "deletes", Approvers: []string{"dba"}, MinApprovals: 1, Scope: "request"}}, nil
}

// decidedGrants opens approval requests and resolves each with state after
// the test releases it.
type decidedGrants struct {
	state   string
	release chan struct{}
	opened  chan approval.Request
}

func (g *decidedGrants) Find(context.Context, approval.Lookup) ([]approval.Grant, error) {
	return nil, nil
}
func (g *decidedGrants) Request(_ context.Context, r approval.Request) (approval.Pending, error) {
	g.opened <- r
	return approval.Pending{ID: "ap-1"}, nil
}
func (g *decidedGrants) Await(ctx context.Context, id string) (string, error) {
	select {
	case <-g.release:
		return g.state, nil
	case <-ctx.Done():
		return approval.StatePending, ctx.Err()
	}
}

const holdYAML = cfgYAML + `approvals:
  mode: hold
  timeout: 200ms
`

func TestHoldSendsTheOverrideFirstThenTheAnswer(t *testing.T) {
	for _, tc := range []struct {
		state     string
		release   bool
		wantReply string // "" for the request going on
		wantCode  string
	}{
		{approval.StateApproved, true, "", ""},
		{approval.StateDenied, true, "immediate", CodeApprovalDenied},
		{approval.StatePending, false, "immediate", CodeApprovalRequired}, // the hold times out
	} {
		t.Run(tc.state, func(t *testing.T) {
			g := &decidedGrants{state: tc.state, release: make(chan struct{}), opened: make(chan approval.Request, 1)}
			c := serveWith(t, holdYAML, func(s *Stages) { s.Policy = needsApproval{}; s.Grants = g })
			md := verdictMetadata(t, c)
			v, err := verdictFrom(md.GetFilterMetadata()[names.VerdictNamespace])
			if err != nil {
				t.Fatal(err)
			}
			if v.Hold == nil || v.Hold.ApprovalID != "ap-1" || v.Hold.Timeout != 200*time.Millisecond {
				t.Fatalf("verdict %+v, want a hold", v)
			}
			if r := <-g.opened; r.Rule != "deletes" || r.Fingerprint == "" || r.Requester.Subject != "anonymous" {
				t.Fatalf("approval request %+v", r)
			}
			s, err := c.proc.Process(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Send(requestHeaders(md)); err != nil {
				t.Fatal(err)
			}
			first, err := s.Recv()
			if err != nil {
				t.Fatal(err)
			}
			if d := first.GetOverrideMessageTimeout().AsDuration(); d != 200*time.Millisecond+names.HoldMargin || first.GetResponse() != nil {
				t.Fatalf("first message %v: want only override_message_timeout (hold + margin)", first)
			}
			if tc.release {
				close(g.release)
			}
			r, err := s.Recv()
			if err != nil {
				t.Fatal(err)
			}
			switch tc.wantReply {
			case "":
				if r.GetRequestHeaders() == nil {
					t.Fatalf("reply %v, want the request to go on", r)
				}
			default:
				im := r.GetImmediateResponse()
				var body map[string]any
				if err := json.Unmarshal(im.GetBody(), &body); err != nil || im.GetStatus().GetCode() != 403 || body["error"] != tc.wantCode || body["approval_id"] != "ap-1" {
					t.Fatalf("immediate response %v (%v)", im, err)
				}
			}
			if len(c.rec.of(record.Held)) != 1 || len(c.rec.of(record.Approved)) != 1 {
				t.Fatalf("held/resolved records: %d/%d", len(c.rec.of(record.Held)), len(c.rec.of(record.Approved)))
			}
		})
	}
}

func TestApprovalWithoutAStoreIsRefusedNotAllowed(t *testing.T) {
	c := serveWith(t, holdYAML, func(s *Stages) { s.Policy = needsApproval{} })
	resp, err := c.authz.Check(context.Background(), checkReq(routeExt(), "h", "/customers/1", nil))
	if err != nil {
		t.Fatal(err)
	}
	// Until an approval store is configured, the agent is told the request
	// needs an approval nobody here can give: refused, never allowed, never
	// held forever.
	if body := deniedBody(t, resp, 403); body["error"] != CodeApprovalRequired || body["approval_id"] != nil ||
		!strings.Contains(body["message"].(string), "no approval store") {
		t.Fatalf("body %v", body)
	}
}

func TestAsyncApprovalTellsTheAgent(t *testing.T) {
	g := &decidedGrants{release: make(chan struct{}), opened: make(chan approval.Request, 1)}
	c := serveWith(t, cfgYAML+"approvals:\n  mode: async\n", func(s *Stages) { s.Policy = needsApproval{}; s.Grants = g })
	resp, err := c.authz.Check(context.Background(), checkReq(routeExt(), "h", "/customers/1", nil))
	if err != nil {
		t.Fatal(err)
	}
	if body := deniedBody(t, resp, 403); body["error"] != CodeApprovalRequired || body["approval_id"] != "ap-1" || body["status"] != "pending" {
		t.Fatalf("body %v", body)
	}
}
