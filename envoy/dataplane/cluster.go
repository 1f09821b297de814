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
	"os"
	"slices"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials"
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
	return c.tls.sni == o.tls.sni && bytes.Equal(c.tls.caBytes, o.tls.caBytes) && slices.Equal(c.tls.sanDNS, o.tls.sanDNS) &&
		c.tls.certSecret == o.tls.certSecret && c.tls.caSecret == o.tls.caSecret
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

func newUpstream(c *clusterConfig, secrets map[string]Secret) (*upstream, error) {
	u := &upstream{cfg: c, inflight: make(chan struct{}, max(c.maxRequests, 1))}
	u.streams, u.resetStreams = context.WithCancelCause(context.Background())
	var tc *tls.Config
	if c.tls != nil {
		var err error
		if tc, err = c.tls.clientConfig(secrets); err != nil {
			return nil, fmt.Errorf("cluster %q: %w", c.name, err)
		}
	}
	if c.http2 {
		target := "passthrough:///" + c.addr
		if c.dns {
			target = "dns:///" + c.addr
		}
		creds := insecure.NewCredentials()
		if tc != nil {
			creds = credentials.NewTLS(tc)
		}
		conn, err := grpc.NewClient(target, grpc.WithTransportCredentials(creds),
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
	t.TLSClientConfig = tc
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

// Secret is a static secret the data plane holds itself, as Envoy's
// bootstrap static_resources.secrets: a certificate with its key
// (tls_certificate), or a CA (validation_context).
type Secret struct {
	CertFile, KeyFile string
	CAFile            string
}

// clientConfig is the TLS a cluster connects with, verified as Envoy
// verifies: the chain against the trusted CA, and the name only where the
// cluster lists subject alt names to match.
func (s *tlsSettings) clientConfig(secrets map[string]Secret) (*tls.Config, error) {
	caPEM := s.caBytes
	if s.caSecret != "" {
		sec, ok := secrets[s.caSecret]
		if !ok || sec.CAFile == "" {
			return nil, fmt.Errorf("validation context secret %q is not held by this data plane", s.caSecret)
		}
		b, err := os.ReadFile(sec.CAFile)
		if err != nil {
			return nil, fmt.Errorf("secret %q: %w", s.caSecret, err)
		}
		caPEM = b
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, errors.New("no CA certificate to verify the upstream with")
	}
	tc := &tls.Config{ServerName: s.sni, MinVersion: tls.VersionTLS12, NextProtos: []string{"h2", "http/1.1"},
		// Verified below, as Envoy verifies: no host name check unless the
		// cluster lists subject alt names.
		InsecureSkipVerify: true, //nolint:gosec // VerifyConnection verifies the chain and the names
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("the upstream sent no certificate")
			}
			inter := x509.NewCertPool()
			for _, c := range cs.PeerCertificates[1:] {
				inter.AddCert(c)
			}
			leaf := cs.PeerCertificates[0]
			if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter}); err != nil {
				return fmt.Errorf("upstream certificate: %w", err)
			}
			if len(s.sanDNS) == 0 {
				return nil
			}
			for _, san := range s.sanDNS {
				if leaf.VerifyHostname(san) == nil {
					return nil
				}
			}
			return fmt.Errorf("upstream certificate matches none of %v", s.sanDNS)
		}}
	if s.certSecret != "" {
		sec, ok := secrets[s.certSecret]
		if !ok || sec.CertFile == "" || sec.KeyFile == "" {
			return nil, fmt.Errorf("certificate secret %q is not held by this data plane", s.certSecret)
		}
		cert, err := tls.LoadX509KeyPair(sec.CertFile, sec.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("secret %q: %w", s.certSecret, err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}
