package main

import (
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/custos-dev/custos/filters/identity/identitytest"
	"github.com/custos-dev/custos/filters/record"
	"github.com/custos-dev/custos/stack"
	"github.com/custos-dev/custos/stack/stacktest"
)

// Tokens through both data planes: a valid token is the principal of the
// decision and never reaches the upstream; an invalid one is 401 before
// policy; a token too large for the listener never reaches Check.
func TestIdentityThroughBothDataPlanes(t *testing.T) {
	issuer := identitytest.New(t, "/tenant")
	key := issuer.AddKey(t, jose.RS256)
	extra := "identity:\n  issuers:\n    - issuer: " + issuer.URL + "\n      audiences: [" + identitytest.DefaultAudience + "]\n"
	stacktest.ForEachDataPlane(t, func(t *testing.T, dp stack.DataPlane) {
		s := stacktest.Start(t, dp, stacktest.Options{Extra: extra})
		good := issuer.Token(t, key, map[string]any{"oid": "etl-object-id", "idtyp": "app", "roles": []string{"Pipeline.Read"}})
		resp, body := get(t, s.URL+"/customers/1", map[string]string{"authorization": "Bearer " + good})
		if resp.StatusCode != 200 {
			t.Fatalf("a valid token: status %d (%s)", resp.StatusCode, describe(body))
		}
		if last(t, s).Header.Get("authorization") != "" {
			t.Fatal("the upstream received the agent's token")
		}
		d := s.Events.Of(record.Decided, resp.Header.Get("x-custos-request-id"))
		if len(d) != 1 || d[0].Principal != issuer.URL+"/etl-object-id" {
			t.Fatalf("decision records %+v, want the token's principal", d)
		}

		for name, tc := range map[string]struct {
			header, check string
		}{
			"no token":       {"", "token missing"},
			"basic":          {"Basic ZXRsOnNlY3JldA==", "token missing"},
			"expired":        {"Bearer " + issuer.Token(t, key, map[string]any{"exp": time.Now().Add(-time.Hour).Unix(), "iat": time.Now().Add(-2 * time.Hour).Unix(), "nbf": time.Now().Add(-2 * time.Hour).Unix()}), "token expired"},
			"wrong audience": {"Bearer " + issuer.Token(t, key, map[string]any{"aud": "api://elsewhere"}), "token audience"},
			"broken":         {"Bearer " + good[:len(good)-10] + "AAAAAAAAAA", "token signature"},
		} {
			h := map[string]string{}
			if tc.header != "" {
				h["authorization"] = tc.header
			}
			before := s.Upstream.Count()
			resp, body := get(t, s.URL+"/customers/1", h)
			m := contractError(t, resp, body, 401, "unauthenticated")
			if m["message"] != tc.check {
				t.Errorf("%s: message %v, want %q", name, m["message"], tc.check)
			}
			if strings.Contains(string(body), good[:20]) || s.Upstream.Count() != before {
				t.Fatalf("%s: the token was echoed or the request forwarded", name)
			}
		}

		// 64 KiB of token: over the listener's header limit, refused before
		// Check (with ext_proc on the listener, Envoy closes the connection
		// without a reply; the Go data plane does the same).
		decided := len(s.Events.Of(record.Decided, ""))
		huge := "Bearer " + strings.Repeat("A", 64<<10)
		resp2, err := tryRawRequest(s.Addr, "GET /customers/1 HTTP/1.1\r\nHost: x\r\nAuthorization: "+huge+"\r\nConnection: close\r\n\r\n")
		if err == nil && resp2.StatusCode != 431 {
			t.Fatalf("a 64 KiB token: status %d, want 431 or the connection closed", resp2.StatusCode)
		}
		if len(s.Events.Of(record.Decided, "")) != decided {
			t.Fatal("a 64 KiB token reached Check")
		}
	})
}
