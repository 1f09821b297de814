package dataplane_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/config/accesslog/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	procfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	upstreamhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/genproto/googleapis/rpc/code"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/custos-dev/custos/envoy/dataplane"
	"github.com/custos-dev/custos/envoy/launch"
)

// scriptedAuthz is an ext_authz server whose answer each test scripts; it
// allows by default and keeps every CheckRequest.
type scriptedAuthz struct {
	authv3.UnimplementedAuthorizationServer
	mu    sync.Mutex
	reqs  []*authv3.CheckRequest
	check func(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error)
}

func (s *scriptedAuthz) Check(ctx context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	s.mu.Lock()
	s.reqs = append(s.reqs, req)
	f := s.check
	s.mu.Unlock()
	if f != nil {
		return f(ctx, req)
	}
	return allow(), nil
}

func (s *scriptedAuthz) last(t *testing.T) *authv3.CheckRequest {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.reqs) == 0 {
		t.Fatal("ext_authz was not called")
	}
	return s.reqs[len(s.reqs)-1]
}

func (s *scriptedAuthz) calls() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.reqs)
}

func allow() *authv3.CheckResponse {
	return &authv3.CheckResponse{Status: &rpcstatus.Status{Code: int32(code.Code_OK)},
		HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{}}}
}

// scriptedProc is an ext_proc server: handle runs each stream (default:
// CONTINUE everything). It keeps the kinds of the messages each stream got.
type scriptedProc struct {
	extprocv3.UnimplementedExternalProcessorServer
	mu      sync.Mutex
	streams [][]*extprocv3.ProcessingRequest
	handle  func(s *procConn) error
	ended   chan error
}

// procConn is one ext_proc stream as the scripted server sees it.
type procConn struct {
	extprocv3.ExternalProcessor_ProcessServer
	p   *scriptedProc
	idx int
}

// recv receives and records the next message; io.EOF when Envoy closed.
func (c *procConn) recv() (*extprocv3.ProcessingRequest, error) {
	m, err := c.Recv()
	if err == nil {
		c.p.mu.Lock()
		c.p.streams[c.idx] = append(c.p.streams[c.idx], m)
		c.p.mu.Unlock()
	}
	return m, err
}

func (s *scriptedProc) Process(stream extprocv3.ExternalProcessor_ProcessServer) error {
	s.mu.Lock()
	s.streams = append(s.streams, nil)
	c := &procConn{ExternalProcessor_ProcessServer: stream, p: s, idx: len(s.streams) - 1}
	h := s.handle
	s.mu.Unlock()
	if h == nil {
		h = continueAll
	}
	err := h(c)
	if s.ended != nil {
		s.ended <- err
	}
	return err
}

// kinds is the kinds of the messages stream i received.
func (s *scriptedProc) kinds(i int) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	if i < len(s.streams) {
		for _, m := range s.streams[i] {
			out = append(out, kindOf(m))
		}
	}
	return out
}

func (s *scriptedProc) messages(i int) []*extprocv3.ProcessingRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	if i >= len(s.streams) {
		return nil
	}
	return append([]*extprocv3.ProcessingRequest(nil), s.streams[i]...)
}

// setHandle replaces the handler of the streams that start from now on.
func (s *scriptedProc) setHandle(f func(c *procConn) error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.handle = f
}

func (s *scriptedProc) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.streams)
}

func kindOf(m *extprocv3.ProcessingRequest) string {
	switch m.GetRequest().(type) {
	case *extprocv3.ProcessingRequest_RequestHeaders:
		return "request_headers"
	case *extprocv3.ProcessingRequest_RequestBody:
		return "request_body"
	case *extprocv3.ProcessingRequest_RequestTrailers:
		return "request_trailers"
	case *extprocv3.ProcessingRequest_ResponseHeaders:
		return "response_headers"
	case *extprocv3.ProcessingRequest_ResponseBody:
		return "response_body"
	case *extprocv3.ProcessingRequest_ResponseTrailers:
		return "response_trailers"
	}
	return "?"
}

