package dataplane_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	corsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/cors/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/custos-dev/custos/config"
	"github.com/custos-dev/custos/envoy/dataplane"
	"github.com/custos-dev/custos/xds"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// controlPlane serves cfg over ADS on loopback and returns the server.
func controlPlane(t *testing.T, cfg *config.Config) (*xds.Server, string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s := xds.NewServer(ctx, quiet(), xds.Options{})
	if _, err := s.Update(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	s.Register(g)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = g.Serve(lis) }()
	t.Cleanup(func() { g.Stop(); cancel() })
	return s, lis.Addr().String()
}

func startDataPlane(t *testing.T, xdsAddr string) *dataplane.DataPlane {
	t.Helper()
	dp, err := dataplane.New(dataplane.Options{XDS: xdsAddr, NodeID: t.Name(), Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = dp.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	select {
	case <-dp.Ready():
	case <-time.After(10 * time.Second):
		t.Fatalf("no configuration over xDS (last NACK: %s)", dp.LastNACK())
	}
	return dp
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

const adsConfig = `
listen:
  dataplane: 127.0.0.1:0
connections:
  - name: customers
    upstream: http://127.0.0.1:8081
`

// The Go data plane ACKs Custos' own snapshot (xds.Server) and serves it.
// No "envoy" run here: envoytest.TestEnvoyAcceptsEveryConfiguration checks
// that real Envoy ACKs every listener, route and cluster Custos serves, for
// every example and fixture configuration.
// Mirrors (docs/envoy-references.md): xDS protocol (ACK/NACK).
func TestDataPlaneACKsCustosSnapshot(t *testing.T) {
	cfg, err := config.Parse([]byte(adsConfig))
	if err != nil {
		t.Fatal(err)
	}
	s, addr := controlPlane(t, cfg)
	dp := startDataPlane(t, addr)
	eventually(t, "ACKs of every type", func() bool {
		acked, _ := s.Status()
		for _, typ := range []string{resource.ListenerType, resource.RouteType, resource.ClusterType} {
			if acked[typ] != s.Version() {
				return false
			}
		}
		return true
	})
	if dp.NACKs() != 0 {
		t.Fatalf("the data plane NACKed Custos' own snapshot: %s", dp.LastNACK())
	}
	// The catch-all answers locally (both filters disabled on it).
	resp, err := http.Get("http://" + dp.Addr() + "/nowhere")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 404 {
		t.Fatalf("catch-all status %d", resp.StatusCode)
	}
}

// withExtraFilter returns the snapshot's resources with one more HTTP filter
// in front of the listener's chain.
func withExtraFilter(t *testing.T, cfg *config.Config, name string, typed proto.Message) *cachev3.Snapshot {
	t.Helper()
	res, err := xds.Resources(cfg, xds.Options{})
	if err != nil {
		t.Fatal(err)
	}
	l := proto.Clone(res[resource.ListenerType][0].(*listenerv3.Listener)).(*listenerv3.Listener)
	hcm := &hcmv3.HttpConnectionManager{}
	if err := l.GetFilterChains()[0].GetFilters()[0].GetTypedConfig().UnmarshalTo(hcm); err != nil {
		t.Fatal(err)
	}
	a, err := anypb.New(typed)
	if err != nil {
		t.Fatal(err)
	}
	hcm.HttpFilters = append([]*hcmv3.HttpFilter{{Name: name, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: a}}}, hcm.HttpFilters...)
	ha, err := anypb.New(hcm)
	if err != nil {
		t.Fatal(err)
	}
	l.GetFilterChains()[0].GetFilters()[0].ConfigType = &listenerv3.Filter_TypedConfig{TypedConfig: ha}
	snap, err := cachev3.NewSnapshot("with-"+name, map[resource.Type][]types.Resource{
		resource.ListenerType: {l},
		resource.RouteType:    res[resource.RouteType],
		resource.ClusterType:  res[resource.ClusterType],
	})
	if err != nil {
		t.Fatal(err)
	}
	return snap
}

// A filter Custos never emits (CORS) is NACKed and the last good snapshot
// keeps serving. No "envoy" run: real Envoy serves CORS, so it would ACK;
// TestNACKKeepsLastGoodConfiguration checks the same rule against both data
// planes with a filter neither knows.
// Mirrors (docs/envoy-references.md): xDS protocol.
func TestDataPlaneNACKsWhatItCannotServeAndKeepsLastGood(t *testing.T) {
	cfg, err := config.Parse([]byte(adsConfig))
	if err != nil {
		t.Fatal(err)
	}
	s, addr := controlPlane(t, cfg)
	dp := startDataPlane(t, addr)
	good := s.Version()
	eventually(t, "the first listener ACK", func() bool {
		acked, _ := s.Status()
		return acked[resource.ListenerType] == good
	})
	if err := s.SetSnapshot(context.Background(), withExtraFilter(t, cfg, "envoy.filters.http.cors", &corsv3.Cors{})); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a NACK", func() bool { return dp.NACKs() > 0 })
	if msg := dp.LastNACK(); !strings.Contains(msg, "envoy.filters.http.cors") || !strings.Contains(msg, "not supported") {
		t.Fatalf("NACK message %q does not name the filter", msg)
	}
	eventually(t, "the control plane to see the NACK", func() bool {
		_, nack := s.Status()
		return strings.Contains(nack, "envoy.filters.http.cors")
	})
	acked, _ := s.Status()
	if acked[resource.ListenerType] != good {
		t.Fatalf("listener version %q acknowledged after a NACK, want the last good %q", acked[resource.ListenerType], good)
	}
	resp, err := http.Get("http://" + dp.Addr() + "/nowhere")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 404 {
		t.Fatalf("after a NACK the data plane stopped serving its last good configuration: %d", resp.StatusCode)
	}
}
