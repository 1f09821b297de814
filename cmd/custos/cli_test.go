package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/custos-dev/custos/config"
	"github.com/custos-dev/custos/envoy/envoytest"
	"github.com/custos-dev/custos/stack"
	"github.com/custos-dev/custos/stack/stacktest"
)

// run executes the binary's root command in-process.
func run(ctx context.Context, args ...string) (stdout, stderr string, err error) {
	var out, errb bytes.Buffer
	cmd := newRootCmd(&out, &errb)
	cmd.SetArgs(args)
	err = cmd.ExecuteContext(ctx)
	return out.String(), errb.String(), err
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestConfigValidateReportsEveryErrorWithItsPath(t *testing.T) {
	p := writeFile(t, "bad.yaml", `listen:
  grpc: 127.0.0.1:9000
connections:
  - name: customers
    upstream: ftp://127.0.0.1:8081
  - name: customers
    upstream: http://127.0.0.1:8082
    policy_mod: enforce
approvals:
  timeout: 5 minutes
`)
	_, stderr, err := run(context.Background(), "config", "validate", "--config", p)
	if err == nil {
		t.Fatal("an invalid file validated")
	}
	for _, want := range []string{
		"connections[0].upstream",
		"connections[1].name",
		"connections[1].policy_mod",
		"approvals.timeout",
	} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
	if !strings.Contains(err.Error(), "4 error(s)") {
		t.Errorf("summary %q", err)
	}
}

func TestConfigValidateAcceptsTheExamples(t *testing.T) {
	for _, p := range []string{"../../examples/dev.yaml", "../../examples/entra.yaml", "../../examples/compose.yaml"} {
		stdout, stderr, err := run(context.Background(), "config", "validate", "--config", p)
		if err != nil || !strings.Contains(stdout, "valid") {
			t.Fatalf("%s: %v\n%s%s", p, err, stdout, stderr)
		}
	}
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"config", "validate"},
		{"serve"},
		{"dataplane"},
		{"dev", "--log-level", "loud"},
		{"version", "--no-such-flag"},
	} {
		_, _, err := run(context.Background(), args...)
		var ue usageError
		if !errors.As(err, &ue) {
			t.Errorf("%v: %v, want a usage error", args, err)
		}
	}
}

func TestServeRefusesDevBlock(t *testing.T) {
	p := writeFile(t, "dev.yaml", "dev:\n  demo_upstream: 127.0.0.1:8081\n")
	_, _, err := run(context.Background(), "serve", "--config", p)
	if err == nil || !strings.Contains(err.Error(), "dev: block") {
		t.Fatalf("serve with a dev block: %v", err)
	}
}

func TestVersionPrints(t *testing.T) {
	stdout, _, err := run(context.Background(), "version")
	if err != nil || !strings.HasPrefix(stdout, "custos ") {
		t.Fatalf("%q %v", stdout, err)
	}
}

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// syncBuffer is a writer the command and the test share; written wakes a
// reader waiting for more output.
type syncBuffer struct {
	mu      sync.Mutex
	b       bytes.Buffer
	written chan struct{}
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.written != nil {
		close(s.written)
		s.written = nil
	}
	return s.b.Write(p)
}

// next returns a channel closed at the next write.
func (s *syncBuffer) next() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.written == nil {
		s.written = make(chan struct{})
	}
	return s.written
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestDevCommandServesTheCurlLineAndStopsCleanly(t *testing.T) {
	stacktest.ForEachDataPlane(t, func(t *testing.T, dp stack.DataPlane) {
		args := []string{"dev"}
		want := "the embedded Go data plane"
		if dp == stack.Envoy {
			args, want = append(args, "--envoy="+envoytest.Require(t)), "real Envoy, admin http://"
		}
		devServesTheCurlLine(t, args, want)
	})
}

