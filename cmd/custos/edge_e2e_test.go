package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/custos-dev/custos/config"
	"github.com/custos-dev/custos/envoy/envoytest"
	"github.com/custos-dev/custos/envoy/launch"
	"github.com/custos-dev/custos/examples/demo"
	"github.com/custos-dev/custos/filters/record"
	"github.com/custos-dev/custos/mtls"
	"github.com/custos-dev/custos/stack"
	"github.com/custos-dev/custos/stack/stacktest"
)

// The edge as an attacker probes it (issue 14), through both data planes.

// No x-envoy-* header reaches the upstream: not the agent's, not the
// router's own (x-envoy-original-path on every prefix rewrite,
// x-envoy-expected-rq-timeout-ms), not the connection manager's.
func TestEdgeNoEnvoyHeaderReachesTheUpstream(t *testing.T) {
	e2e(t, "", func(t *testing.T, s *stacktest.Fixture) {
		resp, body := get(t, s.URL+"/customers/1", map[string]string{
			"x-envoy-original-path":               "/admin",
			"x-envoy-original-dst-host":           "10.0.0.1:80",
			"x-envoy-peer-metadata":               "forged",
			"x-envoy-attempt-count":               "9",
			"x-envoy-immediate-health-check-fail": "true",
			"x-envoy-retry-on":                    "5xx",
		})
		if resp.StatusCode != 200 {
			t.Fatalf("status %d (%s)", resp.StatusCode, describe(body))
		}
		for k := range last(t, s).Header {
			if strings.HasPrefix(strings.ToLower(k), "x-envoy-") {
				t.Errorf("the upstream received %s", k)
			}
		}
	})
}

// Header names with underscores are refused: X_Custos_Principal reaches a
// CGI-style upstream as HTTP_X_CUSTOS_PRINCIPAL, the real thing.
func TestEdgeUnderscoreHeadersAreRefused(t *testing.T) {
	e2e(t, "", func(t *testing.T, s *stacktest.Fixture) {
		for _, h := range []string{"X_Custos_Principal", "Proxy_Authorization"} {
			resp, body := rawRequest(t, s.Addr, "GET /customers/1 HTTP/1.1\r\nHost: x\r\n"+h+": admin\r\nConnection: close\r\n\r\n")
			if resp.StatusCode != 400 || !strings.Contains(string(body), `"bad_request"`) {
				t.Fatalf("%s: status %d (%s), want 400 bad_request", h, resp.StatusCode, describe(body))
			}
		}
		if s.Upstream.Count() != 0 {
			t.Fatal("a request with an underscore header reached the upstream")
		}
	})
}

// Trailers: a chunked request's trailers never reach the upstream unseen by
// Check (Envoy's HTTP/1 codec drops them: Custos never enables them), and
// the upstream's response trailers never reach the agent past ext_proc.
func TestEdgeTrailersNeverCross(t *testing.T) {
	var mu sync.Mutex
	var gotTrailer http.Header
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		mu.Lock()
		gotTrailer = r.Trailer.Clone()
		mu.Unlock()
		w.Header().Set("Trailer", "X-Secret")
		w.WriteHeader(200)
		_, _ = io.WriteString(w, "ok")
		w.Header().Set("X-Secret", "4111111111111111")
	})
	stacktest.ForEachDataPlane(t, func(t *testing.T, dp stack.DataPlane) {
		s := stacktest.Start(t, dp, stacktest.Options{Handler: handler})
		req := "POST /customers/1 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n" +
			"Trailer: Authorization, X-Custos-Principal, Proxy-Authorization, X-Envoy-Retry-On, X-Custos-Session\r\n" +
			"Connection: close\r\n\r\n" +
			"5\r\nhello\r\n0\r\nAuthorization: Bearer stolen\r\nX-Custos-Principal: admin\r\nProxy-Authorization: Basic x\r\n" +
			"X-Envoy-Retry-On: 5xx\r\nX-Custos-Session: other\r\n\r\n"
		resp, body := rawRequest(t, s.Addr, req)
		if resp.StatusCode != 200 {
			t.Fatalf("status %d (%s)", resp.StatusCode, describe(body))
		}
		mu.Lock()
		defer mu.Unlock()
		// Go lists the declared names (Trailer:) with nil values; a value
		// would mean the trailer itself crossed.
		if k := withValues(gotTrailer); k != "" {
			t.Fatalf("the upstream received request trailers %s", k)
		}
		if k := withValues(resp.Trailer); k != "" {
			t.Fatalf("the agent received response trailers %s", k)
		}
	})
}