// continueWith is the CONTINUE reply of the kind m expects, with common.
func continueWith(m *extprocv3.ProcessingRequest, common *extprocv3.CommonResponse) *extprocv3.ProcessingResponse {
	if common == nil {
		common = &extprocv3.CommonResponse{}
	}
	switch m.GetRequest().(type) {
	case *extprocv3.ProcessingRequest_RequestHeaders:
		return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestHeaders{RequestHeaders: &extprocv3.HeadersResponse{Response: common}}}
	case *extprocv3.ProcessingRequest_RequestBody:
		return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestBody{RequestBody: &extprocv3.BodyResponse{Response: common}}}
	case *extprocv3.ProcessingRequest_RequestTrailers:
		return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestTrailers{RequestTrailers: &extprocv3.TrailersResponse{HeaderMutation: common.GetHeaderMutation()}}}
	case *extprocv3.ProcessingRequest_ResponseHeaders:
		return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseHeaders{ResponseHeaders: &extprocv3.HeadersResponse{Response: common}}}
	case *extprocv3.ProcessingRequest_ResponseBody:
		return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseBody{ResponseBody: &extprocv3.BodyResponse{Response: common}}}
	case *extprocv3.ProcessingRequest_ResponseTrailers:
		return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseTrailers{ResponseTrailers: &extprocv3.TrailersResponse{HeaderMutation: common.GetHeaderMutation()}}}
	}
	return nil
}

// continueAll answers every message with CONTINUE until Envoy ends the stream.
func continueAll(c *procConn) error {
	return replyEach(c, func(m *extprocv3.ProcessingRequest) *extprocv3.ProcessingResponse {
		return continueWith(m, nil)
	})
}

// replyEach answers each message with f's reply (nil: no reply) until EOF.
func replyEach(c *procConn, f func(*extprocv3.ProcessingRequest) *extprocv3.ProcessingResponse) error {
	for {
		m, err := c.recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return nil // canceled by Envoy: a normal end
		}
		if r := f(m); r != nil {
			if err := c.Send(r); err != nil {
				return nil
			}
		}
	}
}

// upstreamSeen is what the upstream received.
type upstreamSeen struct {
	// length is the request's content-length, -1 when it came chunked.
	length  int64
	method  string
	uri     string
	host    string
	header  http.Header
	body    string
	trailer http.Header
}

type upstream struct {
	mu      sync.Mutex
	seen    []upstreamSeen
	handler http.HandlerFunc
}

func (u *upstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	u.mu.Lock()
	u.seen = append(u.seen, upstreamSeen{r.ContentLength, r.Method, r.RequestURI, r.Host, r.Header.Clone(), string(b), r.Trailer.Clone()})
	h := u.handler
	u.mu.Unlock()
	if h != nil {
		h(w, r)
		return
	}
	w.Header().Set("content-type", "text/plain")
	w.Header().Set("x-upstream", "yes")
	io.WriteString(w, "upstream says hello")
}

func (u *upstream) count() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.seen)
}

func (u *upstream) last(t *testing.T) upstreamSeen {
	t.Helper()
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.seen) == 0 {
		t.Fatal("the upstream received nothing")
	}
	return u.seen[len(u.seen)-1]
}

// setup is an Envoy configuration for one test, built from real Envoy
// messages and served over ADS.
type setup struct {
	authz       *extauthzv3.ExtAuthz
	proc        *procfilterv3.ExternalProcessor
	hcm         func(*hcmv3.HttpConnectionManager)
	route       func(*routev3.Route)
	routes      func(*routev3.RouteConfiguration)
	grpcCluster func(*clusterv3.Cluster)
	// upstreamCluster changes the upstream's cluster.
	upstreamCluster func(*clusterv3.Cluster)
	// router is the router filter's configuration (empty when nil).
	router   *routerv3.Router
	upstream http.HandlerFunc
	// listenPort is the listener's port (0: any free one).
	listenPort uint32
	// details, when the connection manager has no local_reply_config,
	// adds one that shows each local reply's details and flags in the
	// headers x-details and x-flags.
	details bool
}

