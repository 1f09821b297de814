package inspect

import (
	"context"
	"encoding/json"
	"net/url"
	"strings"
	"testing"

	"github.com/custos-dev/custos/config"
	"github.com/custos-dev/custos/filters/request"
)

// req builds a request to a connection of kind whose upstream is upstream;
// target is the path with an optional ?query.
func req(kind, upstream, method, target string, body string, headers ...string) *request.Request {
	p, q, _ := strings.Cut(target, "?")
	r := &request.Request{
		Connection: config.Connection{Name: "c", Kind: kind, Upstream: upstream},
		Method:     method, Path: p, RawQuery: q, Headers: map[string]string{},
	}
	if body != "" {
		r.Body = []byte(body)
		r.BodyBytes = int64(len(body))
	}
	for i := 0; i+1 < len(headers); i += 2 {
		r.Headers[strings.ToLower(headers[i])] = headers[i+1]
	}
	return r
}

// inspectOK runs in on r and fails the test on an error or an invalid risk.
func inspectOK(t testing.TB, in Inspector, r *request.Request) Action {
	t.Helper()
	a, err := in.Inspect(context.Background(), r)
	if err != nil {
		t.Fatalf("%s %s: %v", r.Method, r.Path, err)
	}
	if !Valid(a.Risk) {
		t.Fatalf("%s %s: risk %q is not a risk", r.Method, r.Path, a.Risk)
	}
	if strings.ContainsAny(a.Summary, "\n\r") {
		t.Fatalf("summary has a line break: %q", a.Summary)
	}
	return a
}

func mustEscape(s string) string { return url.QueryEscape(s) }

func jsonMarshal(v any) ([]byte, error) { return json.Marshal(v) }

func contains(s, sub string) bool { return strings.Contains(s, sub) }
