package dataplane

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"
)

func (c *clusterConfig) equal(o *clusterConfig) bool {
	if c.name != o.name || c.addr != o.addr || c.dns != o.dns || c.http2 != o.http2 ||
		c.connectTimeout != o.connectTimeout || c.maxRequests != o.maxRequests || (c.tls == nil) != (o.tls == nil) {
		return false
	}
	if c.tls == nil {
		return true
	}
	return c.tls.sni == o.tls.sni && bytes.Equal(c.tls.caBytes, o.tls.caBytes) && slices.Equal(c.tls.sanDNS, o.tls.sanDNS)
}

// upstream is a cluster at run time: an HTTP transport (HTTP/1.1 clusters)
// or a gRPC connection (HTTP/2 clusters), and the circuit breaker that caps
// its requests in flight (max_requests).
type upstream struct {
	cfg       *clusterConfig
	transport *http.Transport
	grpc      *grpc.ClientConn
	inflight  chan struct{}
	// streams is the context of every gRPC call on the cluster;
	// resetStreams ends them all when the cluster is replaced.
	streams      context.Context
	resetStreams context.CancelCauseFunc
}

var (
	errOverflow        = errors.New("circuit breaker open: max_requests reached")
	errClusterReplaced = errors.New("the cluster was replaced")
)

func newUpstream(c *clusterConfig) (*upstream, error) {
	u := &upstream{cfg: c, inflight: make(chan struct{}, max(c.maxRequests, 1))}
	u.streams, u.resetStreams = context.WithCancelCause(context.Background())
	if c.http2 {
		target := "passthrough:///" + c.addr
		if c.dns {
			target = "dns:///" + c.addr
		}
		conn, err := grpc.NewClient(target, grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithConnectParams(grpc.ConnectParams{MinConnectTimeout: c.connectTimeout, Backoff: backoff.DefaultConfig}))
		if err != nil {
			return nil, fmt.Errorf("cluster %q: %w", c.name, err)
		}
		u.grpc = conn
		return u, nil
	}
	dialer := &net.Dialer{Timeout: c.connectTimeout, KeepAlive: 30 * time.Second}
	t := &http.Transport{
		// Every request goes to the cluster's endpoint, whatever the URL says.
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return dialer.DialContext(ctx, network, c.addr)
		},
		MaxIdleConnsPerHost:   256,
		IdleConnTimeout:       time.Hour,
		DisableCompression:    true,
		ResponseHeaderTimeout: 0,
	}
	if c.tls != nil {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(c.tls.caBytes) {
			return nil, fmt.Errorf("cluster %q: no certificates in %s", c.name, c.tls.caFile)
		}
		t.TLSClientConfig = &tls.Config{
			ServerName: c.tls.sni,
			RootCAs:    pool,
			MinVersion: tls.VersionTLS12,
			VerifyConnection: func(cs tls.ConnectionState) error {
				if len(c.tls.sanDNS) == 0 || len(cs.PeerCertificates) == 0 {
					return nil
				}
				for _, san := range c.tls.sanDNS {
					if cs.PeerCertificates[0].VerifyHostname(san) == nil {
						return nil
					}
				}
				return fmt.Errorf("upstream certificate matches none of %v", c.tls.sanDNS)
			},
		}
	}
	u.transport = t
	return u, nil
}

// acquire takes a slot of the circuit breaker without waiting, as Envoy's
// max_requests does; release gives it back.
func (u *upstream) acquire() error {
	select {
	case u.inflight <- struct{}{}:
		return nil
	default:
		return errOverflow
	}
}

func (u *upstream) release() { <-u.inflight }

// retire closes the cluster once no request holds it any more.
func (u *upstream) retire() {
	for len(u.inflight) > 0 {
		time.Sleep(time.Second)
	}
	u.close()
}

func (u *upstream) close() {
	u.resetStreams(errClusterReplaced)
	if u.transport != nil {
		u.transport.CloseIdleConnections()
	}
	if u.grpc != nil {
		_ = u.grpc.Close()
	}
}
