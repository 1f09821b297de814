package extproc

import (
	"fmt"
	"strings"
	"testing"

	"github.com/custos-dev/custos/config"
	"github.com/custos-dev/custos/names"
)

func TestCanonicalHostIsWhatTheConnectionManagerMatches(t *testing.T) {
	for in, want := range map[string]string{
		"Customers.Internal":       "customers.internal",
		"customers.internal.":      "customers.internal",
		"customers.internal:8443":  "customers.internal",
		"customers.internal.:8443": "customers.internal",
		"[::1]:80":                 "::1",
		"[::1]":                    "::1",
		"cuſtomers.internal":       "cuſtomers.internal", // U+017F does not fold to s
		"CUSTOMERS.INTERNAL":       "customers.internal",
		"":                         "",
	} {
		if got := canonicalHost(in); got != want {
			t.Errorf("canonicalHost(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestRouteAppliesThePrefixRewriteAsEnvoysRouterDoes(t *testing.T) {
	for _, tc := range []struct {
		r          route
		path, want string
	}{
		{route{prefix: "/customers/", rewrite: "/api/"}, "/customers/7?x=1", "/api/7"},
		{route{prefix: "/customers/", rewrite: "/"}, "/customers/", "/"},
		{route{prefix: "/customers", rewrite: "/"}, "/customers", "/"},
		{route{prefix: "/", rewrite: "/base/"}, "/a/b", "/base/a/b"},
		{route{}, "/billing/accounts/7", "/billing/accounts/7"},
		// A route only rewrites what it matched; prefix matching is case-sensitive.
		{route{prefix: "/customers/", rewrite: "/"}, "/Customers/7", "/Customers/7"},
	} {
		if got := tc.r.upstreamPath(tc.path); got != tc.want {
			t.Errorf("%+v on %q: %q, want %q", tc.r, tc.path, got, tc.want)
		}
	}
}

func manyConnections(n int) string {
	var b strings.Builder
	b.WriteString("connections:\n")
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "  - name: c%d\n    upstream: http://127.0.0.1:%d/base\n    hosts: [c%d.internal]\n", i, 1000+i%60000, i)
	}
	return b.String()
}

// FuzzRouteFor: host matching never panics, agrees with the configured
// hosts under the connection manager's canonical form, and a named route
// only ever resolves to the connection it names.
func FuzzRouteFor(f *testing.F) {
	cfg, err := config.Parse([]byte(manyConnections(5) + "  - name: billing\n    upstream: http://127.0.0.1:9\n    hosts: [billing.internal:8443]\n"))
	if err != nil {
		f.Fatal(err)
	}
	ix := indexConnections(cfg)
	for _, s := range []string{"c1.internal", "C1.INTERNAL.", "billing.internal", "billing.internal.:1", "[::1]:2", "ſ", ".", ":", "c1.internal..", "\x00"} {
		f.Add(s, "")
		f.Add(s, "billing")
	}
	f.Fuzz(func(t *testing.T, host, named string) {
		ext := map[string]string{}
		if named != "" {
			ext[names.ContextConnection] = named
		}
		r, _, ok := ix.routeFor(ext, host)
		if named != "" {
			if ok && r.conn.Name != named {
				t.Fatalf("route names %q, resolved %q", named, r.conn.Name)
			}
			return
		}
		if !ok {
			for _, c := range cfg.Connections {
				for _, h := range c.Hosts {
					if canonicalHost(h) == canonicalHost(host) && canonicalHost(host) != "" {
						t.Fatalf("%q matches %q of %s, not found", host, h, c.Name)
					}
				}
			}
			return
		}
		found := false
		for _, h := range r.conn.Hosts {
			found = found || canonicalHost(h) == canonicalHost(host)
		}
		if !found {
			t.Fatalf("%q resolved to %s, whose hosts %v do not match", host, r.conn.Name, r.conn.Hosts)
		}
	})
}
