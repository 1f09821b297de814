package inspect

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"
	"unicode/utf8"

	"github.com/custos-dev/custos/filters/request"
)

// Kinds of action besides [KindHTTP], one per connection kind that has a
// parser (CONTRACT.md, action.kind).
const (
	KindSQL        = "sql"
	KindKubernetes = "kubernetes"
	KindAzure      = "azure"
	KindCosmos     = "cosmos"
	KindGraphQL    = "graphql"
)

// MaxBody is the largest body an inspector parses. A larger body is never
// parsed in part: the action is unknown. The data plane's per-connection
// max_request_bytes (413 request_too_large) is expected to be smaller.
const MaxBody = 4 << 20

// SummaryMax is the longest summary, in bytes; longer statements are cut
// with "…".
const SummaryMax = 200

// rank orders risks when several parts of one request are combined. Unknown
// ranks above destructive (a part that could not be read may be anything)
// but below admin: a part known to be admin stays admin, so combining never
// lowers what a request needs.
func rank(r Risk) int {
	switch r {
	case RiskRead:
		return 1
	case RiskWrite:
		return 2
	case RiskDestructive:
		return 3
	case RiskUnknown:
		return 4
	case RiskAdmin:
		return 5
	}
	return 4
}

// Higher returns the riskier of a and b, as parts of one request combine:
// read < write < destructive < unknown < admin.
func Higher(a, b Risk) Risk {
	if rank(b) > rank(a) {
		return b
	}
	return a
}

// AtLeast reports whether got is at least as risky as want in the order of
// [Higher].
func AtLeast(got, want Risk) bool { return rank(got) >= rank(want) }

// Valid reports whether r is one of the risk constants.
func Valid(r Risk) bool {
	switch r {
	case RiskRead, RiskWrite, RiskDestructive, RiskAdmin, RiskUnknown:
		return true
	}
	return false
}

// oneLine collapses whitespace (newlines, tabs, runs of spaces) to single
// spaces and cuts s to SummaryMax bytes on a rune boundary, so a summary is
// one line an approver can read.
func oneLine(s string) string {
	var b strings.Builder
	space := false
	for _, c := range s {
		if c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f' || c < 0x20 || c == 0x7f || c == 0x2028 || c == 0x2029 || c == 0x85 {
			space = b.Len() > 0
			continue
		}
		if space {
			b.WriteByte(' ')
			space = false
		}
		if b.Len() > SummaryMax {
			b.WriteString("…")
			return b.String()
		}
		if c == utf8.RuneError {
			c = '?'
		}
		b.WriteRune(c)
	}
	return b.String()
}

// errBody says why a body could not be read.
var errBody = errors.New("request body not available")

// fullBody returns r's body when the data plane sent all of it and it is
// within MaxBody. A body Envoy did not send (with_request_body off) or cut
// short is never taken for an empty one.
func fullBody(r *request.Request) ([]byte, error) {
	switch {
	case len(r.Body) > MaxBody:
		return nil, fmt.Errorf("body of %d bytes is over the %d bytes inspected", len(r.Body), MaxBody)
	case r.Body == nil && r.BodyBytes != 0:
		return nil, fmt.Errorf("%w: the data plane did not send it (with_request_body)", errBody)
	case r.BodyBytes > 0 && int64(len(r.Body)) != r.BodyBytes:
		return nil, fmt.Errorf("%w: %d of %d bytes", errBody, len(r.Body), r.BodyBytes)
	}
	return r.Body, nil
}

// strictJSON decodes a JSON document as the most careful reader would: one
// value, valid UTF-8, and no object with the same key twice (readers differ on
// which one wins, so a duplicate is a way to show the guard one statement and
// the target another). Objects decode to map[string]any, numbers to
// json.Number.
func strictJSON(b []byte) (any, error) {
	if !utf8.Valid(b) {
		return nil, errors.New("JSON is not valid UTF-8")
	}
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	v, err := strictValue(d, 0)
	if err != nil {
		return nil, err
	}
	if _, err := d.Token(); err != io.EOF {
		return nil, errors.New("JSON has data after its value")
	}
	return v, nil
}

// maxJSONDepth bounds nesting so a hostile body costs bounded stack.
const maxJSONDepth = 128

func strictValue(d *json.Decoder, depth int) (any, error) {
	if depth > maxJSONDepth {
		return nil, errors.New("JSON nested too deep")
	}
	t, err := d.Token()
	if err != nil {
		return nil, fmt.Errorf("JSON: %w", err)
	}
	switch t := t.(type) {
	case json.Delim:
		switch t {
		case '{':
			m := map[string]any{}
			for d.More() {
				kt, err := d.Token()
				if err != nil {
					return nil, fmt.Errorf("JSON: %w", err)
				}
				k, ok := kt.(string)
				if !ok {
					return nil, errors.New("JSON object key is not a string")
				}
				if _, dup := m[k]; dup {
					return nil, fmt.Errorf("JSON object has key %q twice", k)
				}
				v, err := strictValue(d, depth+1)
				if err != nil {
					return nil, err
				}
				m[k] = v
			}
			if _, err := d.Token(); err != nil {
				return nil, fmt.Errorf("JSON: %w", err)
			}
			return m, nil
		case '[':
			a := []any{}
			for d.More() {
				v, err := strictValue(d, depth+1)
				if err != nil {
					return nil, err
				}
				a = append(a, v)
			}
			if _, err := d.Token(); err != nil {
				return nil, fmt.Errorf("JSON: %w", err)
			}
			return a, nil
		}
		return nil, fmt.Errorf("JSON: unexpected %v", t)
	case string:
		// encoding/json turns invalid escapes (lone surrogates) into U+FFFD;
		// another reader may not, so such text is not trusted.
		if strings.ContainsRune(t, utf8.RuneError) {
			return nil, errors.New("JSON string holds an invalid or replaced character")
		}
		return t, nil
	default:
		return t, nil
	}
}

