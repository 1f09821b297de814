package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/custos-dev/custos/config"
	"github.com/custos-dev/custos/devissuer"
	"github.com/custos-dev/custos/stack"
	"github.com/custos-dev/custos/stack/stacktest"
)

// approvalsFixture is a stack deciding with the default bundle (a DELETE
// by a writer needs one approval from custos-approvers) and tokens for the
// agent, an approver, a second approver and a workload.
type approvalsFixture struct {
	*stacktest.Fixture
	agent, approver, workload string
	api                       string
}

func startApprovals(t *testing.T, dp stack.DataPlane, mode string, hold time.Duration) *approvalsFixture {
	t.Helper()
	s := stacktest.Start(t, dp, stacktest.Options{Extra: `policy:
  bundle: builtin:default
approvals:
  mode: ` + mode + `
  hold: ` + hold.String() + `
dev:
  issuer: true
`})
	mint := func(c devissuer.Claims) string {
		tok, _, err := s.CP.DevIssuer.Mint(c)
		if err != nil {
			t.Fatal(err)
		}
		return "Bearer " + tok
	}
	return &approvalsFixture{Fixture: s,
		agent:    mint(devissuer.Claims{Subject: "nightly-etl", Groups: []string{"customers-writers"}}),
		approver: mint(devissuer.Claims{Subject: "dana", Human: true, Groups: []string{"custos-approvers"}}),
		workload: mint(devissuer.Claims{Subject: "bot", Groups: []string{"custos-approvers"}}),
		api:      "http://" + s.CP.HTTPAddr,
	}
}

// call sends method to the data plane with the agent's token.
func (f *approvalsFixture) call(t *testing.T, method string, headers map[string]string) (*http.Response, []byte) {
	t.Helper()
	req, _ := http.NewRequest(method, f.URL+"/customers/1", nil)
	req.Header.Set("authorization", f.agent)
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	return do(t, req)
}

// apiCall calls the approvals API as auth.
func (f *approvalsFixture) apiCall(t *testing.T, method, path, auth string, body any) (int, map[string]any) {
	t.Helper()
	var rd *bytes.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	} else {
		rd = bytes.NewReader(nil)
	}
	req, _ := http.NewRequest(method, f.api+path, rd)
	req.Header.Set("authorization", auth)
	req.Header.Set("content-type", "application/json")
	resp, raw := do(t, req)
	var m map[string]any
	_ = json.Unmarshal(raw, &m)
	return resp.StatusCode, m
}

