package bench

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/custos-dev/custos/config"
	"github.com/custos-dev/custos/controlplane"
	"github.com/custos-dev/custos/envoy/dataplane"
	"github.com/custos-dev/custos/examples/demo"
	"github.com/custos-dev/custos/stack"
)

// CustomerID is the demo customer every benchmark request asks for.
const CustomerID = 7

// Stack is the demo upstream, the control plane and the data plane, running
// on loopback with ephemeral ports, as the end-to-end tests start them.
type Stack struct {
	// DirectURL is GET /{id} on the demo upstream itself.
	DirectURL string
	// DataPlaneURL is the same request through the data plane: the
	// connection "customers" routes /customers/ to the upstream, through
	// ext_authz and ext_proc.
	DataPlaneURL string
	// UpstreamURL and DataPlaneAddr are the bases the URLs above are built on.
	UpstreamURL, DataPlaneAddr string

	CP *controlplane.ControlPlane
	DP *dataplane.DataPlane

	stack    *stack.Stack
	upstream *httptest.Server
}

// stackConfig is `custos dev`'s configuration with every port ephemeral and
// one connection, "customers", to the demo upstream.
func stackConfig(upstreamURL string) string {
	return stack.LoopbackListen + fmt.Sprintf(`connections:
  - name: customers
    upstream: %s
    hosts: [customers.internal]
`, upstreamURL)
}

// StartStack starts the stack with logs discarded and returns once the data
// plane serves its first complete configuration. ctx bounds the start-up
// and the stack's life; Close stops it either way.
func StartStack(ctx context.Context) (*Stack, error) {
	srv := httptest.NewServer(demo.Handler())
	cfg, err := config.Parse([]byte(stackConfig(srv.URL)))
	if err != nil {
		srv.Close()
		return nil, fmt.Errorf("config: %w", err)
	}
	st, err := stack.Start(ctx, stack.Options{Config: cfg, NodeID: "bench"})
	if err != nil {
		srv.Close()
		return nil, err
	}
	s := &Stack{CP: st.CP, DP: st.DP, stack: st, upstream: srv}
	s.UpstreamURL = srv.URL
	s.DataPlaneAddr = st.Addr
	s.DirectURL = fmt.Sprintf("%s/%d", srv.URL, CustomerID)
	s.DataPlaneURL = fmt.Sprintf("http://%s/customers/%d", s.DataPlaneAddr, CustomerID)
	return s, nil
}

// Close stops the data plane, then the control plane, then the upstream.
// Close the clients' idle connections first for a quick shutdown.
func (s *Stack) Close() {
	s.stack.Close()
	s.upstream.Close()
}

// NewClient returns an HTTP client for loopback load at the given
// concurrency: no proxy, no compression, and enough idle connections per
// host that every worker keeps its own connection alive.
func NewClient(concurrency int) *http.Client {
	return &http.Client{Transport: &http.Transport{
		Proxy:               nil,
		MaxIdleConns:        0, // no global limit
		MaxIdleConnsPerHost: max(concurrency, 1) * 2,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}}
}
