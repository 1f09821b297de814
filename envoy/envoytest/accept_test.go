package envoytest_test

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/custos-dev/custos/config"
	"github.com/custos-dev/custos/envoy/envoytest"
	"github.com/custos-dev/custos/mtls"
	"github.com/custos-dev/custos/xds"
)

// fixture is a configuration whose xDS real Envoy must accept.
type fixture struct {
	name string
	cfg  *config.Config
}

// fixtures are the example configurations and every configuration fixture
// of package config that loads (the others are there to be refused), each
// with its data plane listener on loopback at a port Envoy chooses.
func fixtures(t *testing.T) []fixture {
	t.Helper()
	var out []fixture
	dev := loadConfig(t, filepath.Join("..", "..", "examples", "dev.yaml"))
	out = append(out, fixture{"examples/dev.yaml", dev})

	compose := loadConfig(t, filepath.Join("..", "..", "examples", "compose.yaml"))
	// compose.yaml runs `custos serve --grpc-address custos:9000`: the gRPC
	// cluster is then STRICT_DNS (Options.Hosts resolves custos).
	compose.Listen.GRPC = "custos:9000"
	out = append(out, fixture{"examples/compose.yaml", compose})

	files, err := filepath.Glob(filepath.Join("..", "..", "config", "testdata", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	valid := 0
	for _, f := range files {
		cfg, err := config.Load(f)
		if err != nil {
			continue // a fixture of what config refuses
		}
		valid++
		cfg.Listen.Dataplane = "127.0.0.1:0"
		out = append(out, fixture{"config/testdata/" + filepath.Base(f), cfg})
	}
	if valid == 0 {
		t.Fatal("no configuration in config/testdata loads")
	}

	// What neither example nor fixture has: an https upstream (TLS with the
	// system's CA bundle), upstreams by DNS name, every kind, the longest
	// approvals (their timeouts set Envoy's stream, route and ext_proc timers).
	every, err := config.Parse([]byte(`
listen:
  grpc: 127.0.0.1:9000
  xds: 127.0.0.1:18000
  http: 127.0.0.1:9090
  dataplane: 127.0.0.1:0
connections:
  - name: storage
    upstream: https://acct.blob.core.windows.net/container
    kind: azure
  - name: cluster
    upstream: https://kubernetes.default.svc:6443
    kind: kubernetes
    hosts: [k8s.internal:8443]
  - name: docs
    upstream: https://docs.example.com
    kind: cosmos
    forward_token: true
  - name: graph
    upstream: http://graph.internal:4000/graphql
    kind: graphql
    policy_mode: shadow
  - name: warehouse
    upstream: http://warehouse.internal:8082
    kind: sql-http
    statement_from: query:q
approvals:
  mode: async
  timeout: 24h
`))
	if err != nil {
		t.Fatal(err)
	}
	out = append(out, fixture{"inline/every-kind-async-24h", every})

	// The longest hold: Envoy caps ext_proc's max_message_timeout at 1h.
	hold, err := config.Parse([]byte(`
listen:
  dataplane: 127.0.0.1:0
connections:
  - name: c
    upstream: http://127.0.0.1:8081
approvals:
  mode: hold
  timeout: 59m
`))
	if err != nil {
		t.Fatal(err)
	}
	out = append(out, fixture{"inline/hold-59m", hold})
	return out
}

// TestEnvoyAcceptsEveryConfiguration serves each fixture's xDS in turn to
// one real Envoy and requires every listener, route configuration and
// cluster to be ACKed at that version and in use; a NACK fails the test
// with the error Envoy sent.
func TestEnvoyAcceptsEveryConfiguration(t *testing.T) {
	t.Parallel()
	envoytest.Require(t)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	// Envoy reaches ADS over mutual TLS and holds the secrets the emitted
	// gRPC cluster names when a fixture has listen.tls.
	_, pki := bootstrapDir(t)
	tc, err := mtls.Server(pki.Server, []string{mtls.EnvoyIdentity})
	if err != nil {
		t.Fatal(err)
	}
	srv := serveXDS(t, lis, grpc.Creds(credentials.NewTLS(tc)))
	fs := fixtures(t)
	// An empty snapshot, ACKed at once, so Envoy is ready without waiting
	// for its initial fetch and each fixture starts from an ACK.
	empty, err := cachev3.NewSnapshot("empty", map[resource.Type][]types.Resource{
		resource.ListenerType: {}, resource.RouteType: {}, resource.ClusterType: {},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.SetSnapshot(context.Background(), empty); err != nil {
		t.Fatal(err)
	}
	e := envoytest.Start(t, envoytest.Options{
		XDSAddr: lis.Addr().String(),
		Hosts:   map[string]string{"custos": "127.0.0.1", "demo": "127.0.0.1"},
		TLS:     &envoytest.TLSFiles{CertFile: pki.Client.CertFile, KeyFile: pki.Client.KeyFile, CAFile: pki.CAFile},
	})
	for _, f := range fs {
		t.Run(f.name, func(t *testing.T) {
			version, err := srv.Update(context.Background(), f.cfg)
			if err != nil {
				t.Fatalf("xds: %v", err)
			}
			waitACK(t, srv, e, f.cfg, version)
		})
	}
}

// resourceNames are the names of the resources Custos' xDS emits for cfg,
// by Envoy's kind (listener, route, cluster).
func resourceNames(t *testing.T, cfg *config.Config) map[string][]string {
	t.Helper()
	res, err := xds.Resources(cfg, xds.Options{})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	for typ, rs := range res {
		for _, r := range rs {
			out[kindOf(typ)] = append(out[kindOf(typ)], cachev3.GetResourceName(r))
		}
	}
	return out
}

func kindOf(typeURL string) string {
	switch typeURL {
	case resource.ListenerType:
		return "listener"
	case resource.RouteType:
		return "route"
	case resource.ClusterType:
		return "cluster"
	}
	return typeURL
}

// rejectedStats are Envoy's counters of refused xDS updates:
// listener_manager.lds.update_rejected, cluster_manager.cds.update_rejected
// and http.<prefix>.rds.<route config>.update_rejected.
func rejectedStats(t *testing.T, e *envoytest.Envoy) map[string]uint64 {
	t.Helper()
	s, err := e.Stats(`\.update_rejected$`)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// waitACK waits until Envoy has ACKed version of cfg's listeners, routes and
// clusters and holds every one of them (config_dump shows it, without an
// error; an unchanged resource keeps the version it arrived with), the
// listener bound; a NACK or a rejected update fails t with Envoy's error.
func waitACK(t *testing.T, srv *xds.Server, e *envoytest.Envoy, cfg *config.Config, version string) {
	t.Helper()
	want := resourceNames(t, cfg)
	_, nackBefore := srv.Status()
	rejectedBefore := rejectedStats(t, e)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	missing := "nothing ACKed yet"
	for {
		acked, nack := srv.Status()
		if nack != nackBefore {
			t.Fatalf("Envoy NACKed version %s: %s", version, nack)
		}
		for name, n := range rejectedStats(t, e) {
			if n > rejectedBefore[name] {
				t.Fatalf("Envoy rejected an update of version %s (%s %d, was %d); last NACK: %q", version, name, n, rejectedBefore[name], nack)
			}
		}
		if acked[resource.ListenerType] == version && acked[resource.RouteType] == version && acked[resource.ClusterType] == version {
			m, err := notInUse(e, want)
			if err != nil {
				t.Fatal(err)
			}
			if m == "" {
				break
			}
			missing = m
		}
		select {
		case <-ctx.Done():
			t.Fatalf("version %s: %s (ACKed %v, last NACK %q)", version, missing, acked, nack)
		case <-time.After(20 * time.Millisecond):
		}
	}
	listener := want["listener"][0]
	if _, err := e.WaitListener(ctx, listener); err != nil {
		t.Fatalf("version %s ACKed, but: %v", version, err)
	}
}

// notInUse describes the resources of want that Envoy does not hold, ""
// when it holds them all.
func notInUse(e *envoytest.Envoy, want map[string][]string) (string, error) {
	rs, err := e.DynamicResources()
	if err != nil {
		return "", err
	}
	have := map[string]envoytest.Resource{}
	for _, r := range rs {
		have[r.Kind+" "+r.Name] = r
	}
	var problems []string
	for kind, names := range want {
		for _, n := range names {
			r, ok := have[kind+" "+n]
			switch {
			case !ok:
				problems = append(problems, fmt.Sprintf("%s %s missing", kind, n))
			case r.Error != "":
				problems = append(problems, fmt.Sprintf("%s %s refused: %s", kind, n, r.Error))
			case r.Version == "":
				problems = append(problems, fmt.Sprintf("%s %s not in use yet", kind, n))
			}
		}
	}
	slices.Sort(problems)
	return strings.Join(problems, "; "), nil
}