type harness struct {
	t *testing.T
	// plane is the data plane this scenario runs through, node its id on
	// the package's ADS server.
	plane plane
	node  string
	// grpcAddr and upstreamAddr are the scripted servers' addresses.
	grpcAddr, upstreamAddr string
	url                    string
	// client sends the scenario's requests on connections of its own, so
	// that none is reused by a later scenario (real Envoy keeps its
	// listener's port across scenarios).
	client   *http.Client
	envoy    *launch.Envoy
	authz    *scriptedAuthz
	proc     *scriptedProc
	upstream *upstream
	grpc     *grpc.Server

	dumpMu sync.Mutex
	dump   []string // CONFORMANCE_DUMP
}

const (
	grpcClusterName     = "grpc"
	upstreamClusterName = "upstream"
)

func grpcService(timeout time.Duration) *corev3.GrpcService {
	return &corev3.GrpcService{
		TargetSpecifier: &corev3.GrpcService_EnvoyGrpc_{EnvoyGrpc: &corev3.GrpcService_EnvoyGrpc{ClusterName: grpcClusterName}},
		Timeout:         durationpb.New(timeout),
	}
}

// authzConfig is an ext_authz filter config calling the scripted server.
func authzConfig() *extauthzv3.ExtAuthz {
	return &extauthzv3.ExtAuthz{
		Services:            &extauthzv3.ExtAuthz_GrpcService{GrpcService: grpcService(time.Second)},
		TransportApiVersion: corev3.ApiVersion_V3,
	}
}

// procConfig is an ext_proc filter config calling the scripted server, with
// the given mode (headers SEND, bodies NONE by default).
func procConfig(mode *procfilterv3.ProcessingMode) *procfilterv3.ExternalProcessor {
	if mode == nil {
		mode = &procfilterv3.ProcessingMode{}
	}
	return &procfilterv3.ExternalProcessor{
		GrpcService:    grpcService(time.Second),
		ProcessingMode: mode,
		MessageTimeout: durationpb.New(time.Second),
	}
}

func mustAny(t *testing.T, m proto.Message) *anypb.Any {
	t.Helper()
	a, err := anypb.New(m)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func staticCluster(t *testing.T, name, addr string, http2 bool) *clusterv3.Cluster {
	t.Helper()
	host, port, _ := net.SplitHostPort(addr)
	p, _ := strconv.Atoi(port)
	c := &clusterv3.Cluster{
		Name:                 name,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC},
		ConnectTimeout:       durationpb.New(time.Second),
		LoadAssignment: &endpointv3.ClusterLoadAssignment{ClusterName: name, Endpoints: []*endpointv3.LocalityLbEndpoints{{
			LbEndpoints: []*endpointv3.LbEndpoint{{HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
				Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
					Address: host, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: uint32(p)}}}},
			}}}},
		}}},
	}
	if http2 {
		c.TypedExtensionProtocolOptions = map[string]*anypb.Any{
			"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": mustAny(t, &upstreamhttpv3.HttpProtocolOptions{
				UpstreamProtocolOptions: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig_{ExplicitHttpConfig: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig{
					ProtocolConfig: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig_Http2ProtocolOptions{Http2ProtocolOptions: &corev3.Http2ProtocolOptions{}},
				}},
			}),
		}
	}
	return c
}

