package dataplane_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc"

	"github.com/custos-dev/custos/envoy/envoytest"
	"github.com/custos-dev/custos/envoy/launch"
)

// The conformance suite is differential: every scenario runs through the Go
// data plane (subtest "go") and through real Envoy (subtest "envoy"), with
// the same scripted servers, the same resources from the same ADS server and
// the same assertions, so that a rule the Go data plane follows is a rule
// Envoy follows, not only our reading of its sources.
//
// One Envoy serves the whole package: each scenario serves its snapshot to
// it and waits for the ACK of every type, then for the listener to finish
// warming, before sending a request. Starting an Envoy per scenario would
// cost a second or more each on two cores.

// plane is the data plane a scenario runs through.
type plane int

const (
	goPlane plane = iota
	envoyPlane
)

func (p plane) String() string {
	if p == envoyPlane {
		return "envoy"
	}
	return "go"
}

// bothPlanes runs f as subtest "go" against the Go data plane and as subtest
// "envoy" against real Envoy. Without Envoy the second skips with one line
// (or fails, with CI=true), as envoytest.Require does.
func bothPlanes(t *testing.T, f func(t *testing.T, p plane)) {
	t.Helper()
	t.Run("go", func(t *testing.T) { f(t, goPlane) })
	t.Run("envoy", func(t *testing.T) {
		envoytest.Require(t)
		f(t, envoyPlane)
	})
}

// envoyNode is the node id of the package's Envoy on the ADS server; each
// Go data plane uses its test's name.
const envoyNode = "conformance-envoy"

// ads is the package's ADS server: a snapshot cache that both data planes
// follow, and what each node ACKed and NACKed.
var ads *adsServer

func TestMain(m *testing.M) {
	var err error
	ads, err = startADS()
	if err != nil {
		fmt.Fprintln(os.Stderr, "ads server:", err)
		os.Exit(1)
	}
	code := m.Run()
	if !sharedEnvoy.stop() && code == 0 {
		code = 1
	}
	ads.stop()
	os.Exit(code)
}

type adsServer struct {
	cache  cachev3.SnapshotCache
	addr   string
	grpc   *grpc.Server
	cancel context.CancelFunc

	mu    sync.Mutex
	nodes map[int64]string             // stream id → node id
	acked map[string]map[string]string // node → type URL → version
	// nacks are the errors each node sent back, by the version refused
	// (a NACK's version_info is the last one accepted; the nonce of the
	// response it refuses names the version).
	nacks  map[string]map[string][]string
	nonces map[string]string // stream id/nonce → version sent
	// changed is closed and replaced whenever a request arrives.
	changed chan struct{}
}

func startADS() (*adsServer, error) {
	ctx, cancel := context.WithCancel(context.Background())
	a := &adsServer{
		cache:   cachev3.NewSnapshotCache(true, cachev3.IDHash{}, nil),
		cancel:  cancel,
		nodes:   map[int64]string{},
		acked:   map[string]map[string]string{},
		nacks:   map[string]map[string][]string{},
		nonces:  map[string]string{},
		changed: make(chan struct{}),
	}
	cb := serverv3.CallbackFuncs{StreamRequestFunc: a.onRequest, StreamResponseFunc: a.onResponse}
	a.grpc = grpc.NewServer()
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(a.grpc, serverv3.NewServer(ctx, a.cache, cb))
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		cancel()
		return nil, err
	}
	a.addr = lis.Addr().String()
	go func() { _ = a.grpc.Serve(lis) }()
	return a, nil
}

func (a *adsServer) stop() {
	a.grpc.Stop()
	a.cancel()
}

// onRequest records ACKs (a version without error_detail) and NACKs.
func (a *adsServer) onRequest(stream int64, req *discoveryv3.DiscoveryRequest) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	node := req.GetNode().GetId()
	if node == "" {
		node = a.nodes[stream]
	}
	a.nodes[stream] = node
	if req.GetErrorDetail() != nil {
		refused := a.nonces[fmt.Sprint(stream, "/", req.GetResponseNonce())]
		if a.nacks[node] == nil {
			a.nacks[node] = map[string][]string{}
		}
		a.nacks[node][refused] = append(a.nacks[node][refused], req.GetTypeUrl()+": "+req.GetErrorDetail().GetMessage())
	} else if req.GetResponseNonce() != "" {
		if a.acked[node] == nil {
			a.acked[node] = map[string]string{}
		}
		a.acked[node][req.GetTypeUrl()] = req.GetVersionInfo()
	}
	close(a.changed)
	a.changed = make(chan struct{})
	return nil
}

// onResponse notes which version each response's nonce carries.
func (a *adsServer) onResponse(_ context.Context, stream int64, _ *discoveryv3.DiscoveryRequest, resp *discoveryv3.DiscoveryResponse) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.nonces[fmt.Sprint(stream, "/", resp.GetNonce())] = resp.GetVersionInfo()
}

