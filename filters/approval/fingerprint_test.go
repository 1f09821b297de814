package approval

import (
	"testing"

	"github.com/custos-dev/custos/config"
	"github.com/custos-dev/custos/filters/request"
)

func baseRequest() *request.Request {
	return &request.Request{
		Connection: config.Connection{Name: "warehouse"},
		Method:     "POST", Path: "/query", RawQuery: "b=2&a=1&a=0",
		Headers: map[string]string{"content-type": "application/json", "impersonate-user": "alice", "user-agent": "x"},
		Body:    []byte(`{"query":"DELETE FROM t"}`),
	}
}

func TestFingerprintBindsEveryPartOfTheRequest(t *testing.T) {
	base := Fingerprint(baseRequest())
	if len(base) != 64 {
		t.Fatalf("fingerprint %q is not a SHA-256 in hex", base)
	}
	for name, change := range map[string]func(r *request.Request){
		"connection":          func(r *request.Request) { r.Connection.Name = "other" },
		"method":              func(r *request.Request) { r.Method = "PUT" },
		"method override":     func(r *request.Request) { r.Headers["x-http-method-override"] = "DELETE" },
		"path":                func(r *request.Request) { r.Path = "/query2" },
		"query value":         func(r *request.Request) { r.RawQuery = "b=3&a=1&a=0" },
		"content type":        func(r *request.Request) { r.Headers["content-type"] = "text/plain" },
		"impersonation":       func(r *request.Request) { r.Headers["impersonate-user"] = "bob" },
		"impersonation added": func(r *request.Request) { r.Headers["impersonate-group"] = "system:masters" },
		"body":                func(r *request.Request) { r.Body = []byte(`{"query":"DELETE FROM u"}`) },
		// Bytes moved from one part to the next must not collide.
		"path into query": func(r *request.Request) { r.Path = "/query?b=2"; r.RawQuery = "a=1&a=0" },
	} {
		r := baseRequest()
		change(r)
		if Fingerprint(r) == base {
			t.Errorf("%s changed and the fingerprint did not", name)
		}
	}
	// What inspectors do not read, and the query's order, do not matter.
	r := baseRequest()
	r.Headers["user-agent"] = "y"
	r.RawQuery = "a=0&a=1&b=2"
	if Fingerprint(r) != base {
		t.Error("an unread header or the query's order changed the fingerprint")
	}
}