// resources builds the setup's listener, route configuration and clusters.
func resources(t *testing.T, s setup, grpcAddr, upstreamAddr string) map[resource.Type][]types.Resource {
	t.Helper()
	var filters []*hcmv3.HttpFilter
	if s.authz != nil {
		filters = append(filters, &hcmv3.HttpFilter{Name: "envoy.filters.http.ext_authz", ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(t, s.authz)}})
	}
	if s.proc != nil {
		filters = append(filters, &hcmv3.HttpFilter{Name: "envoy.filters.http.ext_proc", ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(t, s.proc)}})
	}
	router := s.router
	if router == nil {
		router = &routerv3.Router{}
	}
	filters = append(filters, &hcmv3.HttpFilter{Name: "envoy.filters.http.router", ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(t, router)}})
	hcm := &hcmv3.HttpConnectionManager{
		StatPrefix: "test",
		RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{
			ConfigSource:    &corev3.ConfigSource{ResourceApiVersion: corev3.ApiVersion_V3, ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}}},
			RouteConfigName: "routes",
		}},
		HttpFilters: filters,
	}
	if s.hcm != nil {
		s.hcm(hcm)
	}
	if (s.details || dumpDir != "") && hcm.LocalReplyConfig == nil {
		hcm.LocalReplyConfig = detailsReply()
	}
	lis := &listenerv3.Listener{
		Name: "test",
		Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
			Address: "127.0.0.1", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: s.listenPort}}}},
		FilterChains: []*listenerv3.FilterChain{{Filters: []*listenerv3.Filter{{
			Name: "envoy.filters.network.http_connection_manager", ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(t, hcm)},
		}}}},
	}
	rt := &routev3.Route{
		Name:  "default",
		Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
		Action: &routev3.Route_Route{Route: &routev3.RouteAction{
			ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: upstreamClusterName},
		}},
		TypedPerFilterConfig: map[string]*anypb.Any{
			"envoy.filters.http.ext_authz": mustAny(t, &extauthzv3.ExtAuthzPerRoute{Override: &extauthzv3.ExtAuthzPerRoute_CheckSettings{
				CheckSettings: &extauthzv3.CheckSettings{ContextExtensions: map[string]string{"connection": "test"}},
			}}),
		},
	}
	if s.route != nil {
		s.route(rt)
	}
	rc := &routev3.RouteConfiguration{Name: "routes", VirtualHosts: []*routev3.VirtualHost{{
		Name: "all", Domains: []string{"*"}, Routes: []*routev3.Route{rt},
	}}}
	if s.routes != nil {
		s.routes(rc)
	}
	gc := staticCluster(t, grpcClusterName, grpcAddr, true)
	if s.grpcCluster != nil {
		s.grpcCluster(gc)
	}
	uc := staticCluster(t, upstreamClusterName, upstreamAddr, false)
	if s.upstreamCluster != nil {
		s.upstreamCluster(uc)
	}
	return map[resource.Type][]types.Resource{
		resource.ListenerType: {lis},
		resource.RouteType:    {rc},
		resource.ClusterType:  {gc, uc},
	}
}

// start runs the scripted servers, an upstream and the setup's resources on
// the package's ADS server, and the data plane p following them: a Go data
// plane of the scenario's own, or the package's Envoy once it has applied
// them.
func (p plane) start(t *testing.T, s setup) *harness {
	t.Helper()
	h, nack := startScenario(t, p, s, false)
	if nack != "" {
		t.Fatalf("the data plane refused the configuration: %s", nack)
	}
	return h
}

// startNACK serves a configuration the Go data plane must refuse and
// returns the error it sent back with its NACK.
func startNACK(t *testing.T, s setup) string {
	t.Helper()
	h, nack := startScenario(t, goPlane, s, true)
	if nack == "" {
		t.Fatalf("the data plane accepted the configuration (listening on %s)", h.url)
	}
	return nack
}