func devServesTheCurlLine(t *testing.T, args []string, banner string) {
	demo := freePort(t)
	// dev makes its private CA beside audit.dir: in the test's own directory.
	// The dev issuer is on listen.http, which `custos token` finds in the
	// file: a fixed port.
	p := writeFile(t, "dev.yaml", `listen:
  grpc: 127.0.0.1:0
  xds: 127.0.0.1:0
  http: `+freePort(t)+`
  dataplane: 127.0.0.1:0
connections:
  - name: customers
    upstream: http://`+demo+`
audit:
  dir: `+filepath.Join(t.TempDir(), "audit")+`
dev:
  issuer: true
  demo_upstream: `+demo+`
`)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out syncBuffer
	cmd := newRootCmd(&out, io.Discard)
	cmd.SetArgs(append(args, "--config", p))
	done := make(chan error, 1)
	go func() { done <- cmd.ExecuteContext(ctx) }()

	curl := regexp.MustCompile(`curl -si -H "authorization: Bearer \$TOKEN" (http://\S+)`)
	var url string
	deadline := time.After(20 * time.Second)
	for url == "" {
		more := out.next()
		if m := curl.FindStringSubmatch(out.String()); m != nil {
			url = m[1]
			break
		}
		select {
		case <-more:
		case err := <-done:
			t.Fatalf("dev exited early: %v\n%s", err, out.String())
		case <-deadline:
			t.Fatalf("no curl line printed:\n%s", out.String())
		}
	}
	for _, want := range []string{"data plane (agents)", "gRPC services", "xDS (ADS)", "/readyz", "/metrics", "demo upstream", banner, "mutual TLS, private CA"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("banner lacks %q", want)
		}
	}
	if !strings.Contains(out.String(), "TOKEN=$(custos token --sub nightly-etl --config "+p+")") {
		t.Errorf("the banner does not say how to get a token")
	}
	// Without a token: 401. With the token the banner's command gets: 200.
	if resp, err := http.Get(url); err != nil || resp.StatusCode != 401 {
		t.Fatalf("no token: %v %v", resp, err)
	}
	token, stderr, err := run(context.Background(), "token", "--sub", "nightly-etl", "--groups", "customers-readers", "--config", p)
	if err != nil || strings.Count(token, ".") != 2 {
		t.Fatalf("custos token: %v (%s)", err, stderr)
	}
	req, _ := http.NewRequest("GET", url, nil)
	req.Header.Set("authorization", "Bearer "+strings.TrimSpace(token))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("x-custos-request-id") == "" || !bytes.Contains(body, []byte(`"card_number"`)) {
		t.Fatalf("the curl line got %d (%d bytes of customer data, not shown)", resp.StatusCode, len(body))
	}
	health := regexp.MustCompile(`(http://\S+/readyz)`).FindStringSubmatch(out.String())
	if health == nil {
		t.Fatal("no readyz address")
	}
	r, err := http.Get(health[1])
	if err != nil {
		t.Fatal(err)
	}
	line, _ := bufio.NewReader(r.Body).ReadString('\n')
	r.Body.Close()
	if r.StatusCode != 200 || !strings.HasPrefix(line, "ready") {
		t.Fatalf("readyz %d %q", r.StatusCode, line)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("dev did not stop cleanly: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("dev did not stop within 10s of Ctrl-C")
	}
	if _, err := http.Get(url); err == nil {
		t.Fatal("the data plane still serves after shutdown")
	}
}

func TestDevEnvoyWithAMissingBinaryFailsClearly(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "no-envoy-here")
	p := writeFile(t, "dev.yaml", stack.LoopbackListen+"connections: []\naudit:\n  dir: "+filepath.Join(t.TempDir(), "audit")+"\n")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, _, err := run(ctx, "dev", "--envoy="+missing, "--config", p)
	if err == nil || !strings.Contains(err.Error(), missing) {
		t.Fatalf("err %v, want it to name the missing binary", err)
	}
}

func TestTokenCommandSaysWhatIsWrong(t *testing.T) {
	ctx := context.Background()
	off := writeFile(t, "off.yaml", "connections:\n  - name: c\n    upstream: http://127.0.0.1:1\n")
	zero := writeFile(t, "zero.yaml", stack.LoopbackListen+"dev:\n  issuer: true\n")
	dir := t.TempDir()
	down := writeFile(t, "down.yaml", "listen:\n  http: "+freePort(t)+"\naudit:\n  dir: "+filepath.Join(dir, "audit")+"\ndev:\n  issuer: true\n")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"token"}, "--sub NAME is required"},
		{[]string{"token", "--sub", "a", "--ttl", "48h"}, "--ttl must be between"},
		{[]string{"token", "--sub", "a", "--config", off}, "does not run the dev issuer"},
		{[]string{"token", "--sub", "a", "--config", zero}, "fixed listen.http port"},
		{[]string{"token", "--sub", "a", "--config", down}, "has `custos dev` run with this configuration?"},
	} {
		_, _, err := run(ctx, tc.args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want %q", tc.args, err, tc.want)
		}
	}
	// The secret exists but nothing serves: the error names the issuer.
	if err := os.MkdirAll(filepath.Join(dir, "dev-issuer"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "dev-issuer", "secret"), []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, _, err := run(ctx, "token", "--sub", "a", "--config", down)
	if err == nil || !strings.Contains(err.Error(), "cannot reach the dev issuer") || strings.Contains(err.Error(), "s3cret") {
		t.Errorf("issuer down: %v", err)
	}
}