// pending waits for one pending approval and returns its id.
func (f *approvalsFixture) pending(t *testing.T) string {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		req, _ := http.NewRequest("GET", f.api+"/v1/approvals?status=pending", nil)
		req.Header.Set("authorization", f.approver)
		resp, raw := do(t, req)
		var list struct {
			Approvals []struct {
				ID string `json:"id"`
			} `json:"approvals"`
		}
		if resp.StatusCode == 200 && json.Unmarshal(raw, &list) == nil && len(list.Approvals) > 0 {
			return list.Approvals[0].ID
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("no pending approval appeared")
	return ""
}

// Hold mode through both data planes: a DELETE is held; an approver
// approves through the API and the same held request completes at the
// upstream; a denied one is 403 approval_denied; one nobody answers is 403
// approval_required at the end of the hold. Self-approval and workloads are
// refused.
func TestHeldApprovalsThroughBothDataPlanes(t *testing.T) {
	stacktest.ForEachDataPlane(t, func(t *testing.T, dp stack.DataPlane) {
		f := startApprovals(t, dp, "hold", 30*time.Second)

		type result struct {
			status int
			body   []byte
		}
		hold := func() chan result {
			done := make(chan result, 1)
			go func() {
				resp, body := f.call(t, "DELETE", nil)
				done <- result{resp.StatusCode, body}
			}()
			return done
		}

		before := f.Upstream.Count()
		done := hold()
		id := f.pending(t)
		if f.Upstream.Count() != before {
			t.Fatal("the held request reached the upstream before its approval")
		}
		if st, m := f.apiCall(t, "POST", "/v1/approvals/"+id+"/approve", f.agent, map[string]string{"comment": "mine"}); st != 403 || m["error"] != "self_approval" && m["error"] != "not_eligible" {
			t.Fatalf("the requester voting: %d %v", st, m)
		}
		if st, m := f.apiCall(t, "POST", "/v1/approvals/"+id+"/approve", f.workload, nil); st != 403 || m["error"] != "not_eligible" {
			t.Fatalf("a workload voting: %d %v", st, m)
		}
		if st, m := f.apiCall(t, "POST", "/v1/approvals/"+id+"/approve", f.approver, map[string]string{"comment": "ok for the cleanup"}); st != 200 {
			t.Fatalf("approve: %d %v", st, m)
		}
		r := <-done
		// The demo upstream answers DELETE with 405: it was reached.
		if r.status != 405 || f.Upstream.Count() != before+1 {
			t.Fatalf("the approved request: %d %s", r.status, r.body)
		}

		done = hold()
		id = f.pending(t)
		if st, m := f.apiCall(t, "POST", "/v1/approvals/"+id+"/deny", f.approver, map[string]string{"reason": "not during the freeze"}); st != 200 {
			t.Fatalf("deny: %d %v", st, m)
		}
		r = <-done
		if r.status != 403 || !strings.Contains(string(r.body), `"approval_denied"`) || f.Upstream.Count() != before+1 ||
			!strings.Contains(string(r.body), `"reason":"not during the freeze"`) || !strings.Contains(string(r.body), `/dana"`) {
			t.Fatalf("the denied request: %d %s", r.status, r.body)
		}
	})
}

// A hold nobody answers ends with 403 approval_required and the id, before
// Envoy's own timer, so the agent can come back.
func TestHoldTimesOutWithTheApprovalID(t *testing.T) {
	stacktest.ForEachDataPlane(t, func(t *testing.T, dp stack.DataPlane) {
		f := startApprovals(t, dp, "hold", 2*time.Second)
		resp, body := f.call(t, "DELETE", nil)
		m := contractError(t, resp, body, 403, "approval_required")
		if id, _ := m["approval_id"].(string); id == "" || !strings.HasSuffix(m["wait_url"].(string), "/v1/approvals/"+id+"/wait") {
			t.Fatalf("body %s", body)
		}
	})
}

// Async mode: 403 with the id at once; approved; the retry with the header
// goes through once; again, it is refused (the grant is used).
func TestAsyncApprovalsThroughBothDataPlanes(t *testing.T) {
	stacktest.ForEachDataPlane(t, func(t *testing.T, dp stack.DataPlane) {
		f := startApprovals(t, dp, "async", time.Minute)
		before := f.Upstream.Count()
		resp, body := f.call(t, "DELETE", nil)
		m := contractError(t, resp, body, 403, "approval_required")
		id, _ := m["approval_id"].(string)
		if id == "" || m["status"] != "pending" {
			t.Fatalf("body %s", body)
		}
		// A retry before the approval is still refused.
		resp, body = f.call(t, "DELETE", map[string]string{"x-custos-approval-id": id})
		contractError(t, resp, body, 403, "approval_required")
		if st, m := f.apiCall(t, "POST", "/v1/approvals/"+id+"/approve", f.approver, map[string]string{"comment": "ok"}); st != 200 {
			t.Fatalf("approve: %d %v", st, m)
		}
		if st, m := f.apiCall(t, "GET", "/v1/approvals/"+id+"/wait?timeout=5s", f.agent, nil); st != 200 || m["state"] != "approved" {
			t.Fatalf("wait: %d %v", st, m)
		}
		resp, body = f.call(t, "DELETE", map[string]string{"x-custos-approval-id": id})
		if resp.StatusCode != 405 || f.Upstream.Count() != before+1 {
			t.Fatalf("the approved retry: %d %s", resp.StatusCode, body)
		}
		resp, body = f.call(t, "DELETE", map[string]string{"x-custos-approval-id": id})
		contractError(t, resp, body, 403, "approval_required")
		if f.Upstream.Count() != before+1 {
			t.Fatal("a used grant let a second request through")
		}
		// Votes after resolution are refused.
		if st, _ := f.apiCall(t, "POST", "/v1/approvals/"+id+"/deny", f.approver, map[string]string{"reason": "late"}); st != 409 {
			t.Fatalf("a vote after resolution: %d", st)
		}
	})
}

// Pending approvals survive a restart: the store is a file.
func TestPendingApprovalSurvivesARestart(t *testing.T) {
	stacktest.ForEachDataPlane(t, func(t *testing.T, dp stack.DataPlane) {
		f := startApprovals(t, dp, "async", time.Minute)
		resp, body := f.call(t, "DELETE", nil)
		m := contractError(t, resp, body, 403, "approval_required")
		id := m["approval_id"].(string)
		cfg := *f.Config
		// The same listen.http, so that the dev issuer keeps its URL (its keys
		// persist beside the audit directory): the tokens minted before still
		// verify.
		cfg.Listen.HTTP = f.CP.HTTPAddr
		f.Close()

		st, err := stack.Start(context.Background(), stack.Options{Config: &cfg, DataPlane: dp, NodeID: t.Name()})
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		g := &approvalsFixture{Fixture: &stacktest.Fixture{Stack: st, URL: "http://" + st.Addr, Config: &cfg, Upstream: f.Upstream}, api: "http://" + st.CP.HTTPAddr}
		g.agent, g.approver = f.agent, f.approver
		if st, m := g.apiCall(t, "GET", "/v1/approvals/"+id, g.approver, nil); st != 200 || m["state"] != "pending" {
			t.Fatalf("after a restart: %d %v", st, m)
		}
		if st, m := g.apiCall(t, "POST", "/v1/approvals/"+id+"/approve", g.approver, nil); st != 200 {
			t.Fatalf("approve after a restart: %d %v", st, m)
		}
		resp, body = g.call(t, "DELETE", map[string]string{"x-custos-approval-id": id})
		if resp.StatusCode != 405 {
			t.Fatalf("the approved retry after a restart: %d %s", resp.StatusCode, body)
		}
	})
}

// approvals.ui: the approvers' page signs in with the configured issuer
// (here an OIDC provider of its own on loopback, not custos dev's).
func TestApprovalsPageSignsInWithTheConfiguredIssuer(t *testing.T) {
	mux := http.NewServeMux()
	idp := httptest.NewServer(mux)
	t.Cleanup(idp.Close)
	is, err := devissuer.New(devissuer.Options{URL: idp.URL + devissuer.Path})
	if err != nil {
		t.Fatal(err)
	}
	mux.Handle(devissuer.Path+"/", is)
	httpAddr := freePort(t)
	s := stacktest.Start(t, stack.Go, stacktest.Options{Config: func(u string) (*config.Config, error) {
		return config.Parse([]byte(`listen:
  grpc: 127.0.0.1:0
  xds: 127.0.0.1:0
  http: ` + httpAddr + `
  dataplane: 127.0.0.1:0
identity:
  issuers:
    - issuer: ` + is.URL() + `
      audiences: [api://custos]
connections:
  - name: customers
    upstream: ` + u + `
approvals:
  ui:
    issuer: ` + is.URL() + `
    client_id: custos-approvals-page
    base_url: http://` + httpAddr + `
`))
	}})
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noFollow.Get("http://" + s.CP.HTTPAddr + "/ui/login")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc := resp.Header.Get("location")
	if resp.StatusCode/100 != 3 || !strings.HasPrefix(loc, is.URL()+devissuer.AuthorizePath+"?") ||
		!strings.Contains(loc, "client_id=custos-approvals-page") || !strings.Contains(loc, "code_challenge_method=S256") {
		t.Fatalf("sign-in: %d to %q", resp.StatusCode, loc)
	}
}
