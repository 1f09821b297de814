package extproc

import (
	"net"
	"strings"

	"github.com/custos-dev/custos/config"
	"github.com/custos-dev/custos/names"
)

// connections is the connection index compiled once per configuration, so a
// Check costs the same at one connection and at thousands.
type connections struct {
	byName map[string]*config.Connection
	// byHost maps a canonical host (see canonicalHost) to its connection.
	byHost map[string]*config.Connection
}

func indexConnections(cfg *config.Config) connections {
	ix := connections{
		byName: make(map[string]*config.Connection, len(cfg.Connections)),
		byHost: map[string]*config.Connection{},
	}
	for i := range cfg.Connections {
		c := &cfg.Connections[i]
		ix.byName[c.Name] = c
		for _, h := range c.Hosts {
			if k := canonicalHost(h); k != "" {
				if _, dup := ix.byHost[k]; !dup {
					ix.byHost[k] = c
				}
			}
		}
	}
	return ix
}

// route is what the request's route tells Check about how the request is
// routed: its connection and the prefix rewrite Envoy applies after the
// filters have run.
type route struct {
	conn *config.Connection
	// prefix is what the route matched and rewrite replaces it with; both
	// "" when the route rewrites nothing.
	prefix, rewrite string
}

// routeFor resolves the request's route. On Custos' own routes the
// context_extensions say everything; without them (Istio's routes) the
// connection is the one whose hosts match :authority, and the path goes
// upstream unchanged. ok is false when no connection serves the request;
// then name is the connection the route named, if any.
func (ix connections) routeFor(ext map[string]string, authority string) (r route, name string, ok bool) {
	if n, named := ext[names.ContextConnection]; named {
		c, found := ix.byName[n]
		if !found {
			return route{}, n, false
		}
		return route{conn: c, prefix: ext[names.ContextPrefix], rewrite: ext[names.ContextPrefixRewrite]}, n, true
	}
	c, found := ix.byHost[canonicalHost(authority)]
	if !found {
		return route{}, "", false
	}
	return route{conn: c}, "", true
}

// upstreamPath is the path the upstream receives, without the query: the
// route's prefix_rewrite applied to path (which the connection manager has
// normalised) exactly as Envoy's router applies it.
func (r route) upstreamPath(path string) string {
	if i := strings.IndexByte(path, '?'); i >= 0 {
		path = path[:i]
	}
	if r.prefix != "" && strings.HasPrefix(path, r.prefix) {
		return r.rewrite + path[len(r.prefix):]
	}
	return path
}

// canonicalHost is host as the connection manager compares it with a
// virtual host's domains: without a port (strip_any_host_port), without a
// trailing dot (strip_trailing_host_dot) and ASCII lower-cased. Only ASCII
// letters fold: U+017F (ſ) is not "s" to Envoy, and must not be to Custos.
func canonicalHost(host string) string {
	h := host
	if hn, _, err := net.SplitHostPort(h); err == nil {
		h = hn
	} else if len(h) > 1 && h[0] == '[' && h[len(h)-1] == ']' {
		h = h[1 : len(h)-1]
	}
	h = strings.TrimSuffix(h, ".")
	return asciiLower(h)
}

// asciiLower lower-cases ASCII letters only, allocating only when it must.
func asciiLower(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 'A' && c <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if b[j] >= 'A' && b[j] <= 'Z' {
					b[j] += 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return s
}