// An empty x-custos-session is refused, never forwarded as "no session".
func TestEdgeEmptySessionIsRefused(t *testing.T) {
	e2e(t, "", func(t *testing.T, s *stacktest.Fixture) {
		resp, body := rawRequest(t, s.Addr, "GET /customers/1 HTTP/1.1\r\nHost: x\r\nX-Custos-Session:\r\nConnection: close\r\n\r\n")
		contractError(t, resp, body, 400, "bad_request")
		if s.Upstream.Count() != 0 {
			t.Fatal("forwarded")
		}
	})
}

// rawRequest writes req on a new connection and reads one response.
func rawRequest(t *testing.T, addr, req string) (*http.Response, []byte) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("reading the response: %v", err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading the body: %v", err)
	}
	return resp, body
}

// tryRawRequest is rawRequest for requests the data plane may reset.
func tryRawRequest(addr, req string) (*http.Response, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, req); err != nil {
		return nil, err
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return nil, err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	return resp, err
}

// withValues names the fields of h that carry a value, "" if none does.
func withValues(h http.Header) string {
	var out []string
	for k, v := range h {
		if len(v) > 0 {
			out = append(out, k)
		}
	}
	if len(out) == 0 {
		return ""
	}
	return fmt.Sprint(out)
}

// For any host and path an agent sends, the path the upstream receives is
// the path Custos recorded (and classified): generated requests, seeded so a
// failure replays, through both data planes, origin-form and absolute-form.
func TestEdgeRecordedPathIsTheUpstreamPath(t *testing.T) {
	extra := "  - name: billing\n    upstream: {{up}}/base/\n    hosts: [billing.internal:8443]\n"
	stacktest.ForEachDataPlane(t, func(t *testing.T, dp stack.DataPlane) {
		s := stacktest.Start(t, dp, stacktest.Options{
			Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(204) }),
			Config: func(up string) (*config.Config, error) {
				return stack.CustomersConfig(up, strings.ReplaceAll(extra, "{{up}}", up))
			},
		})
		rnd := rand.New(rand.NewPCG(14, uint64(len(dp))))
		// Non-ASCII hosts and paths are the codec's to refuse (real Envoy
		// closes the connection after its delayed-close timeout, a second
		// each); the reproductions below send a few, the generator none.
		hosts := []string{"customers.internal", "CUSTOMERS.internal.", "customers.internal:8443", "billing.internal",
			"billing.internal.:8443", "Billing.Internal", "127.0.0.1", "elsewhere.example"}
		prefixes := []string{"", "/customers", "/billing", "/Customers", "/customers/..", "/billing/./x"}
		segs := []string{"accounts", "7", "%41b", "..", ".", "", "a%2Eb", "~x", "%7E", "q?x=1", "%C3%A9"}
		type probe struct{ host, target string }
		probes := []probe{
			// The reproductions of issue 14.
			{"billing.internal", "/billing/accounts/7"},
			{"billing.internal.", "/billing/accounts/7"},
			{"127.0.0.1", "http://billing.internal/billing/accounts/7"},
			{"cuſtomers.internal", "http://cuſtomers.internal/customers/accounts/7"},
			{"x", "http://billıng.internal/billing/accounts/7"},
		}
		for i := 0; i < 80; i++ {
			host := hosts[rnd.IntN(len(hosts))]
			path := prefixes[rnd.IntN(len(prefixes))]
			for n := rnd.IntN(4); n >= 0; n-- {
				path += "/" + segs[rnd.IntN(len(segs))]
			}
			target := path
			if rnd.IntN(3) == 0 {
				target = "http://" + host + path
			}
			probes = append(probes, probe{host, target})
		}
		checked := 0
		for _, p := range probes {
			host, target := p.host, p.target
			before := s.Upstream.Count()
			resp, err := tryRawRequest(s.Addr, "DELETE "+target+" HTTP/1.1\r\nHost: "+host+"\r\nConnection: close\r\n\r\n")
			if s.Upstream.Count() == before {
				continue // refused, reset or not routed: nothing to compare
			}
			if err != nil {
				t.Fatalf("Host %q, target %q reached the upstream, then: %v", host, target, err)
			}
			up, _ := s.Upstream.Last()
			got, _, _ := strings.Cut(up.RequestURI, "?")
			d := s.Events.Of(record.Decided, resp.Header.Get("x-custos-request-id"))
			if len(d) != 1 {
				t.Fatalf("%s %q: %d decision records", host, target, len(d))
			}
			if d[0].Path != got {
				t.Fatalf("Host %q, target %q: the upstream received %q, Custos recorded %q", host, target, got, d[0].Path)
			}
			checked++
		}
		if checked < 20 {
			t.Fatalf("only %d generated requests reached the upstream: the generator does not exercise routing", checked)
		}
	})
}