func startScenario(t *testing.T, p plane, s setup, wantNACK bool) (*harness, string) {
	t.Helper()
	h := &harness{t: t, plane: p, authz: &scriptedAuthz{}, proc: &scriptedProc{}, upstream: &upstream{handler: s.upstream}}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	h.client = &http.Client{Transport: tr}
	t.Cleanup(tr.CloseIdleConnections)
	t.Cleanup(h.writeDump)
	h.grpc = grpc.NewServer()
	authv3.RegisterAuthorizationServer(h.grpc, h.authz)
	extprocv3.RegisterExternalProcessorServer(h.grpc, h.proc)
	glis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = h.grpc.Serve(glis) }()
	t.Cleanup(h.grpc.Stop)
	up := httptest.NewServer(h.upstream)
	t.Cleanup(up.Close)
	h.grpcAddr, h.upstreamAddr = glis.Addr().String(), strings.TrimPrefix(up.URL, "http://")

	if p == envoyPlane {
		h.envoy = sharedEnvoy.get(t)
		h.node = envoyNode
		_, logStart := envoyLogSince(h.envoy, 0)
		t.Cleanup(func() {
			if t.Failed() {
				l, _ := envoyLogSince(h.envoy, logStart)
				t.Logf("envoy log during this test:\n%s", l)
			}
		})
		h.url = "http://" + h.apply(s)
		return h, ""
	}

	h.node = t.Name()
	if err := ads.set(h.node, "1", resources(t, s, h.grpcAddr, h.upstreamAddr)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ads.cache.ClearSnapshot(h.node) })
	ctx, cancel := context.WithCancel(context.Background())
	dp, err := dataplane.New(dataplane.Options{XDS: ads.addr, NodeID: h.node, Logger: quiet()})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = dp.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	if wantNACK {
		// A refused resource need not stop the rest from serving (a NACKed
		// cluster leaves routes to it answering 503, as in Envoy).
		deadline := time.Now().Add(5 * time.Second)
		for dp.NACKs() == 0 && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		h.url = "http://" + dp.Addr()
		return h, dp.LastNACK()
	}
	select {
	case <-dp.Ready():
		h.url = "http://" + dp.Addr()
		if n := dp.LastNACK(); n != "" {
			return h, n
		}
		return h, ""
	case <-time.After(10 * time.Second):
		t.Fatalf("the data plane did not take the configuration: %s", dp.LastNACK())
	}
	return h, ""
}

// apply serves s to the package's Envoy as a new version and returns the
// listener's address once Envoy has applied it.
func (h *harness) apply(s setup) string {
	h.t.Helper()
	version := "v" + strconv.FormatInt(envoyVersions.Add(1), 10)
	if err := ads.set(envoyNode, version, resources(h.t, s, h.grpcAddr, h.upstreamAddr)); err != nil {
		h.t.Fatal(err)
	}
	return waitEnvoy(h.t, h.envoy, version)
}

// do sends a request and returns the response with its body read.
func (h *harness) do(req *http.Request) (*http.Response, string) {
	h.t.Helper()
	resp, err := h.client.Transport.RoundTrip(req)
	if err != nil {
		h.t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		h.t.Fatalf("read body: %v", err)
	}
	h.record(req, resp, string(b))
	return resp, string(b)
}

// warmUp sends GET /warm-up until one is answered 200, so that the data
// plane's gRPC connection to the scripted server exists before a test that
// times the processor's replies: the first ext_proc message's
// message_timeout also covers connecting and the HTTP/2 handshake. It uses
// h.client, whose connection the test's next h.get reuses (Envoy keeps a
// gRPC connection per worker thread, and a downstream connection stays on
// its worker). Call it before setting the test's handler (with setHandle).
func (h *harness) warmUp() {
	h.t.Helper()
	eventually(h.t, "a request through the processor", func() bool {
		resp, _ := h.get("/warm-up")
		return resp.StatusCode == http.StatusOK
	})
}

func (h *harness) get(path string, headers ...string) (*http.Response, string) {
	h.t.Helper()
	req, err := http.NewRequest(http.MethodGet, h.url+path, nil)
	if err != nil {
		h.t.Fatal(err)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		if strings.EqualFold(headers[i], "host") {
			req.Host = headers[i+1]
			continue
		}
		req.Header.Add(headers[i], headers[i+1])
	}
	return h.do(req)
}

func (h *harness) post(path, body string, headers ...string) (*http.Response, string) {
	h.t.Helper()
	req, err := http.NewRequest(http.MethodPost, h.url+path, strings.NewReader(body))
	if err != nil {
		h.t.Fatal(err)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Add(headers[i], headers[i+1])
	}
	return h.do(req)
}

func wantStatus(t *testing.T, resp *http.Response, body string, status int) {
	t.Helper()
	if resp.StatusCode != status {
		t.Fatalf("status %d, want %d; body %q", resp.StatusCode, status, body)
	}
}

