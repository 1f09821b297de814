package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/custos-dev/custos/controlplane"
	"github.com/custos-dev/custos/examples/demo"
	"github.com/custos-dev/custos/extproc"
	"github.com/custos-dev/custos/filters/record"
	"github.com/custos-dev/custos/stack"
	"github.com/custos-dev/custos/stack/stacktest"
)

// e2e runs one end-to-end test through both data planes, each with its own
// stack: the control plane, the data plane, the demo upstream as the
// connection "customers" (plus extra connections).
func e2e(t *testing.T, extra string, f func(t *testing.T, s *stacktest.Fixture)) {
	t.Helper()
	stacktest.ForEachDataPlane(t, func(t *testing.T, dp stack.DataPlane) {
		f(t, stacktest.Start(t, dp, stacktest.Options{Extra: extra}))
	})
}

func testLogger(*testing.T) *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// last is the last request the upstream received.
func last(t *testing.T, s *stacktest.Fixture) *http.Request {
	t.Helper()
	r, ok := s.Upstream.Last()
	if !ok {
		t.Fatal("the upstream received nothing")
	}
	return r
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
	e2e(t, "", func(t *testing.T, s *stacktest.Fixture) {
		resp, body := get(t, s.URL+"/customers/7", nil)
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
		if got := last(t, s).URL.Path; got != "/7" {
			t.Fatalf("upstream path %q, want the prefix stripped: /7", got)
		}
	})
}

func TestDevUnknownPrefixIs404(t *testing.T) {
	e2e(t, "", func(t *testing.T, s *stacktest.Fixture) {
		resp, body := get(t, s.URL+"/nowhere/1", nil)
		contractError(t, resp, body, 404, "not_found")
		if s.Upstream.Count() != 0 {
			t.Fatal("an unknown prefix reached the upstream")
		}
	})
}

func TestDevUnconfiguredConnectionIs403(t *testing.T) {
	// xDS still routes /ghost/ (a configuration Envoy holds) while the
	// services have dropped the connection: Check must refuse it.
	e2e(t, "  - name: ghost\n    upstream: http://127.0.0.1:1\n", func(t *testing.T, s *stacktest.Fixture) {
		without, err := stack.CustomersConfig("http://127.0.0.1:1", "")
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
		s.CP.Services.SetPipeline(p)
		resp, body := get(t, s.URL+"/ghost/1", nil)
		m := contractError(t, resp, body, 403, "forbidden")
		if !strings.Contains(fmt.Sprint(m["message"]), `"ghost" is not configured`) {
			t.Fatalf("message %v does not name the connection", m["message"])
		}
	})
}

func TestDevFailsClosedWhenGRPCServicesAreDown(t *testing.T) {
	e2e(t, "", func(t *testing.T, s *stacktest.Fixture) {
		s.CP.StopGRPC()
		resp, body := get(t, s.URL+"/customers/1", nil)
		contractError(t, resp, body, 503, "unavailable")
		if s.Upstream.Count() != 0 {
			t.Fatal("with the gRPC services down the request was forwarded")
		}
	})
}

func TestDevEscapedSlashIsRefused(t *testing.T) {
	e2e(t, "", func(t *testing.T, s *stacktest.Fixture) {
		for _, p := range []string{"/customers/1%2F..%2F2", "/customers/1%2f2", "/customers/1%5C2"} {
			resp, body := get(t, s.URL+p, map[string]string{"x-request-id": "forged"})
			m := contractError(t, resp, body, 400, "bad_request")
			// Refused by Check: Custos' own id, and the attempt is on record.
			if d := s.Events.Of(record.Decided, m["request_id"].(string)); m["request_id"] == "forged" || len(d) != 1 || d[0].Allow {
				t.Fatalf("%s: request id %v, records %+v", p, m["request_id"], d)
			}
		}
		if s.Upstream.Count() != 0 {
			t.Fatal("a path with an escaped slash reached the upstream")
		}
	})
}