func TestPolicyCommands(t *testing.T) {
	ctx := context.Background()
	// The default bundle's tests pass, from the checkout and built in.
	for _, dir := range []string{"../../policies", "builtin:default"} {
		out, _, err := run(ctx, "policy", "test", dir)
		if err != nil || !strings.Contains(out, "0 failed") {
			t.Fatalf("%s: %v\n%s", dir, err, out)
		}
	}
	// A failing test fails the command and is named.
	bad := t.TempDir()
	if err := os.MkdirAll(filepath.Join(bad, "custos"), 0o755); err != nil {
		t.Fatal(err)
	}
	rego := "package custos.authz\n\ndecision := {\"allow\": true}\n\ntest_denies if { not decision.allow }\n"
	if err := os.WriteFile(filepath.Join(bad, "custos", "authz_test.rego"), []byte(rego), 0o644); err != nil {
		t.Fatal(err)
	}
	out, _, err := run(ctx, "policy", "test", bad)
	if err == nil || !strings.Contains(out, "FAIL  data.custos.authz.test_denies") {
		t.Fatalf("a failing Rego test: %v\n%s", err, out)
	}

	in := writeFile(t, "in.json", `{"principal": {"subject": "etl", "kind": "workload", "groups": [], "group_names": ["customers-writers"]},
 "connection": {"name": "customers"}, "request": {"method": "DELETE"}, "action": {"kind": "http", "risk": "destructive", "summary": "DELETE /1"}}`)
	out, _, err = run(ctx, "policy", "eval", "--input", in, "--bundle", "builtin:default")
	if err != nil || !strings.Contains(out, `"rule": "destructive-needs-approval"`) || !strings.Contains(out, "data.custos.authz.decision") {
		t.Fatalf("eval: %v\n%s", err, out)
	}
	// An approval the request's summary is not quoted in: the path is not
	// part of what the decision read.
	if !strings.Contains(out, "\n  input.action.risk\n") || strings.Contains(out, "input.action.summary") || strings.Contains(out, "input.request") {
		t.Fatalf("eval's input read:\n%s", out)
	}
	clock := t.TempDir()
	if err := os.MkdirAll(filepath.Join(clock, "custos"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(clock, "custos", "authz.rego"), []byte("package custos.authz\n\ndecision := {\"allow\": time.now_ns() > 0}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, _, err = run(ctx, "policy", "eval", "--input", in, "--bundle", clock); err != nil || !strings.Contains(out, "input read: this bundle's decisions are never cached") {
		t.Fatalf("eval of a clock-reading bundle: %v\n%s", err, out)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"policy", "eval"}, "--input FILE is required"},
		{[]string{"policy", "eval", "--input", writeFile(t, "x.json", "[1]"), "--bundle", "builtin:default"}, "must be a JSON object"},
		{[]string{"policy", "eval", "--input", writeFile(t, "y.json", "{"), "--bundle", "builtin:default"}, "not JSON"},
		{[]string{"policy", "eval", "--input", in, "--bundle", filepath.Join(bad, "nope")}, "no such file"},
		{[]string{"policy", "test", filepath.Join(bad, "nope")}, "is not a bundle directory"},
	} {
		if _, _, err := run(ctx, tc.args...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want %q", tc.args, err, tc.want)
		}
	}
}

// custos dev makes the listener's TLS files on first run and never
// replaces them.
func TestDevMakesAgentTLSFilesOnce(t *testing.T) {
	dir := t.TempDir()
	at := &config.AgentTLS{CertFile: filepath.Join(dir, "listener.crt"), KeyFile: filepath.Join(dir, "listener.key"), ClientCAFile: filepath.Join(dir, "agents-ca.crt")}
	if err := devAgentTLS(at); err != nil {
		t.Fatal(err)
	}
	first, err := os.ReadFile(at.CertFile)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tls.LoadX509KeyPair(at.CertFile, at.KeyFile); err != nil {
		t.Fatalf("the made certificate and key: %v", err)
	}
	if err := devAgentTLS(at); err != nil {
		t.Fatal(err)
	}
	again, _ := os.ReadFile(at.CertFile)
	if !bytes.Equal(first, again) {
		t.Fatal("an existing certificate was replaced")
	}
}