// hv builds a HeaderValueOption.
func hv(k, v string, action corev3.HeaderValueOption_HeaderAppendAction) *corev3.HeaderValueOption {
	return &corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: k, RawValue: []byte(v)}, AppendAction: action}
}

type routeT = routev3.Route

func durationpbMS(ms int) *durationpb.Duration {
	return durationpb.New(time.Duration(ms) * time.Millisecond)
}

func mustRequest(t *testing.T, method, url, body string) *http.Request {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, r)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

func forwarding(ns ...string) *procfilterv3.MetadataOptions {
	return &procfilterv3.MetadataOptions{ForwardingNamespaces: &procfilterv3.MetadataOptions_MetadataNamespaces{Untyped: ns}}
}

func statusFilter(code uint32) *accesslogv3.AccessLogFilter {
	return &accesslogv3.AccessLogFilter{FilterSpecifier: &accesslogv3.AccessLogFilter_StatusCodeFilter{
		StatusCodeFilter: &accesslogv3.StatusCodeFilter{Comparison: &accesslogv3.ComparisonFilter{
			Op: accesslogv3.ComparisonFilter_EQ, Value: &corev3.RuntimeUInt32{DefaultValue: code, RuntimeKey: "k"},
		}},
	}}
}

func directResponse(status uint32, body string) *routev3.Route_DirectResponse {
	return &routev3.Route_DirectResponse{DirectResponse: &routev3.DirectResponseAction{
		Status: status, Body: &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: body}},
	}}
}

type anyT = anypb.Any

// pushNACK serves a configuration the data plane must refuse and returns
// the error it sent back with its NACK.
func (h *harness) pushNACK(s setup) string {
	h.t.Helper()
	version := "v" + strconv.FormatInt(envoyVersions.Add(1), 10)
	if err := ads.set(h.node, version, resources(h.t, s, h.grpcAddr, h.upstreamAddr)); err != nil {
		h.t.Fatal(err)
	}
	deadline := time.After(20 * time.Second)
	for {
		acked, nacks, changed := ads.state(h.node, version)
		if len(nacks) > 0 {
			return strings.Join(nacks, "; ")
		}
		if acked[resource.ListenerType] == version {
			h.t.Fatalf("the data plane ACKed version %s", version)
		}
		select {
		case <-changed:
		case <-deadline:
			h.t.Fatalf("no NACK of version %s", version)
		}
	}
}

// push serves a new configuration to the running data plane; the package's
// Envoy has applied it when push returns.
func (h *harness) push(s setup, version string) {
	h.t.Helper()
	if h.plane == envoyPlane {
		h.apply(s)
		return
	}
	if err := ads.set(h.node, version, resources(h.t, s, h.grpcAddr, h.upstreamAddr)); err != nil {
		h.t.Fatal(err)
	}
}

// detailsReply is a local_reply_config that adds each local reply's details
// and flags as the headers x-details and x-flags, and changes nothing else.
func detailsReply() *hcmv3.LocalReplyConfig {
	every := &accesslogv3.AccessLogFilter{FilterSpecifier: &accesslogv3.AccessLogFilter_StatusCodeFilter{
		StatusCodeFilter: &accesslogv3.StatusCodeFilter{Comparison: &accesslogv3.ComparisonFilter{
			Op: accesslogv3.ComparisonFilter_GE, Value: &corev3.RuntimeUInt32{DefaultValue: 0, RuntimeKey: "k"},
		}},
	}}
	return &hcmv3.LocalReplyConfig{Mappers: []*hcmv3.ResponseMapper{{
		Filter: every,
		HeadersToAdd: []*corev3.HeaderValueOption{
			{Header: &corev3.HeaderValue{Key: "x-details", Value: "%RESPONSE_CODE_DETAILS%"}},
			{Header: &corev3.HeaderValue{Key: "x-flags", Value: "%RESPONSE_FLAGS%"}},
		},
	}}}
}

// wantDetails checks a local reply's details (s.details must be set).
func wantDetails(t *testing.T, resp *http.Response, details string) {
	t.Helper()
	if got := resp.Header.Get("x-details"); got != details {
		t.Errorf("details %q, want %q", got, details)
	}
}
