package approval

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"hash"
	"net/url"
	"sort"
	"strings"

	"github.com/custos-dev/custos/filters/request"
)

// methodOverrideHeaders change the method an upstream acts on.
var methodOverrideHeaders = []string{"x-http-method-override", "x-http-method", "x-method-override"}

// Fingerprint binds a one-shot grant to the exact request (DESIGN.md,
// "Grants"): SHA-256 over the connection, the method and any method-override
// header, the upstream path and canonical query, the content type, the
// headers the inspectors read (impersonation and the like) and the raw body.
// Every part is length-prefixed, so no two requests share a fingerprint by
// moving bytes between parts.
func Fingerprint(r *request.Request) string {
	h := sha256.New()
	part(h, "custos-fingerprint-v1")
	part(h, r.Connection.Name)
	part(h, r.Method)
	for _, k := range methodOverrideHeaders {
		part(h, r.Headers[k])
	}
	part(h, r.Path)
	part(h, canonicalQuery(r.RawQuery))
	part(h, r.Headers["content-type"])
	var imp []string
	for k, v := range r.Headers {
		if strings.HasPrefix(k, "impersonate-") {
			imp = append(imp, k+":"+v)
		}
	}
	sort.Strings(imp)
	part(h, strings.Join(imp, "\n"))
	part(h, string(r.Body))
	return hex.EncodeToString(h.Sum(nil))
}

func part(h hash.Hash, s string) {
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(len(s)))
	h.Write(n[:])
	h.Write([]byte(s))
}

// canonicalQuery sorts the query by key, then value, re-encoded; a query
// that does not parse is kept as sent, so it still binds.
func canonicalQuery(raw string) string {
	q, err := url.ParseQuery(raw)
	if err != nil {
		return "raw:" + raw
	}
	for _, vs := range q {
		sort.Strings(vs)
	}
	return q.Encode() // Encode sorts by key
}