// Real Envoy holding a certificate from another CA, or one with an identity
// that is not allowed, gets nothing from Custos' ADS: no listener, no
// cluster, no configuration to read.
func TestEdgeEnvoyWithoutTheRightCertificateGetsNothing(t *testing.T) {
	envoytest.Require(t)
	s := stacktest.Start(t, stack.Go, stacktest.Options{})
	dir := t.TempDir()
	other, err := mtls.DevPKI(filepath.Join(dir, "other"))
	if err != nil {
		t.Fatal(err)
	}
	intruder, err := s.PKI.IssueClient(mtls.Files{CertFile: filepath.Join(dir, "i.crt"), KeyFile: filepath.Join(dir, "i.key")}, "spiffe://custos.local/intruder")
	if err != nil {
		t.Fatal(err)
	}
	for name, f := range map[string]launch.TLSFiles{
		"another CA":              {CertFile: other.Client.CertFile, KeyFile: other.Client.KeyFile, CAFile: s.PKI.CAFile},
		"an identity not allowed": {CertFile: intruder.CertFile, KeyFile: intruder.KeyFile, CAFile: s.PKI.CAFile},
	} {
		t.Run(name, func(t *testing.T) {
			// Without ADS Envoy would wait 15s for its first clusters before it
			// answers LIVE: a short initial fetch lets the test see it refused.
			e := envoytest.Start(t, envoytest.Options{XDSAddr: s.CP.XDSAddr, NodeID: "intruder", TLS: &f,
				ConfigYAML: `{dynamic_resources: {cds_config: {initial_fetch_timeout: 0.3s}, lds_config: {initial_fetch_timeout: 0.3s}}}`})
			deadline := time.Now().Add(15 * time.Second)
			for {
				st, err := e.Stats("cluster.xds.")
				if err != nil {
					t.Fatal(err)
				}
				if st["cluster.xds.ssl.connection_error"]+st["cluster.xds.upstream_cx_destroy_remote"]+st["cluster.xds.upstream_cx_connect_fail"] > 0 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("no refused connection seen in Envoy's stats: %v", st)
				}
				time.Sleep(50 * time.Millisecond)
			}
			if st, _ := e.Stats("control_plane.connected_state"); st["control_plane.connected_state"] != 0 {
				t.Fatal("Envoy is connected to Custos' ADS")
			}
			if l, _ := e.Listeners(); len(l) != 0 {
				t.Fatalf("Envoy got listeners %v", l)
			}
		})
	}
}

// One client opening many stalled uploads (one byte of a declared 1,000
// each) does not stop other agents being served: more than Envoy's default
// 1,024 circuit-breaker slots of the connection's cluster.
func TestEdgeStalledUploadsDoNotLockOthersOut(t *testing.T) {
	const stalled = 1100
	demoAPI := demo.Handler()
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			_, _ = io.Copy(io.Discard, r.Body) // until the client goes away
			return
		}
		demoAPI.ServeHTTP(w, r)
	})
	stacktest.ForEachDataPlane(t, func(t *testing.T, dp stack.DataPlane) {
		s := stacktest.Start(t, dp, stacktest.Options{Handler: handler})
		conns := make([]net.Conn, 0, stalled)
		t.Cleanup(func() {
			for _, c := range conns {
				c.Close()
			}
		})
		for i := 0; i < stalled; i++ {
			c, err := net.DialTimeout("tcp", s.Addr, 5*time.Second)
			if err != nil {
				t.Fatalf("connection %d: %v", i, err)
			}
			conns = append(conns, c)
			if _, err := io.WriteString(c, "POST /customers/1 HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nx"); err != nil {
				t.Fatal(err)
			}
		}
		// Wait until the uploads hold their upstream requests (each
		// decision is made durable in the audit log first; under the race
		// detector on 2 cores that takes a while for 1,100 of them).
		ctx, cancel := context.WithTimeout(context.Background(), 180*time.Second)
		defer cancel()
		if err := s.Upstream.WaitCount(ctx, stalled); err != nil {
			t.Fatalf("stalled uploads: %v", err)
		}
		resp, body := get(t, s.URL+"/customers/2", nil)
		if resp.StatusCode != 200 {
			t.Fatalf("another agent got %d (%s) while one client stalls %d uploads", resp.StatusCode, describe(body), stalled)
		}
	})
}
