package envoytest_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/custos-dev/custos/config"
	"github.com/custos-dev/custos/envoy/envoytest"
	"github.com/custos-dev/custos/mtls"
	"github.com/custos-dev/custos/xds"
)

// bootstrapFile is the production bootstrap, run unmodified.
var bootstrapFile = filepath.Join("..", "bootstrap.yaml")

func TestEnvoyIsTheOneCustosSupports(t *testing.T) {
	t.Parallel()
	path := envoytest.Require(t)
	v, err := envoytest.Version(path)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(v, envoytest.WantVersion+".") {
		t.Errorf("%s --version reports %s, want %s.x", path, v, envoytest.WantVersion)
	}

	e := envoytest.Start(t, envoytest.Options{})
	b, err := e.Get("/server_info")
	if err != nil {
		t.Fatal(err)
	}
	var info struct {
		Version string `json:"version"`
		State   string `json:"state"`
	}
	if err := json.Unmarshal(b, &info); err != nil {
		t.Fatal(err)
	}
	// "9e5580933739775e8bce696a57a2e1bc99368f23/1.40.0/Clean/RELEASE/BoringSSL"
	if parts := strings.Split(info.Version, "/"); len(parts) < 2 || parts[1] != v {
		t.Errorf("/server_info version %q, want release %s", info.Version, v)
	}
	if info.State != "LIVE" {
		t.Errorf("/server_info state %q, want LIVE", info.State)
	}

	ext, err := e.LinkedExtensions()
	if err != nil {
		t.Fatal(err)
	}
	// ext_authz and ext_proc are Custos; wasm and lua are what an operator
	// adds around it (the 1.38.3 wheel lacks wasm).
	for _, want := range []string{"envoy.filters.http.ext_authz", "envoy.filters.http.ext_proc", "envoy.filters.http.wasm", "envoy.filters.http.lua"} {
		if !slices.Contains(ext["envoy.filters.http"], want) {
			t.Errorf("envoy.filters.http extensions lack %s: %v", want, ext["envoy.filters.http"])
		}
	}
	if !slices.Contains(ext["envoy.wasm.runtime"], "envoy.wasm.runtime.v8") {
		t.Errorf("no V8 WASM runtime: %v", ext["envoy.wasm.runtime"])
	}
}

func TestBootstrapPassesValidateMode(t *testing.T) {
	t.Parallel()
	path := envoytest.Require(t)
	dir, _ := bootstrapDir(t)
	cmd := exec.Command(path, "--mode", "validate", "-c", absBootstrap(t))
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("envoy --mode validate -c %s: %v\n%s", bootstrapFile, err, out)
	}
	if !strings.Contains(string(out), "OK") {
		t.Fatalf("envoy --mode validate printed no OK:\n%s", out)
	}
}

// TestConfigYAMLAppendsToRepeatedFields records how --config-yaml merges
// into a bootstrap file (protobuf MergeFrom): a repeated field is appended
// to, so bootstrap.yaml's xds cluster and ADS gRPC service cannot be
// replaced by an override. Options.ConfigYAML documents this.
func TestConfigYAMLAppendsToRepeatedFields(t *testing.T) {
	t.Parallel()
	path := envoytest.Require(t)
	staticCluster := func(name string) string {
		return `{name: ` + name + `, type: STATIC, load_assignment: {cluster_name: ` + name + `, endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: 1}}}}]}]}}`
	}
	for _, c := range []struct{ override, refused string }{
		{`{static_resources: {clusters: [` + staticCluster("xds") + `]}}`, "duplicate cluster 'xds'"},
		{`{static_resources: {clusters: [` + staticCluster("xds-test") + `]}, dynamic_resources: {ads_config: {grpc_services: [{envoy_grpc: {cluster_name: xds-test}}]}}}`, "no more than 1 gRPC services"},
	} {
		dir, _ := bootstrapDir(t)
		cmd := exec.Command(path, "--mode", "validate", "-c", absBootstrap(t), "--config-yaml", c.override)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(out), c.refused) {
			t.Errorf("--config-yaml %s: want refused with %q, got %v\n%s", c.override, c.refused, err, out)
		}
	}
}

// TestUnmodifiedBootstrapFollowsCustos runs envoy/bootstrap.yaml as the
// README tells an operator to, changed only by --config-yaml: its xds
// cluster dials custos:18000, so the test's ADS server listens at port 18000
// on a loopback address of its own, which Envoy's DNS (Options.Hosts)
// gives for custos; the admin port is Envoy's choice.
func TestUnmodifiedBootstrapFollowsCustos(t *testing.T) {
	t.Parallel()
	envoytest.Require(t)
	lis := envoytest.ListenLoopbackPort(t, 18000)
	dir, pki := bootstrapDir(t)
	// ADS over mutual TLS, as the bootstrap's xds cluster reaches it.
	tc, err := mtls.Server(pki.Server, []string{mtls.EnvoyIdentity})
	if err != nil {
		t.Fatal(err)
	}
	srv := serveXDS(t, lis, grpc.Creds(credentials.NewTLS(tc)))
	cfg := loadConfig(t, filepath.Join("..", "..", "examples", "dev.yaml"))
	// The emitted gRPC cluster names the bootstrap's secrets too.
	cfg.Listen.TLS = &config.TLS{CertFile: pki.Server.CertFile, KeyFile: pki.Server.KeyFile, ClientCAFile: pki.CAFile}
	version, err := srv.Update(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	listener := resourceNames(t, cfg)["listener"][0]
	e := envoytest.Start(t, envoytest.Options{
		Bootstrap: absBootstrap(t),
		WorkDir:   dir,
		Hosts:     map[string]string{"custos": lis.Addr().(*net.TCPAddr).IP.String()},
		Listeners: []string{listener},
	})
	if addr := e.ListenerAddr(listener); addr == "" || strings.HasSuffix(addr, ":0") {
		t.Fatalf("listener %s bound at %q", listener, addr)
	}
	waitACK(t, srv, e, cfg, version)
}

// bootstrapDir is a working directory for envoy/bootstrap.yaml: tls/ holds
// a private CA and certificates, where the bootstrap's secrets read them.
func bootstrapDir(t *testing.T) (string, mtls.PKI) {
	t.Helper()
	dir := t.TempDir()
	pki, err := mtls.DevPKI(filepath.Join(dir, "tls"))
	if err != nil {
		t.Fatal(err)
	}
	return dir, pki
}

// absBootstrap is envoy/bootstrap.yaml's absolute path, for an Envoy whose
// working directory is elsewhere.
func absBootstrap(t *testing.T) string {
	t.Helper()
	p, err := filepath.Abs(bootstrapFile)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// serveXDS serves Custos' ADS on lis until the test ends.
func serveXDS(t *testing.T, lis net.Listener, opts ...grpc.ServerOption) *xds.Server {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	srv := xds.NewServer(ctx, slog.New(slog.NewTextHandler(io.Discard, nil)), xds.Options{})
	g := grpc.NewServer(opts...)
	srv.Register(g)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = g.Serve(lis)
	}()
	t.Cleanup(func() {
		cancel()
		g.Stop()
		<-done
	})
	return srv
}

// loadConfig loads a configuration file for a test Envoy: its data plane
// listener moves to a port Envoy chooses on loopback.
func loadConfig(t *testing.T, path string) *config.Config {
	t.Helper()
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Listen.Dataplane = "127.0.0.1:0"
	return cfg
}
