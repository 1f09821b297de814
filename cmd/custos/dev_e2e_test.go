package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/custos-dev/custos/config"
	"github.com/custos-dev/custos/controlplane"
	"github.com/custos-dev/custos/envoy/dataplane"
	"github.com/custos-dev/custos/examples/demo"
	"github.com/custos-dev/custos/extproc"
	"github.com/custos-dev/custos/stack"
)

// upstreamLog is a real HTTP upstream (the demo API) that remembers what it
// received, so tests can tell what crossed the data plane.
type upstreamLog struct {
	mu   sync.Mutex
	reqs []*http.Request
}

func (u *upstreamLog) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.mu.Lock()
		u.reqs = append(u.reqs, r.Clone(context.Background()))
		u.mu.Unlock()
		h.ServeHTTP(w, r)
	})
}

func (u *upstreamLog) count() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.reqs)
}

func (u *upstreamLog) last(t *testing.T) *http.Request {
	t.Helper()
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.reqs) == 0 {
		t.Fatal("the upstream received nothing")
	}
	return u.reqs[len(u.reqs)-1]
}

// devStack is the control plane and the data plane, as `custos dev` runs
// them, on loopback with ephemeral ports, and a recording demo upstream.
type devStack struct {
	cp       *controlplane.ControlPlane
	dp       *dataplane.DataPlane
	dpURL    string
	upstream *upstreamLog
	cfg      *config.Config
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func devConfig(upstreamURL string, extra string) string {
	return stack.LoopbackListen + fmt.Sprintf(`connections:
  - name: customers
    upstream: %s
    hosts: [customers.internal]
%s`, upstreamURL, extra)
}

func startStack(t *testing.T, extraConnections string) *devStack {
	t.Helper()
	up := &upstreamLog{}
	srv := httptest.NewServer(up.wrap(demo.Handler()))
	t.Cleanup(srv.Close)
	cfg, err := config.Parse([]byte(devConfig(srv.URL, extraConnections)))
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	st, err := stack.Start(context.Background(), stack.Options{Config: cfg, NodeID: t.Name(), Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	return &devStack{cp: st.CP, dp: st.DP, dpURL: "http://" + st.Addr, upstream: up, cfg: cfg}
}

func do(t *testing.T, req *http.Request) (*http.Response, []byte) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, body
}

func get(t *testing.T, url string, headers map[string]string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range headers {
		if strings.EqualFold(k, "host") {
			req.Host = v
			continue
		}
		req.Header.Set(k, v)
	}
	return do(t, req)
}

// contractError checks a reply Custos or Envoy produced: JSON with the
// stable code and the request id that is also in x-custos-request-id.
func contractError(t *testing.T, resp *http.Response, body []byte, status int, code string) map[string]any {
	t.Helper()
	if resp.StatusCode != status {
		t.Fatalf("status %d, want %d; body %s", resp.StatusCode, status, body)
	}
	if ct := resp.Header.Get("content-type"); !strings.HasPrefix(ct, "application/json") {
		t.Fatalf("content-type %q, want JSON; body %s", ct, body)
	}
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatalf("body is not JSON: %v: %s", err, body)
	}
	if m["error"] != code {
		t.Fatalf("error %v, want %q; body %s", m["error"], code, body)
	}
	id, _ := m["request_id"].(string)
	if id == "" || id == "-" {
		t.Fatalf("no request_id in %s", body)
	}
	if got := resp.Header.Get("x-custos-request-id"); got != id {
		t.Fatalf("x-custos-request-id %q, body request_id %q", got, id)
	}
	return m
}

func TestDevRequestReachesUpstreamWithRequestID(t *testing.T) {
	s := startStack(t, "")
	resp, body := get(t, s.dpURL+"/customers/7", nil)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d (%s)", resp.StatusCode, describe(body))
	}
	var c demo.Customer
	if err := json.Unmarshal(body, &c); err != nil || c.ID != 7 {
		t.Fatalf("body is not customer 7: %v (%s)", err, describe(body))
	}
	if resp.Header.Get("x-custos-request-id") == "" {
		t.Fatal("no x-custos-request-id on the response")
	}
	if got := s.upstream.last(t).URL.Path; got != "/7" {
		t.Fatalf("upstream path %q, want the prefix stripped: /7", got)
	}
}

