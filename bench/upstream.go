package bench

import (
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/custos-dev/custos/examples/demo"
)

// Upstream is the demo upstream on a loopback port. Unlike stack.Upstream it
// keeps nothing of the requests it serves: a benchmark sends hundreds of
// thousands, and keeping them would grow the heap, and the collector's work,
// from one target to the next.
type Upstream struct {
	// URL is the server's base URL (http://127.0.0.1:PORT).
	URL string
	// Addr is the server's address (127.0.0.1:PORT).
	Addr string

	srv *http.Server
}

// StartUpstream serves the demo API on a loopback port until Close.
func StartUpstream() (*Upstream, error) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("demo upstream: %w", err)
	}
	u := &Upstream{
		URL:  "http://" + lis.Addr().String(),
		Addr: lis.Addr().String(),
		srv:  &http.Server{Handler: demo.Handler(), ReadHeaderTimeout: 10 * time.Second},
	}
	go func() { _ = u.srv.Serve(lis) }()
	return u, nil
}

// Close stops the server and closes its connections.
func (u *Upstream) Close() { _ = u.srv.Close() }