// state returns the versions node ACKed by type, the errors of its NACKs of
// version, and a channel closed at the next request from any node.
func (a *adsServer) state(node, version string) (acked map[string]string, nacks []string, changed <-chan struct{}) {
	a.mu.Lock()
	defer a.mu.Unlock()
	acked = map[string]string{}
	for k, v := range a.acked[node] {
		acked[k] = v
	}
	return acked, append([]string(nil), a.nacks[node][version]...), a.changed
}

// set serves resources to node at version.
func (a *adsServer) set(node, version string, res map[resource.Type][]types.Resource) error {
	snap, err := cachev3.NewSnapshot(version, res)
	if err != nil {
		return err
	}
	return a.cache.SetSnapshot(context.Background(), node, snap)
}

// envoyVersions numbers the snapshots served to the package's Envoy.
var envoyVersions atomic.Int64

// packageEnvoy is the Envoy every scenario's "envoy" subtest runs through,
// started by the first of them and stopped by TestMain. It is launched
// directly rather than by envoytest.Start, whose Envoy lives only as long
// as one test.
type packageEnvoy struct {
	mu      sync.Mutex
	e       *launch.Envoy
	err     error
	started bool
}

var sharedEnvoy packageEnvoy

// get returns the package's Envoy, starting it on first use; t is skipped
// as envoytest.Require skips when Envoy is not installed.
func (p *packageEnvoy) get(t *testing.T) *launch.Envoy {
	t.Helper()
	path := envoytest.Require(t)
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.started {
		p.started = true
		p.e, p.err = p.start(path)
	}
	if p.err != nil {
		t.Fatalf("the package's Envoy: %v", p.err)
	}
	select {
	case <-p.e.Done():
		t.Fatalf("the package's Envoy exited: %v\n%s", p.e.Err(), p.e.Log())
	default:
	}
	return p.e
}

func (p *packageEnvoy) start(path string) (*launch.Envoy, error) {
	// An empty snapshot first, so that Envoy is ready at once (no initial
	// fetch to time out) and every scenario starts from an ACK.
	empty := map[resource.Type][]types.Resource{resource.ListenerType: {}, resource.RouteType: {}, resource.ClusterType: {}}
	if err := ads.set(envoyNode, "empty", empty); err != nil {
		return nil, err
	}
	return launch.Start(context.Background(), launch.Options{
		Path: path, XDSAddr: ads.addr, NodeID: envoyNode, LogLevel: os.Getenv("CONFORMANCE_ENVOY_LOG_LEVEL"),
	})
}

// stop stops the package's Envoy, if it ran, and reports whether it ran
// until then.
func (p *packageEnvoy) stop() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.e == nil {
		return true
	}
	ok := true
	select {
	case <-p.e.Done():
		fmt.Fprintf(os.Stderr, "the package's Envoy exited before the tests ended: %v\n%s", p.e.Err(), p.e.Log())
		ok = false
	default:
	}
	if err := p.e.Close(); err != nil && ok {
		fmt.Fprintf(os.Stderr, "stop the package's Envoy: %v\n", err)
		ok = false
	}
	return ok
}

// envoyLogSince returns what e logged after the first n bytes of its log,
// and the log's length now.
func envoyLogSince(e *launch.Envoy, n int) (string, int) {
	l := e.Log()
	if n > len(l) {
		n = len(l)
	}
	return l[n:], len(l)
}

// waitEnvoy waits until Envoy has ACKed version of every type (the listener,
// its routes and both clusters) and the listener has finished warming, and
// returns the listener's address. A NACK fails t with Envoy's error.
func waitEnvoy(t *testing.T, e *launch.Envoy, version string) string {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		acked, nacks, changed := ads.state(envoyNode, version)
		if len(nacks) > 0 {
			t.Fatalf("Envoy NACKed version %s: %s", version, strings.Join(nacks, "; "))
		}
		if acked[resource.ListenerType] == version && acked[resource.RouteType] == version && acked[resource.ClusterType] == version {
			addr, err := listenerServing(e, "test")
			if err != nil {
				t.Fatal(err)
			}
			if addr != "" {
				return addr
			}
			changed = nil // poll the admin API
		}
		select {
		case <-changed:
		case <-time.After(20 * time.Millisecond):
		case <-deadline:
			t.Fatalf("Envoy did not take version %s: ACKed %v", version, acked)
		}
	}
}

// listenerServing returns the address of listener name once it has no
// warming version left (an ACKed listener warms until its routes and
// clusters are in), "" before.
func listenerServing(e *launch.Envoy, name string) (string, error) {
	b, err := e.Get("/config_dump?resource=dynamic_listeners")
	if err != nil {
		return "", err
	}
	var dump struct {
		Configs []struct {
			Name         string          `json:"name"`
			ActiveState  json.RawMessage `json:"active_state"`
			WarmingState json.RawMessage `json:"warming_state"`
		} `json:"configs"`
	}
	if err := json.Unmarshal(b, &dump); err != nil {
		return "", fmt.Errorf("admin /config_dump: %w", err)
	}
	for _, l := range dump.Configs {
		if l.Name == name && (l.WarmingState != nil || l.ActiveState == nil) {
			return "", nil
		}
	}
	ls, err := e.Listeners()
	if err != nil {
		return "", err
	}
	return ls[name], nil
}
