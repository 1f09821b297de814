package extproc

import (
	"context"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	jose "github.com/go-jose/go-jose/v4"
	"google.golang.org/genproto/googleapis/rpc/code"

	"github.com/custos-dev/custos/filters/identity/identitytest"
	"github.com/custos-dev/custos/filters/record"
)

// identityYAML is cfgYAML with is as the one trusted issuer: DefaultStages
// then verifies tokens with identity.OIDC.
func identityYAML(is *identitytest.Issuer) string {
	return fmt.Sprintf(`
identity:
  issuers:
    - issuer: %s
      audiences: [%s]
      group_names: {g-1: approvers}
`, is.URL, identitytest.DefaultAudience) + cfgYAML
}

func TestCheckWithVerifiedTokens(t *testing.T) {
	is := identitytest.New(t, "/tenant")
	k := is.AddKey(t, jose.RS256)
	c := serveWith(t, identityYAML(is), nil)
	check := func(path string, h map[string]string) *authv3.CheckResponse {
		t.Helper()
		resp, err := c.authz.Check(context.Background(), checkReq(routeExt(), "h", path, h))
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}

	tok := is.Token(t, k, map[string]any{"sub": "etl", "groups": []string{"g-1"}, "jti": "run-42"})
	resp := check("/customers/1", map[string]string{"authorization": "Bearer " + tok})
	if code.Code(resp.GetStatus().GetCode()) != code.Code_OK {
		t.Fatalf("denied: %s", resp.GetDeniedResponse().GetBody())
	}
	v, err := verdictFrom(resp.GetDynamicMetadata())
	if err != nil {
		t.Fatal(err)
	}
	if v.Principal != is.URL+"/etl" || !slices.Equal(v.Groups, []string{"g-1"}) || v.Session != "run-42" || len(v.SessionID) != 32 {
		t.Fatalf("verdict %+v", v)
	}
	if !slices.Contains(resp.GetOkResponse().GetHeadersToRemove(), "authorization") {
		t.Fatalf("headers_to_remove %v: the agent's token would reach the upstream", resp.GetOkResponse().GetHeadersToRemove())
	}
	// A session the agent names wins over the derived one.
	resp = check("/customers/1", map[string]string{"authorization": "Bearer " + tok, "x-custos-session": "nightly"})
	if v, err = verdictFrom(resp.GetDynamicMetadata()); err != nil || v.Session != "nightly" {
		t.Fatalf("verdict %+v %v", v, err)
	}

	expired := is.Token(t, k, map[string]any{"exp": time.Now().Add(-time.Hour).Unix()})
	for _, tc := range []struct {
		name, path string
		h          map[string]string
		msg        string
	}{
		{"no token", "/customers/1", nil, "token missing"},
		{"Basic instead of Bearer", "/customers/1", map[string]string{"authorization": "Basic " + tok}, "token missing"},
		{"a token in the query string", "/customers/1?access_token=" + url.QueryEscape(tok), nil, "token missing"},
		{"a token in another header", "/customers/1", map[string]string{"x-access-token": tok}, "token missing"},
		{"expired", "/customers/1", map[string]string{"authorization": "Bearer " + expired}, "token expired"},
		{"alg none", "/customers/1", map[string]string{"authorization": "Bearer " + identitytest.Unsigned(t, nil, is.Claims())}, "token algorithm"},
		{"broken", "/customers/1", map[string]string{"authorization": "Bearer " + tok[:20] + "!" + tok[21:]}, "token malformed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := check(tc.path, tc.h)
			body := deniedBody(t, resp, 401)
			if body["error"] != CodeUnauthenticated || body["message"] != tc.msg {
				t.Fatalf("body %v", body)
			}
			if strings.Contains(resp.GetDeniedResponse().GetBody(), tok[len(tok)-20:]) {
				t.Fatal("the reply echoes the token")
			}
		})
	}
	if d := c.rec.of(record.Decided); len(d) != 2 {
		t.Fatalf("%d decisions recorded, want the two verified requests", len(d))
	}
	// Every refusal is an auth_failed event; what it says about the caller
	// is the token's claim, kept apart as claimed, and never the token.
	failed := c.rec.of(record.AuthFailed)
	if len(failed) != 7 {
		t.Fatalf("%d auth_failed events, want 7", len(failed))
	}
	for _, e := range failed {
		if e.Status != 401 || e.Principal != "" || e.Claimed == nil || e.Allow || e.Detail == "" {
			t.Fatalf("auth_failed %+v", e)
		}
		if strings.Contains(fmt.Sprintf("%+v", e), tok[len(tok)-20:]) {
			t.Fatal("an event holds the token")
		}
	}
	if cl := failed[4].Claimed; cl.Issuer != is.URL || cl.Subject != is.Claims()["sub"] || cl.KeyID != k.ID {
		t.Fatalf("the expired token's claims %+v", cl)
	}
	if cl := failed[0].Claimed; *cl != (record.Claimed{}) {
		t.Fatalf("no token, yet claimed %+v", cl)
	}
}

func TestCheckIs503WhenTheIssuerIsUnreachableAndNoKeysAreKnown(t *testing.T) {
	is := identitytest.New(t, "/down")
	k := is.AddKey(t, jose.ES256)
	is.SetDown(true)
	c := serveWith(t, identityYAML(is), nil)
	resp, err := c.authz.Check(context.Background(), checkReq(routeExt(), "h", "/customers/1",
		map[string]string{"authorization": "Bearer " + is.Token(t, k, nil)}))
	if err != nil {
		t.Fatal(err)
	}
	if body := deniedBody(t, resp, 503); body["error"] != CodeUnavailable {
		t.Fatalf("body %v", body)
	}
}
