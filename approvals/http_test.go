package approvals

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/custos-dev/custos/filters/approval"
	"github.com/custos-dev/custos/filters/identity"
)

// tokens is the authenticator of these tests: a token names its principal.
func tokens(_ context.Context, bearer string) (identity.Principal, error) {
	p, ok := map[string]identity.Principal{"agent": agent, "alice": alice, "bob": bob, "carol": carol, "robot": robot, "dave": humanAgent}[bearer]
	switch {
	case bearer == "broken":
		return identity.Principal{}, errors.New("issuer unreachable")
	case !ok:
		return identity.Principal{}, &identity.Error{Check: "expired"}
	}
	return p, nil
}

type api struct {
	t   *testing.T
	url string
}

func newAPI(t *testing.T, f *fixture) *api {
	mux := http.NewServeMux()
	h := NewHandler(f.svc, tokens)
	mux.Handle(ListPath, h)
	mux.Handle(PathPrefix, h)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return &api{t: t, url: srv.URL}
}

// do sends a request as token ("" for none) and decodes the JSON answer.
func (a *api) do(method, path, token, body string) (int, map[string]any) {
	a.t.Helper()
	req, err := http.NewRequest(method, a.url+path, strings.NewReader(body))
	if err != nil {
		a.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		a.t.Fatal(err)
	}
	defer resp.Body.Close()
	if cc := resp.Header.Get("cache-control"); cc != "no-store" {
		a.t.Errorf("%s %s: cache-control %q", method, path, cc)
	}
	raw, _ := io.ReadAll(resp.Body)
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		a.t.Fatalf("%s %s: %d, not JSON: %s", method, path, resp.StatusCode, raw)
	}
	return resp.StatusCode, m
}

func (a *api) want(method, path, token, body string, status int, code string) map[string]any {
	a.t.Helper()
	got, m := a.do(method, path, token, body)
	if got != status || (code != "" && m["error"] != code) {
		a.t.Fatalf("%s %s as %q: %d %v, want %d %s", method, path, token, got, m, status, code)
	}
	return m
}

func TestApprovalsAPI(t *testing.T) {
	f := newFixture(t, stores()["file"](t)(t))
	a := newAPI(t, f)
	id := f.open(t, request())
	p := "/v1/approvals/" + id

	// Who may ask.
	a.want("GET", p, "", "", 401, "unauthenticated")
	a.want("GET", p, "stale", "", 401, "unauthenticated")
	a.want("GET", p, "broken", "", 503, "unavailable")

	// Who may see: the requester and eligible approvers; to anyone else
	// it does not exist.
	for _, tok := range []string{"agent", "alice", "bob"} {
		m := a.want("GET", p, tok, "", 200, "")
		if m["id"] != id || m["state"] != "pending" || m["summary"] != "DELETE FROM orders WHERE id = 7" || m["fingerprint"] != "fp-1" {
			t.Fatalf("as %s: %v", tok, m)
		}
	}
	a.want("GET", p, "carol", "", 404, "not_found")
	a.want("GET", "/v1/approvals/apr_nothing", "alice", "", 404, "not_found")
	if m := a.want("GET", "/v1/approvals?status=pending", "carol", "", 200, ""); len(m["approvals"].([]any)) != 0 {
		t.Fatalf("carol lists %v", m)
	}
	if m := a.want("GET", "/v1/approvals?status=pending", "alice", "", 200, ""); len(m["approvals"].([]any)) != 1 {
		t.Fatalf("alice lists %v", m)
	}
	a.want("GET", "/v1/approvals?status=everything", "alice", "", 400, "bad_request")

	// Methods and bodies.
	a.want("DELETE", p, "alice", "", 405, "method_not_allowed")
	a.want("GET", p+"/approve", "alice", "", 405, "method_not_allowed")
	a.want("POST", p+"/frobnicate", "alice", "", 404, "not_found")
	a.want("POST", p+"/approve", "alice", `{"comment": 1}`, 400, "bad_request")
	a.want("POST", p+"/approve", "alice", `{"note": "x"}`, 400, "bad_request")
	a.want("POST", p+"/approve", "alice", `{"comment":"`+strings.Repeat("x", MaxBodyBytes)+`"}`, 413, "request_too_large")

	// Votes.
	a.want("POST", p+"/approve", "robot", "{}", 403, "not_eligible")
	a.want("POST", p+"/approve", "agent", "{}", 403, "not_eligible")
	a.want("POST", p+"/approve", "carol", "{}", 404, "not_found")
	mine := f.open(t, request(func(r *approval.Request) { r.Requester = humanAgent }))
	a.want("POST", "/v1/approvals/"+mine+"/approve", "dave", "{}", 403, "self_approval")

	waited := make(chan map[string]any, 1)
	go func() {
		_, m := a.do("GET", p+"/wait?timeout=5m", "agent", "")
		waited <- m
	}()
	m := a.want("POST", p+"/approve", "alice", `{"comment":"looks right"}`, 200, "")
	if m["state"] != "approved" || m["votes"].([]any)[0].(map[string]any)["comment"] != "looks right" {
		t.Fatalf("after approve: %v", m)
	}
	if w := <-waited; w["state"] != "approved" {
		t.Fatalf("wait returned %v", w)
	}
	a.want("POST", p+"/deny", "bob", `{"reason":"no"}`, 409, "already_resolved")

	// Wait: a bounded long poll, for those who may see.
	if m := a.want("GET", "/v1/approvals/"+mine+"/wait?timeout=0s", "dave", "", 200, ""); m["state"] != "pending" {
		t.Fatalf("wait with no time: %v", m)
	}
	a.want("GET", p+"/wait?timeout=soon", "agent", "", 400, "bad_request")
	a.want("GET", p+"/wait", "carol", "", 404, "not_found")

	// Revoke, by the requester.
	if m := a.want("POST", p+"/revoke", "agent", "", 200, ""); m["state"] != "revoked" {
		t.Fatalf("after revoke: %v", m)
	}
	a.want("POST", p+"/revoke", "agent", "", 409, "already_resolved")
	// A deny resolves.
	other := f.open(t, request(func(r *approval.Request) { r.Fingerprint = "fp-9" }))
	if m := a.want("POST", "/v1/approvals/"+other+"/deny", "bob", `{"reason":"not today"}`, 200, ""); m["state"] != "denied" || m["reason"] != "not today" {
		t.Fatalf("after deny: %v", m)
	}
}
