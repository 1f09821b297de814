package credentials

import (
	"net/http"
	"strconv"
	"strings"
)

// OutgoingFromHTTP describes r as a net/http client will send it: r.URL
// is the upstream's URL, r.Header and r.ContentLength what goes on the
// wire. For data planes and proxies built on net/http.
func OutgoingFromHTTP(r *http.Request) Outgoing {
	h := make(map[string]string, len(r.Header)+1)
	for k, vs := range r.Header {
		h[strings.ToLower(k)] = strings.Join(vs, ",")
	}
	if r.ContentLength > 0 {
		h["content-length"] = strconv.FormatInt(r.ContentLength, 10)
	}
	host := r.Host
	if host == "" {
		host = r.URL.Host
	}
	return Outgoing{
		Method:   r.Method,
		Scheme:   r.URL.Scheme,
		Host:     host,
		Path:     r.URL.EscapedPath(),
		RawQuery: r.URL.RawQuery,
		Headers:  h,
	}
}

// ApplyHTTP applies m to r, a request about to be sent upstream: headers
// removed, headers set, and the query rewritten (see RewriteQuery).
func (m Mutation) ApplyHTTP(r *http.Request) {
	for _, k := range m.Remove {
		r.Header.Del(k)
	}
	for _, h := range m.Set {
		r.Header.Set(h.Name, h.Value)
	}
	r.URL.RawQuery = m.RewriteQuery(r.URL.RawQuery)
}
