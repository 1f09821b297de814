package policy_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/bundle"

	"github.com/custos-dev/custos/config"
	"github.com/custos-dev/custos/filters/identity"
	"github.com/custos-dev/custos/filters/inspect"
	"github.com/custos-dev/custos/filters/policy"
	"github.com/custos-dev/custos/filters/request"
	"github.com/custos-dev/custos/policies"
)

func input(groups []string, risk inspect.Risk) policy.Input {
	return policy.Input{
		Principal: identity.Principal{Issuer: "https://idp", Subject: "nightly-etl", Kind: identity.KindWorkload, GroupNames: groups},
		Request: &request.Request{ID: "r-1", Connection: config.Connection{Name: "customers", Kind: "http"}, Method: "GET",
			Path: "/1", OriginalPath: "/customers/1", RawQuery: "sig=SECRETSIG&x=1", Headers: map[string]string{"accept": "*/*"}},
		Action: inspect.Action{Kind: "http", Risk: risk, Summary: "GET /1"},
		Time:   time.Now(),
	}
}

func newRego(t *testing.T, o policy.RegoOptions) *policy.Rego {
	t.Helper()
	r, err := policy.NewRego(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func TestDefaultBundleDecides(t *testing.T) {
	r := newRego(t, policy.RegoOptions{Source: policy.FS(policies.Builtin, policies.Bundle)})
	if !strings.HasPrefix(r.Revision(), "sha256:") {
		t.Fatalf("revision %q: a bundle without a manifest revision is named by its content", r.Revision())
	}
	ctx := context.Background()
	d, err := r.Decide(ctx, input([]string{"customers-readers"}, inspect.RiskRead))
	if err != nil || !d.Allow || d.Approval != nil || d.Revision != r.Revision() || len(d.ID) != 32 || len(d.Reasons) != 1 {
		t.Fatalf("reader reads: %+v %v", d, err)
	}
	d2, _ := r.Decide(ctx, input([]string{"customers-readers"}, inspect.RiskRead))
	if d2.ID == d.ID {
		t.Fatal("two evaluations share a decision id")
	}
	if d, err = r.Decide(ctx, input([]string{"customers-readers"}, inspect.RiskWrite)); err != nil || d.Allow || len(d.Reasons) != 1 {
		t.Fatalf("reader writes: %+v %v", d, err)
	}
	if d, err = r.Decide(ctx, input([]string{"customers-writers"}, inspect.RiskDestructive)); err != nil || !d.Allow || d.Approval == nil ||
		d.Approval.MinApprovals != 1 || d.Approval.Scope != policy.ScopeRequest || d.Approval.Approvers[0] != "custos-approvers" {
		t.Fatalf("writer destroys: %+v %v", d, err)
	}
}

// The input document never carries credentials.
func TestDocumentHoldsNoCredentials(t *testing.T) {
	in := input(nil, inspect.RiskRead)
	in.Request.Headers["authorization"] = "Bearer TOKEN"
	in.Request.Headers["cookie"] = "s=1"
	doc := policy.Document(in)
	req := doc["request"].(map[string]any)
	if _, ok := req["headers"].(map[string]any)["authorization"]; ok {
		t.Fatal("authorization in the input")
	}
	if q := req["query"].(map[string]any); q["sig"].([]any)[0] != policy.Redacted || q["x"].([]any)[0] != "1" {
		t.Fatalf("query %v", q)
	}
	// And it converts to a Rego value (every type is one OPA reads), the
	// value Decide builds directly.
	if _, err := ast.InterfaceToValue(doc); err != nil {
		t.Fatal(err)
	}
	in.Principal.Claims = map[string]any{"tid": "t-1", "amr": []any{"pwd"}}
	in.Request.Connection.Labels = map[string]string{"env": "prod"}
	in.Action.Details = map[string]any{"verb": "get"}
	in.Action.Kind = "kubernetes"
	in.Grants = []policy.Grant{{ID: "g-1", Scope: "request", Expires: time.Unix(1e9, 0)}}
	for _, tc := range []policy.Input{input(nil, inspect.RiskRead), in} {
		want, err := ast.InterfaceToValue(policy.Document(tc))
		if err != nil {
			t.Fatal(err)
		}
		got, err := policy.DocumentValue(tc)
		if err != nil {
			t.Fatal(err)
		}
		if got.Compare(want) != 0 {
			t.Fatalf("DocumentValue differs from Document:\n%v\n%v", got, want)
		}
	}
}

// writeBundle writes a bundle whose decision rule is rule.
func writeBundle(t testing.TB, dir, rule string, manifest string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(dir, "custos"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "custos", "authz.rego"), []byte("package custos.authz\n\n"+rule+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if manifest != "" {
		if err := os.WriteFile(filepath.Join(dir, ".manifest"), []byte(manifest), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

type changes struct {
	mu   sync.Mutex
	list []policy.Change
}

func (c *changes) add(ch policy.Change) {
	c.mu.Lock()
	c.list = append(c.list, ch)
	c.mu.Unlock()
}

func (c *changes) all() []policy.Change {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]policy.Change(nil), c.list...)
}

func TestHotReloadKeepsTheLastGoodBundle(t *testing.T) {
	dir := t.TempDir()
	writeBundle(t, dir, `decision := {"allow": true, "reasons": ["v1"]}`, `{"revision": "v1"}`)
	var ch changes
	r := newRego(t, policy.RegoOptions{Source: policy.Dir(dir), PollInterval: time.Hour, OnChange: ch.add})
	ctx := context.Background()
	decide := func() policy.Decision {
		t.Helper()
		d, err := r.Decide(ctx, input(nil, inspect.RiskRead))
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	if d := decide(); d.Revision != "v1" || d.Reasons[0] != "v1" {
		t.Fatalf("%+v", d)
	}
	r.Reload(ctx) // nothing changed: nothing reported
	if len(ch.all()) != 0 {
		t.Fatalf("an unchanged bundle was reported: %+v", ch.all())
	}

	writeBundle(t, dir, `decision := {"allow": false, "reasons": ["v2"]}`, `{"revision": "v2"}`)
	r.Reload(ctx)
	if d := decide(); d.Revision != "v2" || d.Allow {
		t.Fatalf("after the swap: %+v", d)
	}

	// A bundle that does not compile is refused with its errors; v2 stays.
	writeBundle(t, dir, `decision := {"allow": true, "reasons": [undefined_thing]}`, `{"revision": "v3"}`)
	r.Reload(ctx)
	r.Reload(ctx) // the same bad bundle is reported once
	if d := decide(); d.Revision != "v2" {
		t.Fatalf("a broken bundle replaced the good one: %+v", d)
	}
	got := ch.all()
	if len(got) != 2 || got[0].Revision != "v2" || got[0].Previous != "v1" || got[0].Err != nil ||
		got[1].Err == nil || got[1].Revision != "v2" || !strings.Contains(got[1].Err.Error(), "undefined_thing") {
		t.Fatalf("changes %+v", got)
	}

	// A bundle without the decision rule is refused too.
	writeBundle(t, dir, `other := 1`, `{"revision": "v4"}`)
	r.Reload(ctx)
	if d := decide(); d.Revision != "v2" {
		t.Fatalf("%+v", d)
	}
}

func TestFirstLoadErrorsRefuseTheConfiguration(t *testing.T) {
	ctx := context.Background()
	missing := filepath.Join(t.TempDir(), "nope")
	empty := t.TempDir()
	broken := t.TempDir()
	writeBundle(t, broken, `decision := {`, "")
	noRule := t.TempDir()
	writeBundle(t, noRule, `allow := true`, "")
	for name, dir := range map[string]string{"missing": missing, "empty": empty, "broken": broken, "no decision rule": noRule} {
		if _, err := policy.NewRego(ctx, policy.RegoOptions{Source: policy.Dir(dir)}); err == nil {
			t.Errorf("%s: loaded", name)
		}
	}
}

// The poll picks up a swapped bundle by itself.
func TestPollFollowsTheDirectory(t *testing.T) {
	dir := t.TempDir()
	writeBundle(t, dir, `decision := {"allow": true}`, `{"revision": "a"}`)
	seen := make(chan policy.Change, 4)
	r := newRego(t, policy.RegoOptions{Source: policy.Dir(dir), PollInterval: 10 * time.Millisecond, OnChange: func(c policy.Change) { seen <- c }})
	writeBundle(t, dir, `decision := {"allow": true}`, `{"revision": "b"}`)
	select {
	case c := <-seen:
		if c.Revision != "b" || r.Revision() != "b" {
			t.Fatalf("%+v", c)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the poll did not pick up the new bundle")
	}
}

// Garbage from a policy is 503 (an error), never an allow.
func TestMalformedDecisionsAreErrors(t *testing.T) {
	ctx := context.Background()
	for name, rule := range map[string]string{
		"undefined":          `decision := x if { x := {"allow": true}; input.nope }`,
		"not an object":      `decision := "allow"`,
		"allow a string":     `decision := {"allow": "true"}`,
		"no allow":           `decision := {"reasons": []}`,
		"misspelt key":       `decision := {"allow": true, "mask_profle": "pci"}`,
		"reasons not a list": `decision := {"allow": false, "reasons": "no"}`,
		"reason a number":    `decision := {"allow": false, "reasons": [1]}`,
		"approval no rule":   `decision := {"allow": true, "approval": {"approvers": ["a"]}}`,
		"approval no group":  `decision := {"allow": true, "approval": {"rule": "r", "approvers": []}}`,
		"approval bad scope": `decision := {"allow": true, "approval": {"rule": "r", "approvers": ["a"], "scope": "forever"}}`,
		"window without ttl": `decision := {"allow": true, "approval": {"rule": "r", "approvers": ["a"], "scope": "window"}}`,
		"zero approvals":     `decision := {"allow": true, "approval": {"rule": "r", "approvers": ["a"], "min_approvals": 0}}`,
		"fractional":         `decision := {"allow": true, "approval": {"rule": "r", "approvers": ["a"], "min_approvals": 1.5}}`,
		"builtin error":      `decision := {"allow": to_number("x") == 1}`,
		"conflict":           "decision := {\"allow\": true} if input.action.risk\ndecision := {\"allow\": false} if input.action.kind",
	} {
		dir := t.TempDir()
		writeBundle(t, dir, rule, "")
		r, err := policy.NewRego(ctx, policy.RegoOptions{Source: policy.Dir(dir), PollInterval: time.Hour})
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		d, err := r.Decide(ctx, input(nil, inspect.RiskRead))
		if err == nil {
			t.Errorf("%s: decided %+v", name, d)
		}
		r.Close()
	}
}

func TestParseDecisionAcceptsTheContract(t *testing.T) {
	d, err := policy.ParseDecision(map[string]any{"allow": false, "reasons": []any{"r"}, "mask_profile": "pci",
		"approval": map[string]any{"rule": "dba", "approvers": []any{"dba", "dba"}, "min_approvals": float64(2), "scope": "window", "ttl": "30m"}})
	if err != nil {
		t.Fatal(err)
	}
	if d.Allow || d.MaskProfile != "pci" || d.Approval.Rule != "dba" || len(d.Approval.Approvers) != 1 || d.Approval.MinApprovals != 2 ||
		d.Approval.Scope != policy.ScopeWindow || d.Approval.TTL != 30*time.Minute {
		t.Fatalf("%+v %+v", d, d.Approval)
	}
	if _, err := policy.ParseDecision(nil); !errors.Is(err, policy.ErrMalformed) {
		t.Fatal(err)
	}
}

// signedBundle builds a bundle (tar.gz, as `opa build` writes it) whose
// decision allows, signed with key unless key is nil.
func signedBundle(t *testing.T, key *rsa.PrivateKey, revision string) []byte {
	t.Helper()
	mod := "package custos.authz\n\ndecision := {\"allow\": true, \"reasons\": [\"" + revision + "\"]}\n"
	b := bundle.Bundle{
		Manifest: bundle.Manifest{Revision: revision, Roots: &[]string{"custos"}},
		Modules:  []bundle.ModuleFile{{URL: "/custos/authz.rego", Path: "/custos/authz.rego", Raw: []byte(mod), Parsed: ast.MustParseModule(mod)}},
		Data:     map[string]any{},
	}
	if key != nil {
		pemKey := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
		if err := b.GenerateSignature(bundle.NewSigningConfig(string(pemKey), "RS256", ""), "default", false); err != nil {
			t.Fatal(err)
		}
	}
	var buf bytes.Buffer
	if err := bundle.NewWriter(&buf).Write(b); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func publicPEM(t *testing.T, k *rsa.PrivateKey) []byte {
	der, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

// A bundle server: ETag polling, and signatures verified when a key is
// configured.
func TestBundleServerWithSignatures(t *testing.T) {
	key, _ := rsa.GenerateKey(rand.Reader, 2048)
	other, _ := rsa.GenerateKey(rand.Reader, 2048)
	var current atomic.Pointer[[]byte]
	var hits, notModified atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		b := *current.Load()
		sum := sha256.Sum256(b)
		etag := `"` + hex.EncodeToString(sum[:8]) + `"`
		if r.Header.Get("if-none-match") == etag {
			notModified.Add(1)
			w.WriteHeader(http.StatusNotModified)
			return
		}
		w.Header().Set("etag", etag)
		w.Write(b)
	}))
	t.Cleanup(srv.Close)
	ctx := context.Background()
	verify := &policy.Verification{Key: publicPEM(t, key)}

	good := signedBundle(t, key, "s1")
	current.Store(&good)
	var ch changes
	r := newRego(t, policy.RegoOptions{Source: policy.Server(srv.URL+"/bundle.tar.gz", nil), PollInterval: time.Hour, Verification: verify, OnChange: ch.add})
	if r.Revision() != "s1" {
		t.Fatalf("revision %q", r.Revision())
	}
	r.Reload(ctx)
	if notModified.Load() != 1 {
		t.Fatalf("an unchanged bundle was downloaded again (%d hits, %d not modified)", hits.Load(), notModified.Load())
	}
	for name, b := range map[string][]byte{"unsigned": signedBundle(t, nil, "u"), "signed by another key": signedBundle(t, other, "o")} {
		current.Store(&b)
		r.Reload(ctx)
		if r.Revision() != "s1" {
			t.Fatalf("%s bundle loaded", name)
		}
		if l := ch.all(); len(l) == 0 || l[len(l)-1].Err == nil {
			t.Fatalf("%s: no refusal reported", name)
		}
	}
	next := signedBundle(t, key, "s2")
	current.Store(&next)
	r.Reload(ctx)
	if r.Revision() != "s2" {
		t.Fatalf("revision %q after a good signed bundle", r.Revision())
	}
	// Without verification the same server's unsigned bundle loads, and
	// with it, an unsigned first bundle refuses the configuration.
	uns := signedBundle(t, nil, "u1")
	current.Store(&uns)
	if _, err := policy.NewRego(ctx, policy.RegoOptions{Source: policy.Server(srv.URL+"/b", nil), Verification: verify}); err == nil {
		t.Fatal("an unsigned bundle was accepted with a verification key")
	}
	if r2 := newRego(t, policy.RegoOptions{Source: policy.Server(srv.URL+"/b", nil)}); r2.Revision() != "u1" {
		t.Fatal(r2.Revision())
	}
}
