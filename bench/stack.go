package bench

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/custos-dev/custos/stack"
)

// CustomerID is the demo customer every benchmark request asks for.
const CustomerID = 7

// Stack is the control plane and a data plane in front of the demo
// upstream, running on loopback with ephemeral ports, as the end-to-end
// tests start them.
type Stack struct {
	*stack.Stack
	// DirectURL is GET /{id} on the demo upstream itself.
	DirectURL string
	// DataPlaneURL is the same request through the data plane: the
	// connection "customers" routes /customers/ to the upstream, through
	// ext_authz and ext_proc.
	DataPlaneURL string
	// UpstreamURL and DataPlaneAddr are the bases the URLs above are built on.
	UpstreamURL, DataPlaneAddr string

	upstream *Upstream // closed by Close; nil when the caller runs it
	state    string    // removed by Close
}

// StartStack starts the stack on the Go data plane; see StartStackOn.
func StartStack(ctx context.Context) (*Stack, error) { return StartStackOn(ctx, stack.Go) }

// StartStackOn starts a demo upstream of its own and the stack on data plane
// dp in front of it; see StartStackFor. Close stops the upstream too.
func StartStackOn(ctx context.Context, dp stack.DataPlane) (*Stack, error) {
	up, err := StartUpstream()
	if err != nil {
		return nil, err
	}
	s, err := StartStackFor(ctx, dp, up.URL)
	if err != nil {
		up.Close()
		return nil, err
	}
	s.upstream = up
	return s, nil
}

// StartStackFor starts the control plane and data plane dp in front of the
// demo upstream at upstreamURL, which the caller runs, with logs discarded,
// and returns once the data plane serves its first complete configuration.
// ctx bounds the start-up and the stack's life; Close stops it either way.
func StartStackFor(ctx context.Context, dp stack.DataPlane, upstreamURL string) (*Stack, error) {
	cfg, err := stack.CustomersConfig(upstreamURL, "")
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	// Each stack keeps its state (the approval store) in a directory of
	// its own: two stacks side by side, and nothing left behind.
	state, err := os.MkdirTemp("", "custos-bench-")
	if err != nil {
		return nil, err
	}
	cfg.Audit.Dir = filepath.Join(state, "audit")
	st, err := stack.Start(ctx, stack.Options{Config: cfg, NodeID: "bench", DataPlane: dp})
	if err != nil {
		os.RemoveAll(state)
		return nil, err
	}
	s := &Stack{Stack: st, UpstreamURL: upstreamURL, DataPlaneAddr: st.Addr, state: state}
	s.DirectURL = fmt.Sprintf("%s/%d", upstreamURL, CustomerID)
	s.DataPlaneURL = fmt.Sprintf("http://%s/customers/%d", s.DataPlaneAddr, CustomerID)
	return s, nil
}

// Close stops the data plane, then the control plane, then the upstream if
// the stack started it. Close the clients' idle connections first for a
// quick shutdown.
func (s *Stack) Close() {
	s.Stack.Close()
	if s.state != "" {
		os.RemoveAll(s.state)
	}
	if s.upstream != nil {
		s.upstream.Close()
	}
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
