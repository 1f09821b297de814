// Package dataplane is a Go stand-in for Envoy, for `custos dev`, the
// end-to-end tests and the benchmarks, where no Envoy binary can run. It is
// an ADS client that serves the one HTTP listener it is given and calls
// ext_authz and ext_proc as Envoy does, following the rules in
// shared/ENVOY.md; docs/dataplane.md maps each rule to its test.
//
// It knows nothing about Custos' policy: it speaks only Envoy's protocols, so
// that what passes through it passes through Envoy. It NACKs any part of
// Envoy's API that Custos' xDS does not emit rather than guess.
package dataplane

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
)

// Filter and extension names the data plane understands.
const (
	extAuthzName = "envoy.filters.http.ext_authz"
	extProcName  = "envoy.filters.http.ext_proc"
	routerName   = "envoy.filters.http.router"
)

// Options configure a data plane.
type Options struct {
	// XDS is the ADS server's host:port.
	XDS string
	// NodeID names this node to the control plane.
	NodeID string
	// Logger receives xDS and listener events (never request contents).
	Logger *slog.Logger
	// Secrets are the static secrets clusters may name (Envoy's
	// static_resources.secrets), by name.
	Secrets map[string]Secret
	// XDSTLS, when set, reaches the ADS server over TLS with this client
	// certificate and CA (as the bootstrap's xds cluster does).
	XDSTLS *Secret
	// MaxDownstreamConnections caps open downstream connections: one over
	// the cap is closed as soon as it is accepted, as Envoy's overload
	// manager (global_downstream_max_connections) does. 0 means no cap.
	MaxDownstreamConnections int
}

// DataPlane is one running data plane.
type DataPlane struct {
	opts    Options
	log     *slog.Logger
	xdsConn *grpc.ClientConn

	active atomic.Pointer[active]
	nacks  atomic.Int64

	mu        sync.Mutex
	lastNACK  string
	upstreams map[string]*upstream
	server    *http.Server
	lis       net.Listener
	lisAddr   string // configured address of the bound listener
	// pending is a socket bound for a listener accepted but not yet serving.
	pending     net.Listener
	pendingAddr string
	ready       chan struct{}
	readyOnce   sync.Once
}

// active is the configuration requests are served with: a listener, its
// route table and the clusters, swapped atomically on each accepted update.
type active struct {
	listener  *listenerConfig
	routes    *routeTable
	upstreams map[string]*upstream
}

// New connects (lazily) to the ADS server; Run starts serving.
func New(opts Options) (*DataPlane, error) {
	if opts.NodeID == "" {
		opts.NodeID = "custos-dataplane"
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	creds := insecure.NewCredentials()
	if t := opts.XDSTLS; t != nil {
		tc, err := (&tlsSettings{certSecret: "xds", caSecret: "xds"}).clientConfig(map[string]Secret{"xds": *t})
		if err != nil {
			return nil, fmt.Errorf("xds client %s: %w", opts.XDS, err)
		}
		creds = credentials.NewTLS(tc)
	}
	conn, err := grpc.NewClient(opts.XDS, grpc.WithTransportCredentials(creds))
	if err != nil {
		return nil, fmt.Errorf("xds client %s: %w", opts.XDS, err)
	}
	return &DataPlane{
		opts:      opts,
		log:       opts.Logger,
		xdsConn:   conn,
		upstreams: map[string]*upstream{},
		ready:     make(chan struct{}),
	}, nil
}

// Run follows the control plane and serves until ctx ends, then shuts the
// listener down gracefully.
func (d *DataPlane) Run(ctx context.Context) error {
	defer d.xdsConn.Close()
	go d.runADS(ctx)
	<-ctx.Done()
	d.mu.Lock()
	srv := d.server
	ups := d.upstreams
	d.mu.Unlock()
	if srv != nil {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}
	d.mu.Lock()
	if d.pending != nil {
		d.pending.Close()
	}
	d.mu.Unlock()
	for _, u := range ups {
		u.close()
	}
	return nil
}

// Ready is closed once the listener serves with a complete configuration.
func (d *DataPlane) Ready() <-chan struct{} { return d.ready }

// Addr is the bound listener address ("" before the first listener).
func (d *DataPlane) Addr() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.lis == nil {
		return ""
	}
	return d.lis.Addr().String()
}

// NACKs counts the configurations this data plane refused, and LastNACK is
// the error it sent with the last one.
func (d *DataPlane) NACKs() int64 { return d.nacks.Load() }

// LastNACK is the error sent with the last NACK, "" if none.
func (d *DataPlane) LastNACK() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.lastNACK
}

func (d *DataPlane) setLastNACK(s string) {
	d.mu.Lock()
	d.lastNACK = s
	d.mu.Unlock()
}

