package credentials_test

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/custos-dev/custos/credentials"
)

// TestBearerFileReload: the token file is re-read when it changes, by
// rename (a Kubernetes projected volume) or rewritten in place, no sooner
// than ReloadInterval; a file caught empty mid-write keeps the previous
// token; a removed file too.
func TestBearerFileReload(t *testing.T) {
	c := &clock{}
	path := writeFile(t, "token", "first-token\n")
	inj := mustNew(t, credentials.Spec{Bearer: &credentials.Bearer{TokenFile: path}},
		credentials.Options{Now: c.now, ReloadInterval: time.Hour, Logger: newLog(t, func() []string {
			return []string{"first-token", "second-token", "third-token-longer"}
		})})
	get := func() string {
		t.Helper()
		v, err := authz(t, inj)
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimPrefix(v, "Bearer ")
	}
	if got := get(); got != "first-token" {
		t.Fatalf("token %q", got)
	}
	replaceFile(t, path, "second-token")
	if got := get(); got != "first-token" {
		t.Fatalf("re-read before ReloadInterval: %q", got)
	}
	c.advance(time.Hour)
	if got := get(); got != "second-token" {
		t.Fatalf("after a rename: %q", got)
	}
	if err := os.WriteFile(path, []byte("third-token-longer"), 0o600); err != nil { // in place
		t.Fatal(err)
	}
	c.advance(time.Hour)
	if got := get(); got != "third-token-longer" {
		t.Fatalf("after an in-place write: %q", got)
	}
	if err := os.WriteFile(path, nil, 0o600); err != nil { // caught mid-write
		t.Fatal(err)
	}
	c.advance(time.Hour)
	if got := get(); got != "third-token-longer" {
		t.Fatalf("an empty file replaced the token: %q", got)
	}
	os.Remove(path)
	c.advance(time.Hour)
	if got := get(); got != "third-token-longer" {
		t.Fatalf("a removed file replaced the token: %q", got)
	}
	replaceFile(t, path, "first-token")
	c.advance(time.Hour)
	if got := get(); got != "first-token" {
		t.Fatalf("after the file came back: %q", got)
	}
}

// TestBearerMutation: Authorization replaced, the agent's other
// credentials removed; SAS parameters only when the agent sent a SAS.
func TestBearerMutation(t *testing.T) {
	inj := mustNew(t, credentials.Spec{Bearer: &credentials.Bearer{TokenFile: writeFile(t, "t", "tok")}}, credentials.Options{})
	for _, c := range []struct{ query, removed string }{
		{"watch=1&sp=x", "[]"},
		{"sp=r&sig=abc&watch=1", "[sp sig]"},
	} {
		m, err := inj.Inject(t.Context(), credentials.Outgoing{Method: "GET", Path: "/api/v1/pods", RawQuery: c.query})
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.Join(m.RemoveQuery, " "); "["+got+"]" != c.removed {
			t.Errorf("%s: removed %q, want %s", c.query, got, c.removed)
		}
		if v, _ := header(m, "authorization"); v != "Bearer tok" {
			t.Errorf("authorization %q", v)
		}
		if strings.Join(m.Remove, " ") != "proxy-authorization" {
			t.Errorf("remove %q", m.Remove)
		}
	}
	for _, bad := range []string{"", "  \n", "two\nlines"} {
		if _, err := credentials.New(credentials.Spec{Bearer: &credentials.Bearer{TokenFile: writeFile(t, "t", bad)}}, credentials.Options{}); err == nil {
			t.Errorf("token file %q accepted", bad)
		}
	}
}

// TestSASFileReload: a new SAS in the file is used from the next check;
// the agent's SAS parameters are replaced, its other parameters kept byte
// for byte.
func TestSASFileReload(t *testing.T) {
	path := writeFile(t, "sas", "?sv=2025-11-05&sp=r&sig=first%2Bsig%3D")
	inj := mustNew(t, credentials.Spec{SAS: &credentials.SAS{TokenFile: path}}, credentials.Options{ReloadInterval: -1,
		Logger: newLog(t, func() []string { return []string{"first+sig=", "second+sig="} })})
	const agentQuery = "restype=container&comp=list&prefix=a%20b&sig=agent&SV=1"
	m, err := inj.Inject(t.Context(), credentials.Outgoing{Method: "GET", Path: "/c", RawQuery: agentQuery})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := m.RewriteQuery(agentQuery), "restype=container&comp=list&prefix=a%20b&sv=2025-11-05&sp=r&sig=first%2Bsig%3D"; got != want {
		t.Errorf("query %q,\nwant %q", got, want)
	}
	if strings.Join(m.Remove, " ") != "authorization proxy-authorization" || len(m.Set) != 0 {
		t.Errorf("headers: %v", m)
	}
	replaceFile(t, path, "sv=2025-11-05&sp=rl&sig=second%2Bsig%3D")
	m, err = inj.Inject(t.Context(), credentials.Outgoing{Method: "GET", Path: "/c"})
	if err != nil {
		t.Fatal(err)
	}
	if got := m.RewriteQuery(""); got != "sv=2025-11-05&sp=rl&sig=second%2Bsig%3D" {
		t.Errorf("after reload: %q", got)
	}
	for _, bad := range []string{"sv=1&sp=r", "sv=1&sig=x&redirect=evil", "sig=%zz"} {
		_, err := credentials.New(credentials.Spec{SAS: &credentials.SAS{TokenFile: writeFile(t, "bad", bad)}}, credentials.Options{})
		if err == nil {
			t.Errorf("SAS file %q accepted", bad)
		}
	}
}