func TestDevUnknownPrefixIs404(t *testing.T) {
	s := startStack(t, "")
	resp, body := get(t, s.dpURL+"/nowhere/1", nil)
	contractError(t, resp, body, 404, "not_found")
	if s.upstream.count() != 0 {
		t.Fatal("an unknown prefix reached the upstream")
	}
}

func TestDevUnconfiguredConnectionIs403(t *testing.T) {
	// xDS still routes /ghost/ (a configuration Envoy holds) while the
	// services have dropped the connection: Check must refuse it.
	s := startStack(t, "  - name: ghost\n    upstream: http://127.0.0.1:1\n")
	without, err := config.Parse([]byte(devConfig("http://127.0.0.1:1", "")))
	if err != nil {
		t.Fatal(err)
	}
	st, err := extproc.DefaultStages(without, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	p, err := extproc.NewPipeline(without, st, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	s.cp.Services.SetPipeline(p)
	resp, body := get(t, s.dpURL+"/ghost/1", nil)
	m := contractError(t, resp, body, 403, "forbidden")
	if !strings.Contains(fmt.Sprint(m["message"]), `"ghost" is not configured`) {
		t.Fatalf("message %v does not name the connection", m["message"])
	}
}

func TestDevFailsClosedWhenGRPCServicesAreDown(t *testing.T) {
	s := startStack(t, "")
	s.cp.StopGRPC()
	resp, body := get(t, s.dpURL+"/customers/1", nil)
	contractError(t, resp, body, 503, "unavailable")
	if s.upstream.count() != 0 {
		t.Fatal("with the gRPC services down the request was forwarded")
	}
}

func TestDevEscapedSlashIsRefused(t *testing.T) {
	s := startStack(t, "")
	for _, p := range []string{"/customers/1%2F..%2F2", "/customers/1%2f2", "/customers/1%5C2"} {
		resp, body := get(t, s.dpURL+p, nil)
		contractError(t, resp, body, 400, "bad_request")
	}
	if s.upstream.count() != 0 {
		t.Fatal("a path with an escaped slash reached the upstream")
	}
}

func TestDevAgentRequestIDDoesNotSurvive(t *testing.T) {
	s := startStack(t, "")
	const forged = "forged-by-agent"
	resp, body := get(t, s.dpURL+"/customers/1", map[string]string{
		"x-custos-request-id": forged,
		"x-custos-principal":  "admin",
		"x-custos-made-up":    "1",
		"x-custos-session":    "nightly-run",
		"x-request-id":        forged,
		"authorization":       "Bearer agent-token",
		"proxy-authorization": "Basic agent",
	})
	if resp.StatusCode != 200 {
		t.Fatalf("status %d (%s)", resp.StatusCode, describe(body))
	}
	if got := resp.Header.Get("x-custos-request-id"); got == "" || got == forged {
		t.Fatalf("x-custos-request-id %q: the agent's value survived", got)
	}
	up := s.upstream.last(t)
	for _, h := range []string{"x-custos-request-id", "x-custos-principal", "x-custos-made-up"} {
		if v := up.Header.Get(h); v != "" {
			t.Errorf("upstream received %s: %q", h, v)
		}
	}
	if got := up.Header.Get("x-request-id"); got != resp.Header.Get("x-custos-request-id") {
		t.Errorf("upstream x-request-id %q, want Custos' id %q", got, resp.Header.Get("x-custos-request-id"))
	}
	// The connection does not say forward_token: the agent's credentials
	// stay with Custos.
	for _, h := range []string{"authorization", "proxy-authorization"} {
		if up.Header.Get(h) != "" {
			t.Errorf("upstream received the agent's %s", h)
		}
	}
	if up.Header.Get("x-custos-session") != "nightly-run" {
		t.Error("x-custos-session, which an agent may send, was stripped")
	}
}

func TestDevHostRoutesToConnection(t *testing.T) {
	s := startStack(t, "")
	resp, body := get(t, s.dpURL+"/3", map[string]string{"host": "customers.internal"})
	if resp.StatusCode != 200 {
		t.Fatalf("status %d (%s)", resp.StatusCode, describe(body))
	}
	var c demo.Customer
	if err := json.Unmarshal(body, &c); err != nil || c.ID != 3 {
		t.Fatalf("body is not customer 3: %v (%s)", err, describe(body))
	}
	up := s.upstream.last(t)
	if up.URL.Path != "/3" {
		t.Fatalf("upstream path %q, want /3", up.URL.Path)
	}
	if resp.Header.Get("x-custos-request-id") == "" {
		t.Fatal("no x-custos-request-id")
	}
}

func TestDevReloadAppliesGoodFileAndKeepsOldOnBadFile(t *testing.T) {
	s := startStack(t, "")
	path := filepath.Join(t.TempDir(), "custos.yaml")
	up := s.cfg.Connections[0].Upstream
	good := devConfig(up, "  - name: second\n    upstream: "+up+"\n")
	if err := os.WriteFile(path, []byte(good), 0o600); err != nil {
		t.Fatal(err)
	}
	r := &controlplane.Reloader{Path: path, Apply: s.cp.Apply, Log: testLogger(t)}
	before := s.cp.XDS.Version()
	if err := r.Reload(context.Background()); err != nil {
		t.Fatalf("reload of a good file: %v", err)
	}
	v := s.cp.XDS.Version()
	if v == before {
		t.Fatal("a changed configuration kept the snapshot version")
	}
	// The data plane follows over xDS; poll until the new route serves.
	deadline := time.Now().Add(5 * time.Second)
	for {
		resp, _ := get(t, s.dpURL+"/second/2", nil)
		if resp.StatusCode == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the new connection never served: last status %d", resp.StatusCode)
		}
		time.Sleep(20 * time.Millisecond)
	}

	if err := os.WriteFile(path, []byte(good+"    upstrem: http://x\n    policy_mode: sometimes\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	err := r.Reload(context.Background())
	if err == nil || !strings.Contains(err.Error(), "connections[1].upstrem") || !strings.Contains(err.Error(), "connections[1].policy_mode") {
		t.Fatalf("reload of a bad file: %v, want both errors with their key paths", err)
	}
	if s.cp.XDS.Version() != v {
		t.Fatal("a rejected file changed the served snapshot")
	}
	for _, p := range []string{"/customers/1", "/second/1"} {
		resp, body := get(t, s.dpURL+p, nil)
		if resp.StatusCode != 200 {
			t.Fatalf("%s after a rejected reload: status %d (%s)", p, resp.StatusCode, describe(body))
		}
	}
}

// Check's own 400 (a bad x-custos-session) keeps its body: the listener's
// 400 mapper skips replies Custos made.
func TestDevCustosDenialKeepsItsMessage(t *testing.T) {
	s := startStack(t, "")
	resp, body := get(t, s.dpURL+"/customers/1", map[string]string{"x-custos-session": "bad session!"})
	m := contractError(t, resp, body, 400, "bad_request")
	if !strings.Contains(fmt.Sprint(m["message"]), "x-custos-session") {
		t.Fatalf("message %v: the local reply mapper rewrote Custos' own denial", m["message"])
	}
	if s.upstream.count() != 0 {
		t.Fatal("forwarded")
	}
}

// A connection host given with a port still routes by host: the listener
// strips the port before matching.
func TestDevHostWithPortRoutes(t *testing.T) {
	s := startStack(t, "  - name: billing\n    upstream: "+"http://127.0.0.1:1"+"\n    hosts: [billing.internal:8443]\n")
	resp, body := get(t, s.dpURL+"/x", map[string]string{"host": "billing.internal:8443"})
	// The upstream (port 1) is unreachable: a 503 from the router proves the
	// request was routed to billing rather than to the catch-all 404.
	contractError(t, resp, body, 503, "unavailable")
}

// describe shows a reply in test output: a Custos error body (codes and
// ids only) as it is, anything else by its size, since the demo's customer
// records hold card numbers and the like that never go to test output.
func describe(body []byte) string {
	var m map[string]any
	if json.Unmarshal(body, &m) == nil {
		if _, ok := m["error"]; ok {
			return string(body)
		}
	}
	return fmt.Sprintf("%d bytes, not shown", len(body))
}
