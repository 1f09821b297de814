package stack

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/custos-dev/custos/config"
)

// Upstream is a real HTTP server on loopback that remembers every request
// that reached it, so a test can tell what crossed the data plane.
type Upstream struct {
	// URL is the server's base URL (http://127.0.0.1:PORT).
	URL string

	srv  *http.Server
	mu   sync.Mutex
	reqs []*http.Request
	// arrived is closed and replaced at each request, for WaitCount.
	arrived chan struct{}
}

// StartUpstream serves h on a loopback port.
func StartUpstream(h http.Handler) (*Upstream, error) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("upstream: %w", err)
	}
	u := &Upstream{URL: "http://" + lis.Addr().String(), arrived: make(chan struct{})}
	u.srv = &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.mu.Lock()
		u.reqs = append(u.reqs, r.Clone(context.Background()))
		close(u.arrived)
		u.arrived = make(chan struct{})
		u.mu.Unlock()
		h.ServeHTTP(w, r)
	})}
	go func() { _ = u.srv.Serve(lis) }()
	return u, nil
}

// Count is how many requests reached the upstream.
func (u *Upstream) Count() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.reqs)
}

// WaitCount returns once n requests have reached the upstream, or with
// ctx's error.
func (u *Upstream) WaitCount(ctx context.Context, n int) error {
	for {
		u.mu.Lock()
		got, arrived := len(u.reqs), u.arrived
		u.mu.Unlock()
		if got >= n {
			return nil
		}
		select {
		case <-arrived:
		case <-ctx.Done():
			return fmt.Errorf("%d of %d requests reached the upstream: %w", got, n, ctx.Err())
		}
	}
}

// Last is the last request that reached the upstream, false if none did.
func (u *Upstream) Last() (*http.Request, bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.reqs) == 0 {
		return nil, false
	}
	return u.reqs[len(u.reqs)-1], true
}

// Close stops the server and its connections.
func (u *Upstream) Close() { _ = u.srv.Close() }

// CustomersConfig is the configuration the end-to-end tests and benchmarks
// run: every listener on an ephemeral loopback port, the connection
// "customers" (hosts customers.internal) to upstreamURL, then extra (more
// YAML list items under connections:, and further top-level blocks).
func CustomersConfig(upstreamURL, extra string) (*config.Config, error) {
	return config.Parse([]byte(LoopbackListen + fmt.Sprintf(`connections:
  - name: customers
    upstream: %s
    hosts: [customers.internal]
%s`, upstreamURL, extra)))
}