// activate builds the serving configuration from the accepted state once it
// is complete (Envoy's listener warming: a listener serves only once its
// routes have arrived).
func (d *DataPlane) activate(st *adsState) {
	if st.listener == nil {
		return
	}
	rt := st.routes[st.listener.hcm.routeConfigName]
	if rt == nil {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	next := map[string]*upstream{}
	for name, cc := range st.clusters {
		if old, ok := d.upstreams[name]; ok && old.cfg.equal(cc) {
			next[name] = old
			continue
		}
		u, err := newUpstream(cc, d.opts.Secrets)
		if err != nil {
			d.log.Error("cluster", "name", name, "error", err)
			continue
		}
		next[name] = u
	}
	for name, old := range d.upstreams {
		if next[name] != old {
			// Upstream requests in flight finish on the old cluster, as
			// Envoy drains its connection pools; its gRPC side streams
			// (held ext_proc streams, ext_authz checks) are reset, as
			// Envoy's async client goes with the cluster.
			old.resetStreams(errClusterReplaced)
			go old.retire()
		}
	}
	d.upstreams = next
	d.active.Store(&active{listener: st.listener, routes: rt, upstreams: next})
	if err := d.bindLocked(st.listener.addr); err != nil {
		d.log.Error("listener", "address", st.listener.addr, "error", err)
		return
	}
	d.readyOnce.Do(func() { close(d.ready) })
}

// prepareListener binds addr ahead of serving, so that an address that
// cannot be bound is NACKed.
func (d *DataPlane) prepareListener(addr string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if (d.lis != nil && d.lisAddr == addr) || (d.pending != nil && d.pendingAddr == addr) {
		return nil
	}
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	if d.pending != nil {
		d.pending.Close()
	}
	d.pending, d.pendingAddr = lis, addr
	return nil
}

// bindLocked serves the listener on addr, moving it if the address changed.
// Every connection goes through the codec (codec.go), which also runs the
// timers Envoy's codec events drive (request_headers_timeout, the idle
// timeout), reading the active configuration as it goes.
func (d *DataPlane) bindLocked(addr string) error {
	if d.lis != nil && d.lisAddr == addr {
		return nil
	}
	var lis net.Listener
	if d.pending != nil && d.pendingAddr == addr {
		lis, d.pending = d.pending, nil
	} else {
		var err error
		if lis, err = net.Listen("tcp", addr); err != nil {
			return err
		}
	}
	if d.opts.MaxDownstreamConnections > 0 {
		lis = &cappedListener{Listener: lis, slots: make(chan struct{}, d.opts.MaxDownstreamConnections)}
	}
	lis = &tlsListener{Listener: lis, dp: d}
	lis = &codecListener{Listener: lis, dp: d}
	srv := &http.Server{
		Handler: &connManager{dp: d},
		// net/http sees only the codec's placeholder heads.
		MaxHeaderBytes:               64 << 10,
		DisableGeneralOptionsHandler: true,
		ConnContext:                  connContext,
		ConnState: func(c net.Conn, s http.ConnState) {
			if cc, ok := c.(*codecConn); ok {
				cc.connState(s)
			}
		},
		ErrorLog: slog.NewLogLogger(d.log.Handler(), slog.LevelDebug),
	}
	go func() {
		if err := srv.Serve(lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			d.log.Error("listener stopped", "error", err)
		}
	}()
	if old := d.server; old != nil {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			_ = old.Shutdown(ctx)
		}()
	}
	d.server, d.lis, d.lisAddr = srv, lis, addr
	d.log.Info("listener serving", "address", lis.Addr().String())
	return nil
}

// cappedListener closes connections accepted over its cap at once, as
// Envoy's overload manager does over global_downstream_max_connections.
type cappedListener struct {
	net.Listener
	slots chan struct{}
}

func (l *cappedListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		select {
		case l.slots <- struct{}{}:
			return &cappedConn{Conn: c, release: func() { <-l.slots }}, nil
		default:
			_ = c.Close()
		}
	}
}

type cappedConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *cappedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

// tlsListener serves TLS on each accepted connection when the active
// listener's filter chain says so (read per connection: a changed
// certificate applies to new connections, as in Envoy).
type tlsListener struct {
	net.Listener
	dp *DataPlane
}

func (l *tlsListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	if a := l.dp.active.Load(); a != nil && a.listener != nil && a.listener.tls != nil {
		return tls.Server(c, a.listener.tls), nil
	}
	return c, nil
}

// peerPrincipal is what Envoy's source.principal holds for a connection:
// the first URI SAN of the verified client certificate, else its subject;
// "" without one.
func peerPrincipal(c net.Conn) string {
	tc, ok := c.(*tls.Conn)
	if !ok {
		return ""
	}
	certs := tc.ConnectionState().PeerCertificates
	if len(certs) == 0 || len(tc.ConnectionState().VerifiedChains) == 0 {
		return ""
	}
	if len(certs[0].URIs) > 0 {
		return certs[0].URIs[0].String()
	}
	return certs[0].Subject.String()
}
