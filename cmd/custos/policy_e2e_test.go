package main

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/custos-dev/custos/config"
	"github.com/custos-dev/custos/devissuer"
	"github.com/custos-dev/custos/filters/record"
	"github.com/custos-dev/custos/stack"
	"github.com/custos-dev/custos/stack/stacktest"
)

// copyBuiltin writes the default bundle into a directory the test can
// change under the running stack.
func copyBuiltin(t *testing.T) string {
	t.Helper()
	src, cleanup, err := extractBuiltin()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cleanup)
	return src
}

func writeRego(t *testing.T, dir, file, content string) {
	t.Helper()
	// Written aside and renamed over, so a poll never reads half a file.
	path := filepath.Join(dir, file)
	tmp := filepath.Join(t.TempDir(), filepath.Base(file))
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// waitPolicyChanged waits for the n-th policy_changed event and returns it.
func waitPolicyChanged(t *testing.T, s *stacktest.Fixture, n int) record.Event {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if ev := s.Events.Of(record.PolicyChanged, ""); len(ev) >= n {
			return ev[n-1]
		}
		if time.Now().After(deadline) {
			t.Fatalf("no policy_changed event #%d (%d so far)", n, len(s.Events.Of(record.PolicyChanged, "")))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitPolicyLoaded waits for a policy_changed event after the first n
// that loaded a bundle (not one that refused it) and returns it.
func waitPolicyLoaded(t *testing.T, s *stacktest.Fixture, n int) record.Event {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if ev := s.Events.Of(record.PolicyChanged, ""); len(ev) > n {
			for _, e := range ev[n:] {
				if !strings.Contains(e.Detail, "refused") {
					return e
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no bundle loaded after policy_changed event #%d", n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// The default bundle through both data planes with dev-issuer tokens: a
// mapped reader reads, writes are refused with reasons, an unmapped group
// is refused, a destructive action asks for approval; the bundle swapped on
// disk decides the next request with its revision, a broken one is refused
// while the old keeps deciding, garbage is 503; shadow mode lets through
// and records the would-be denial.
func TestPolicyThroughBothDataPlanes(t *testing.T) {
	stacktest.ForEachDataPlane(t, func(t *testing.T, dp stack.DataPlane) {
		bundle := copyBuiltin(t)
		audit := filepath.Join(t.TempDir(), "audit")
		s := stacktest.Start(t, dp, stacktest.Options{Config: func(u string) (*config.Config, error) {
			return config.Parse([]byte(stack.LoopbackListen + `policy:
  bundle: ` + bundle + `
  poll_interval: 100ms
connections:
  - name: customers
    upstream: ` + u + `
  - name: shadowed
    upstream: ` + u + `
    policy_mode: shadow
approvals:
  mode: async
  timeout: 1h
audit:
  dir: ` + audit + `
dev:
  issuer: true
`))
		}})
		is := s.CP.DevIssuer
		token := func(groups ...string) string {
			tok, _, err := is.Mint(devissuer.Claims{Subject: "nightly-etl", Groups: groups})
			if err != nil {
				t.Fatal(err)
			}
			return "Bearer " + tok
		}
		call := func(method, path, auth string) (*http.Response, []byte) {
			t.Helper()
			req, err := http.NewRequest(method, s.URL+path, nil)
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("authorization", auth)
			return do(t, req)
		}
		first := waitPolicyChanged(t, s, 1)
		if !strings.HasPrefix(first.Revision, "sha256:") {
			t.Fatalf("first policy_changed %+v", first)
		}

		reader := token("customers-readers")
		resp, body := call("GET", "/customers/1", reader)
		if resp.StatusCode != 200 {
			t.Fatalf("a reader reads: %d %s", resp.StatusCode, body)
		}
		d := s.Events.Of(record.Decided, resp.Header.Get("x-custos-request-id"))
		if len(d) != 1 || d[0].Revision != first.Revision || !strings.Contains(d[0].Reasons[0], "through customers-readers") {
			t.Fatalf("decision %+v", d)
		}

		// Reads of other paths are decided from the decision cache once the
		// first read's evaluation is learnt (off the request's path), as
		// /metrics says.
		var met map[string]float64
		for i := 2; ; i++ {
			if resp, body = call("GET", fmt.Sprintf("/customers/%d", i), reader); resp.StatusCode != 200 {
				t.Fatalf("a reader reads again: %d %s", resp.StatusCode, body)
			}
			met = scrapeMetrics(t, s.CP.HTTPAddr)
			if met[`custos_policy_decisions_total{source="cache"}`] >= 1 || i == 100 {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if met[`custos_policy_decisions_total{source="cache"}`] < 1 || met[`custos_policy_decisions_total{source="evaluated"}`] < 1 ||
			met[`custos_check_requests_total{connection="customers",outcome="allowed"}`] < 2 ||
			met[`custos_policy_bundle_info{revision="`+first.Revision+`"}`] != 1 ||
			met[`custos_policy_cache_entries`] < 1 || met[`custos_policy_cache_learning_total{outcome="learnt"}`] < 1 || met[`custos_audit_log_events`] < 1 || met[`custos_audit_log_healthy`] != 1 {
			t.Fatalf("/metrics after two reads: %v", met)
		}

		before := s.Upstream.Count()
		resp, body = call("POST", "/customers/1", reader)
		m := contractError(t, resp, body, 403, "forbidden")
		if r := m["reasons"].([]any); len(r) != 1 || !strings.Contains(r[0].(string), "needs write access") || m["decision_id"] == "" {
			t.Fatalf("a reader writes: %s", body)
		}
		resp, body = call("GET", "/customers/1", token("marketing"))
		m = contractError(t, resp, body, 403, "forbidden")
		if !strings.Contains(m["reasons"].([]any)[0].(string), "ask for one of: customers-admins, customers-readers, customers-writers") {
			t.Fatalf("an unmapped group: %s", body)
		}
		resp, body = call("DELETE", "/customers/1", token("customers-writers"))
		m = contractError(t, resp, body, 403, "approval_required")
		if id, _ := m["approval_id"].(string); id == "" {
			t.Fatalf("a destructive action: %s", body)
		}
		if s.Upstream.Count() != before {
			t.Fatal("a refused request reached the upstream")
		}

		// Shadow mode: through, and the record has the would-be denial.
		// (The demo upstream answers POST with 405: it was reached.)
		resp, body = call("POST", "/shadowed/1", reader)
		if resp.StatusCode != 405 || s.Upstream.Count() != before+1 {
			t.Fatalf("shadow mode: %d %s", resp.StatusCode, body)
		}
		d = s.Events.Of(record.Decided, resp.Header.Get("x-custos-request-id"))
		if len(d) != 1 || d[0].Shadow != "forbidden" || !strings.Contains(d[0].Reasons[0], "is mapped to no group") {
			t.Fatalf("shadow decision %+v", d)
		}

		// The bundle swapped on disk: marketing now reads customers.
		writeRego(t, bundle, "custos/config/data.json", `{"access": {"customers": {"customers-readers": "read", "marketing": "read"}}, "approvers": {"default": ["custos-approvers"]}, "masking": {}}`)
		second := waitPolicyChanged(t, s, 2)
		if second.Revision == first.Revision || second.Detail == "" || strings.Contains(second.Detail, "refused") {
			t.Fatalf("second policy_changed %+v", second)
		}
		resp, body = call("GET", "/customers/1", token("marketing"))
		if resp.StatusCode != 200 {
			t.Fatalf("after the swap: %d %s", resp.StatusCode, body)
		}
		if d := s.Events.Of(record.Decided, resp.Header.Get("x-custos-request-id")); len(d) != 1 || d[0].Revision != second.Revision {
			t.Fatalf("the next decision's revision: %+v", d)
		}

		// A broken bundle is refused; the last good one keeps deciding.
		writeRego(t, bundle, "custos/authz/broken.rego", "package custos.authz\n\nbroken := {")
		third := waitPolicyChanged(t, s, 3)
		if third.Revision != second.Revision || !strings.Contains(third.Detail, "refused") {
			t.Fatalf("third policy_changed %+v", third)
		}
		if resp, body = call("GET", "/customers/1", token("marketing")); resp.StatusCode != 200 {
			t.Fatalf("with a broken bundle on disk: %d %s", resp.StatusCode, body)
		}

		// A policy that answers garbage: 503, never an allow, shadow or not.
		// The broken file goes last, so that every bundle a poll may see
		// on the way is refused or the garbage one.
		writeRego(t, bundle, "custos/authz/authz.rego", "package custos.authz\n\ndecision := {\"allow\": \"yes\"}\n")
		if err := os.Remove(filepath.Join(bundle, "custos/authz/authz_test.rego")); err != nil {
			t.Fatal(err)
		}
		if err := os.Remove(filepath.Join(bundle, "custos/authz/broken.rego")); err != nil {
			t.Fatal(err)
		}
		if garbage := waitPolicyLoaded(t, s, 3); garbage.Revision == second.Revision {
			t.Fatalf("garbage policy_changed %+v", garbage)
		}
		before = s.Upstream.Count()
		for _, path := range []string{"/customers/1", "/shadowed/1"} {
			resp, body = call("GET", path, reader)
			contractError(t, resp, body, 503, "unavailable")
		}
		if s.Upstream.Count() != before {
			t.Fatal("a request without a readable decision reached the upstream")
		}
	})
}
