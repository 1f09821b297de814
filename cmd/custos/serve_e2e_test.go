package main

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/custos-dev/custos/envoy/envoytest"
	"github.com/custos-dev/custos/examples/demo"
	"github.com/custos-dev/custos/names"
	"github.com/custos-dev/custos/stack"
)

// The production topology as the README tells an operator to run it:
// `custos serve --config FILE` and `envoy -c envoy/bootstrap.yaml`, the
// bootstrap unmodified. Its ADS cluster is host custos port 18000: the
// harness answers "custos" with a loopback address of this test's own, where
// serve binds listen.xds.
func TestServeWithRealEnvoyFromTheBootstrap(t *testing.T) {
	envoytest.Require(t)
	up, err := stack.StartUpstream(demo.Handler())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(up.Close)
	lis := envoytest.ListenLoopbackPort(t, 18000)
	xdsAddr := lis.Addr().String()
	lis.Close() // serve binds it again
	// Envoy's working directory holds tls/, where the bootstrap's secrets
	// read the client certificate and the CA: made by `custos certs`.
	envoyDir := t.TempDir()
	tlsDir := filepath.Join(envoyDir, "tls")
	if _, _, err := run(context.Background(), "certs", "--dir", tlsDir); err != nil {
		t.Fatal(err)
	}
	// The audit signing key, made as an operator makes it.
	keyFile := filepath.Join(t.TempDir(), "keys", "audit.key")
	if out, _, err := run(context.Background(), "audit", "key", "--generate", "--key-file", keyFile, "--log-id", "custos-serve-test"); err != nil || !strings.HasPrefix(out, "custos-serve-test+") {
		t.Fatalf("audit key --generate: %v %q", err, out)
	}
	cfgPath := writeFile(t, "custos.yaml", `listen:
  grpc: 127.0.0.1:0
  xds: `+xdsAddr+`
  http: 127.0.0.1:0
  dataplane: 127.0.0.1:0
  tls:
    cert_file: `+filepath.Join(tlsDir, "custos.crt")+`
    key_file: `+filepath.Join(tlsDir, "custos.key")+`
    client_ca_file: `+filepath.Join(tlsDir, "ca.crt")+`
    allowed_clients: [spiffe://custos.local/envoy]
connections:
  - name: customers
    upstream: `+up.URL+`
audit:
  dir: `+filepath.Join(envoyDir, "audit")+`
  signing_key_file: `+keyFile+`
`)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stderr syncBuffer
	cmd := newRootCmd(io.Discard, &stderr)
	cmd.SetArgs([]string{"serve", "--config", cfgPath})
	done := make(chan error, 1)
	go func() { done <- cmd.ExecuteContext(ctx) }()

	bootstrap, err := filepath.Abs(filepath.Join("..", "..", "envoy", "bootstrap.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	e := envoytest.Start(t, envoytest.Options{
		Bootstrap: bootstrap,
		WorkDir:   envoyDir,
		Hosts:     map[string]string{"custos": lis.Addr().(*net.TCPAddr).IP.String()},
		Listeners: []string{names.ListenerName},
	})
	base := "http://" + e.ListenerAddr(names.ListenerName)
	resp, err := http.Get(base + "/customers/5")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var c demo.Customer
	if resp.StatusCode != 200 || json.Unmarshal(body, &c) != nil || c.ID != 5 || resp.Header.Get(names.RequestIDHeader) == "" {
		t.Fatalf("through serve and Envoy: status %d (%s)\n%s", resp.StatusCode, describe(body), stderr.String())
	}

	// Custos stops: Envoy keeps its configuration and fails closed.
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("serve did not stop cleanly: %v", err)
	}
	before := up.Count()
	resp, err = http.Get(base + "/customers/5")
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	var m map[string]any
	if resp.StatusCode != 503 || json.Unmarshal(body, &m) != nil || m["error"] != "unavailable" || !strings.HasPrefix(resp.Header.Get("content-type"), "application/json") {
		t.Fatalf("with Custos stopped: status %d (%s), want 503 unavailable JSON", resp.StatusCode, describe(body))
	}
	if up.Count() != before {
		t.Fatal("with Custos stopped the request reached the upstream")
	}
}

func TestServeRequiresAnAuditKey(t *testing.T) {
	p := writeFile(t, "custos.yaml", "listen:\n  insecure: true\nconnections: []\n")
	_, _, err := run(context.Background(), "serve", "--config", p)
	if err == nil || !strings.Contains(err.Error(), "audit.signing_key_file is required") {
		t.Fatalf("err %v, want audit.signing_key_file required", err)
	}
}

func TestServeRequiresTLSOrAnExplicitInsecure(t *testing.T) {
	p := writeFile(t, "custos.yaml", stack.LoopbackListen+"connections: []\n")
	_, _, err := run(context.Background(), "serve", "--config", p)
	if err == nil || !strings.Contains(err.Error(), "listen.tls is required") || !strings.Contains(err.Error(), "listen.insecure") {
		t.Fatalf("err %v, want listen.tls required, or listen.insecure", err)
	}
}