func TestDevAgentRequestIDDoesNotSurvive(t *testing.T) {
	e2e(t, "", func(t *testing.T, s *stacktest.Fixture) {
		const forged = "forged-by-agent"
		resp, body := get(t, s.URL+"/customers/1", map[string]string{
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
		up := last(t, s)
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
	})
}

func TestDevHostRoutesToConnection(t *testing.T) {
	e2e(t, "", func(t *testing.T, s *stacktest.Fixture) {
		resp, body := get(t, s.URL+"/3", map[string]string{"host": "customers.internal"})
		if resp.StatusCode != 200 {
			t.Fatalf("status %d (%s)", resp.StatusCode, describe(body))
		}
		var c demo.Customer
		if err := json.Unmarshal(body, &c); err != nil || c.ID != 3 {
			t.Fatalf("body is not customer 3: %v (%s)", err, describe(body))
		}
		up := last(t, s)
		if up.URL.Path != "/3" {
			t.Fatalf("upstream path %q, want /3", up.URL.Path)
		}
		if resp.Header.Get("x-custos-request-id") == "" {
			t.Fatal("no x-custos-request-id")
		}
	})
}

func TestDevReloadAppliesGoodFileAndKeepsOldOnBadFile(t *testing.T) {
	e2e(t, "", func(t *testing.T, s *stacktest.Fixture) {
		path := filepath.Join(t.TempDir(), "custos.yaml")
		up := s.Config.Connections[0].Upstream
		good := stack.LoopbackListen + "connections:\n  - name: customers\n    upstream: " + up +
			"\n    hosts: [customers.internal]\n  - name: second\n    upstream: " + up + "\n"
		if err := os.WriteFile(path, []byte(good), 0o600); err != nil {
			t.Fatal(err)
		}
		r := &controlplane.Reloader{Path: path, Apply: s.Apply, Log: testLogger(t)}
		before := s.CP.XDS.Version()
		if err := r.Reload(context.Background()); err != nil {
			t.Fatalf("reload of a good file: %v", err)
		}
		v := s.CP.XDS.Version()
		if v == before {
			t.Fatal("a changed configuration kept the snapshot version")
		}
		// The data plane follows over xDS: wait for its ACK of the new version.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.CP.XDS.WaitACK(ctx, v); err != nil {
			t.Fatal(err)
		}
		if resp, body := get(t, s.URL+"/second/2", nil); resp.StatusCode != 200 {
			t.Fatalf("the new connection does not serve: status %d (%s)", resp.StatusCode, describe(body))
		}

		if err := os.WriteFile(path, []byte(good+"    upstrem: http://x\n    policy_mode: sometimes\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		err := r.Reload(context.Background())
		if err == nil || !strings.Contains(err.Error(), "connections[1].upstrem") || !strings.Contains(err.Error(), "connections[1].policy_mode") {
			t.Fatalf("reload of a bad file: %v, want both errors with their key paths", err)
		}
		if s.CP.XDS.Version() != v {
			t.Fatal("a rejected file changed the served snapshot")
		}
		for _, p := range []string{"/customers/1", "/second/1"} {
			resp, body := get(t, s.URL+p, nil)
			if resp.StatusCode != 200 {
				t.Fatalf("%s after a rejected reload: status %d (%s)", p, resp.StatusCode, describe(body))
			}
		}
	})
}

// Check's own 400 (a bad x-custos-session) keeps its body: the listener's
// 400 mapper skips replies Custos made.
func TestDevCustosDenialKeepsItsMessage(t *testing.T) {
	e2e(t, "", func(t *testing.T, s *stacktest.Fixture) {
		resp, body := get(t, s.URL+"/customers/1", map[string]string{"x-custos-session": "bad session!"})
		m := contractError(t, resp, body, 400, "bad_request")
		if !strings.Contains(fmt.Sprint(m["message"]), "x-custos-session") {
			t.Fatalf("message %v: the local reply mapper rewrote Custos' own denial", m["message"])
		}
		if s.Upstream.Count() != 0 {
			t.Fatal("forwarded")
		}
	})
}

// A connection host given with a port still routes by host: the listener
// strips the port before matching.
func TestDevHostWithPortRoutes(t *testing.T) {
	e2e(t, "  - name: billing\n    upstream: "+"http://127.0.0.1:1"+"\n    hosts: [billing.internal:8443]\n", func(t *testing.T, s *stacktest.Fixture) {
		resp, body := get(t, s.URL+"/x", map[string]string{"host": "billing.internal:8443"})
		// The upstream (port 1) is unreachable: a 503 from the router proves the
		// request was routed to billing rather than to the catch-all 404.
		contractError(t, resp, body, 503, "unavailable")
	})
}

// Every spelling of a connection's host that the connection manager treats
// as the same host reaches the upstream with the same path, and the path
// recorded is the path the upstream received.
func TestDevHostVariantsGiveTheSameUpstreamPath(t *testing.T) {
	e2e(t, "", func(t *testing.T, s *stacktest.Fixture) {
		for _, host := range []string{"customers.internal", "customers.internal.", "customers.internal:8443", "CUSTOMERS.Internal.:8443"} {
			resp, body := get(t, s.URL+"/4", map[string]string{"host": host})
			if resp.StatusCode != 200 {
				t.Fatalf("host %q: status %d (%s)", host, resp.StatusCode, describe(body))
			}
			if got := last(t, s).URL.Path; got != "/4" {
				t.Fatalf("host %q: upstream path %q, want /4 (routed by host, nothing stripped)", host, got)
			}
			id := resp.Header.Get("x-custos-request-id")
			d := s.Events.Of(record.Decided, id)
			if len(d) != 1 || d[0].Path != "/4" || d[0].Connection != "customers" {
				t.Fatalf("host %q: decision records %+v, want the upstream's path", host, d)
			}
		}
	})
}

// Every request leaves its decision; every exchange ext_proc saw ends in
// exactly one response record, after the response.
func TestDevRecordsEveryRequestOnce(t *testing.T) {
	e2e(t, "", func(t *testing.T, s *stacktest.Fixture) {
		resp, _ := get(t, s.URL+"/customers/2", nil)
		id := resp.Header.Get("x-custos-request-id")
		if resp.StatusCode != 200 || id == "" {
			t.Fatalf("status %d, id %q", resp.StatusCode, id)
		}
		if d := s.Events.Of(record.Decided, id); len(d) != 1 || !d[0].Allow || d[0].Path != last(t, s).URL.Path {
			t.Fatalf("decisions %+v", d)
		}
		// Process records before it answers the response headers, so the
		// record exists before the agent has the response.
		if r := s.Events.Of(record.Completed, id); len(r) != 1 || r[0].Status != 200 || len(s.Events.Of(record.Aborted, id)) != 0 {
			t.Fatalf("responses %+v", r)
		}

		resp, body := get(t, s.URL+"/customers/1", map[string]string{"x-custos-session": "bad session!"})
		m := contractError(t, resp, body, 400, "bad_request")
		if d := s.Events.Of(record.Decided, m["request_id"].(string)); len(d) != 1 || d[0].Allow || d[0].Status != 400 {
			t.Fatalf("a denial left %+v", d)
		}
	})
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