// jsonPointer resolves an RFC 6901 pointer in v, matching keys exactly.
func jsonPointer(v any, ptr string) (any, bool) {
	if ptr == "" {
		return v, true
	}
	if !strings.HasPrefix(ptr, "/") {
		return nil, false
	}
	for _, tok := range strings.Split(ptr[1:], "/") {
		tok = strings.ReplaceAll(strings.ReplaceAll(tok, "~1", "/"), "~0", "~")
		switch c := v.(type) {
		case map[string]any:
			n, ok := c[tok]
			if !ok {
				return nil, false
			}
			v = n
		case []any:
			i := 0
			if tok == "" || (len(tok) > 1 && tok[0] == '0') {
				return nil, false
			}
			for _, ch := range tok {
				if ch < '0' || ch > '9' || i > len(c) {
					return nil, false
				}
				i = i*10 + int(ch-'0')
			}
			if i >= len(c) {
				return nil, false
			}
			v = c[i]
		default:
			return nil, false
		}
	}
	return v, true
}

// singleParam returns the one value of name in a query or form string. A
// parameter given twice, or a string Go's parser rejects, is an error:
// servers differ on which repeat they take.
func singleParam(raw, name string) (string, bool, error) {
	q, err := url.ParseQuery(raw)
	if err != nil {
		return "", false, fmt.Errorf("parse parameters: %w", err)
	}
	vs, ok := q[name]
	switch {
	case !ok:
		return "", false, nil
	case len(vs) > 1:
		return "", true, fmt.Errorf("parameter %q given %d times", name, len(vs))
	}
	if !utf8.ValidString(vs[0]) {
		return "", true, fmt.Errorf("parameter %q is not valid UTF-8", name)
	}
	return vs[0], true, nil
}

// pathSegments splits an upstream path into decoded segments as a Go server
// (the Kubernetes API server, Azure's front ends) reads it: empty segments
// merged, "." and ".." resolved as the connection manager resolves them. A
// segment that decodes to a slash, a dot segment or a control character, or
// that does not decode, is an error: the guard and the target could read it
// differently.
func pathSegments(p string) ([]string, error) {
	var out []string
	for _, raw := range strings.Split(p, "/") {
		if raw == "" {
			continue
		}
		s, err := url.PathUnescape(raw)
		if err != nil {
			return nil, fmt.Errorf("path segment %q: %w", raw, err)
		}
		if s != raw && (s == "." || s == ".." || strings.ContainsAny(s, "/\\")) {
			return nil, fmt.Errorf("path segment %q hides a separator or dot segment", raw)
		}
		if strings.ContainsAny(s, "\x00\r\n\t") || !utf8.ValidString(s) {
			return nil, fmt.Errorf("path segment %q holds control characters", raw)
		}
		switch s {
		case ".":
			continue
		case "..":
			if len(out) == 0 {
				return nil, errors.New("path climbs above the root")
			}
			out = out[:len(out)-1]
			continue
		}
		out = append(out, s)
	}
	return out, nil
}

// basePath returns the upstream's base path (without a trailing slash), which
// Request.Path begins with.
func basePath(r *request.Request) string {
	u := r.Connection.UpstreamURL()
	if u == nil {
		var err error
		if u, err = url.Parse(r.Connection.Upstream); err != nil {
			return ""
		}
	}
	return strings.TrimSuffix(u.Path, "/")
}

// upstreamHost returns the upstream's lower-case host name.
func upstreamHost(r *request.Request) string {
	u := r.Connection.UpstreamURL()
	if u == nil {
		var err error
		if u, err = url.Parse(r.Connection.Upstream); err != nil {
			return ""
		}
	}
	return strings.ToLower(u.Hostname())
}

// relPath returns r.Path with the upstream's base path taken off.
func relPath(r *request.Request) string {
	p := r.Path
	if b := basePath(r); b != "" && (p == b || strings.HasPrefix(p, b+"/")) {
		p = p[len(b):]
	}
	if p == "" {
		p = "/"
	}
	return p
}

// unknown returns the unknown action of kind with a summary saying why.
func unknown(kind string, r *request.Request, why string) Action {
	return Action{Kind: kind, Risk: RiskUnknown, Summary: oneLine(kind + " " + r.Method + " " + r.Path + " on " + r.Connection.Name + ": not understood (" + why + ")")}
}

func validUTF8(b []byte) bool { return utf8.Valid(b) }
