package main

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/custos-dev/custos/audit"
	"github.com/custos-dev/custos/devissuer"
	"github.com/custos-dev/custos/stack"
	"github.com/custos-dev/custos/stack/stacktest"
)

// Evidence through both data planes: every answer, allowed or refused,
// carries x-custos-evidence naming where its decision was recorded; that
// event is in the log before the agent has the answer, its inclusion proof
// verifies offline with the verifier key alone, and the whole log verifies.
func TestEvidenceThroughBothDataPlanes(t *testing.T) {
	stacktest.ForEachDataPlane(t, func(t *testing.T, dp stack.DataPlane) {
		s := stacktest.Start(t, dp, stacktest.Options{Extra: `    kind: http
policy:
  bundle: builtin:default
dev:
  issuer: true
`})
		key, err := audit.LoadSigningKey(s.Config.Audit.SigningKeyFile)
		if err != nil {
			t.Fatal(err)
		}
		tok, _, err := s.CP.DevIssuer.Mint(devissuer.Claims{Subject: "nightly-etl", Groups: []string{"customers-readers"}})
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]struct {
			method, auth string
			status       int
			kind         audit.Kind
		}{
			"allowed":   {"GET", "Bearer " + tok, 200, audit.Decision},
			"forbidden": {"POST", "Bearer " + tok, 403, audit.Decision},
			"no token":  {"GET", "", 401, audit.AuthFailed},
		}
		seen := map[int64]bool{}
		for name, tc := range want {
			req, _ := http.NewRequest(tc.method, s.URL+"/customers/1", nil)
			if tc.auth != "" {
				req.Header.Set("authorization", tc.auth)
			}
			resp, body := do(t, req)
			if resp.StatusCode != tc.status {
				t.Fatalf("%s: %d %s", name, resp.StatusCode, body)
			}
			ev := resp.Header.Get("x-custos-evidence")
			pos, err := audit.ParsePosition(ev)
			if err != nil || pos.LogID != key.Name() || seen[pos.Index] {
				t.Fatalf("%s: x-custos-evidence %q (%v)", name, ev, err)
			}
			seen[pos.Index] = true
			// The decision is durable before the answer: read it now.
			raw, err := s.CP.Audit.Read(pos.Index)
			if err != nil {
				t.Fatalf("%s: the event at %s: %v", name, ev, err)
			}
			e, err := audit.DecodeEvent(raw)
			if err != nil || e.Kind != tc.kind || e.RequestID != resp.Header.Get("x-custos-request-id") {
				t.Fatalf("%s: event %+v %v", name, e, err)
			}
			if strings.Contains(string(raw), tok[len(tok)-16:]) {
				t.Fatalf("%s: the event holds the token", name)
			}
			p, err := s.CP.Audit.Proof(context.Background(), pos.Index)
			if err != nil {
				t.Fatal(err)
			}
			if got, _, err := audit.VerifyProof(p, key.VerifierKey()); err != nil || got.RequestID != e.RequestID {
				t.Fatalf("%s: proof: %v", name, err)
			}
		}
		s.Close() // the last checkpoint covers everything
		sum, err := audit.Verify(s.Config.Audit.Dir, audit.VerifyOptions{Keys: []string{key.VerifierKey()}})
		if err != nil {
			t.Fatalf("verify: %v", err)
		}
		// At least a decision per request and a response for the allowed
		// one, all covered by a signed checkpoint.
		if sum.Events < int64(len(want))+1 || sum.Covered != sum.Events || sum.LogID != key.Name() {
			t.Fatalf("summary %+v", sum)
		}
	})
}
