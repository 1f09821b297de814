package xds

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"time"

	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/config/accesslog/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	upstreamhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/custos-dev/custos/config"
	"github.com/custos-dev/custos/names"
)

// caBundle is the system trust store Envoy verifies https upstreams with.
const caBundle = "/etc/ssl/certs/ca-certificates.crt"

// Options are the settings that do not come from the configuration file.
type Options struct {
	// GRPCAddress is where Envoy reaches Custos' gRPC services; empty means
	// listen.grpc with an unspecified host replaced by 127.0.0.1.
	GRPCAddress string
}

// Resources builds every Envoy resource for cfg, each validated with
// ValidateAll before and after packing its typed configs.
func Resources(cfg *config.Config, opts Options) (map[resource.Type][]types.Resource, error) {
	b := builder{cfg: cfg, opts: opts}
	lis, err := b.listener()
	if err != nil {
		return nil, fmt.Errorf("build listener: %w", err)
	}
	rc, err := b.routes()
	if err != nil {
		return nil, fmt.Errorf("build routes: %w", err)
	}
	clusters, err := b.clusters()
	if err != nil {
		return nil, fmt.Errorf("build clusters: %w", err)
	}
	out := map[resource.Type][]types.Resource{
		resource.ListenerType: {lis},
		resource.RouteType:    {rc},
		resource.ClusterType:  clusters,
	}
	for typ, rs := range out {
		for _, r := range rs {
			if err := validate(r); err != nil {
				return nil, fmt.Errorf("%s %q: %w", typ, resourceName(r), err)
			}
		}
	}
	return out, nil
}

type builder struct {
	cfg  *config.Config
	opts Options
}

type validator interface {
	ValidateAll() error
}

func validate(m proto.Message) error {
	v, ok := m.(validator)
	if !ok {
		return fmt.Errorf("%T has no validation", m)
	}
	return v.ValidateAll()
}

// pack validates m and packs it into an Any: PGV does not look inside Any, so
// every typed config is checked here before it disappears into bytes.
func pack(m proto.Message) (*anypb.Any, error) {
	if err := validate(m); err != nil {
		return nil, fmt.Errorf("%s: %w", m.ProtoReflect().Descriptor().FullName(), err)
	}
	// Deterministic, so that the same configuration always packs to the same
	// bytes and keeps its snapshot version.
	a := &anypb.Any{}
	if err := anypb.MarshalFrom(a, m, proto.MarshalOptions{Deterministic: true}); err != nil {
		return nil, err
	}
	return a, nil
}

func resourceName(r types.Resource) string {
	switch v := r.(type) {
	case *listenerv3.Listener:
		return v.GetName()
	case *routev3.RouteConfiguration:
		return v.GetName()
	case *clusterv3.Cluster:
		return v.GetName()
	}
	return fmt.Sprintf("%T", r)
}

// holdTimeout is what every timer that must outlast a hold is set to. Only
// hold mode holds; Envoy caps max_message_timeout at one hour, and config
// validation keeps a hold below it.
func (b builder) holdTimeout() time.Duration {
	return min(b.cfg.Approvals.Timeout+names.HoldMargin, time.Hour)
}

func (b builder) listener() (*listenerv3.Listener, error) {
	addr, err := socketAddress(b.cfg.Listen.Dataplane, false)
	if err != nil {
		return nil, fmt.Errorf("listen.dataplane: %w", err)
	}
	authz, err := pack(b.extAuthz())
	if err != nil {
		return nil, err
	}
	proc, err := pack(b.extProc())
	if err != nil {
		return nil, err
	}
	// The router adds no x-envoy-* headers of its own (x-envoy-original-path
	// on every prefix_rewrite, x-envoy-expected-rq-timeout-ms): the upstream
	// sees none of Envoy's internals.
	router, err := pack(&routerv3.Router{SuppressEnvoyHeaders: true})
	if err != nil {
		return nil, err
	}
	hcm := &hcmv3.HttpConnectionManager{
		StatPrefix: "custos",
		CodecType:  hcmv3.HttpConnectionManager_AUTO,
		RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{
			ConfigSource: &corev3.ConfigSource{
				ResourceApiVersion:    corev3.ApiVersion_V3,
				ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}},
			},
			RouteConfigName: names.RouteConfigName,
		}},
		HttpFilters: []*hcmv3.HttpFilter{
			{Name: names.ExtAuthzFilter, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: authz}},
			{Name: names.ExtProcFilter, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: proc}},
			{Name: names.RouterFilter, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: router}},
		},
		// External requests lose their x-envoy-* headers and get a fresh
		// x-request-id: the id Custos records is not the agent's choice.
		UseRemoteAddress: wrapperspb.Bool(true),
		NormalizePath:    wrapperspb.Bool(true),
		MergeSlashes:     true,
		// Kept for Check, which refuses a path with an escaped slash itself
		// (400 bad_request with Custos' request id, recorded): Envoy's
		// REJECT_REQUEST answers before it assigns a request id and echoes
		// the agent's own x-request-id in the reply.
		PathWithEscapedSlashesAction: hcmv3.HttpConnectionManager_KEEP_UNCHANGED,
		StripPortMode:                &hcmv3.HttpConnectionManager_StripAnyHostPort{StripAnyHostPort: true},
		// "customers.internal." is customers.internal: routed by host the
		// same way, so Check sees one host and computes one upstream path.
		StripTrailingHostDot: true,
		MaxRequestHeadersKb:  wrapperspb.UInt32(names.MaxRequestHeadersKB),
		// A client gets a few seconds for its request headers; holds come
		// after the headers and are not counted.
		RequestHeadersTimeout: durationpb.New(names.RequestHeadersTimeout),
		// Idle keep-alive connections close after names.IdleTimeout (the
		// next response of one that served requests carries
		// connection: close); a hold is a request under way, never idle.
		CommonHttpProtocolOptions: &corev3.HttpProtocolOptions{IdleTimeout: durationpb.New(names.IdleTimeout)},
		StreamIdleTimeout:         durationpb.New(b.holdTimeout() + names.HoldMargin),
		LocalReplyConfig:          localReplyConfig(),
	}
	hcmAny, err := pack(hcm)
	if err != nil {
		return nil, err
	}
	fc := &listenerv3.FilterChain{
		Filters: []*listenerv3.Filter{{
			Name:       names.HCMFilter,
			ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: hcmAny},
		}},
	}
	if t := b.cfg.Listen.AgentTLS; t != nil {
		if fc.TransportSocket, fc.Name, err = agentTLS(t); err != nil {
			return nil, fmt.Errorf("listen.agent_tls: %w", err)
		}
	}
	return &listenerv3.Listener{
		Name:         names.ListenerName,
		Address:      &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: addr}},
		FilterChains: []*listenerv3.FilterChain{fc},
	}, nil
}

// agentTLS is the listener's TLS for agents: the certificate, the key and
// the client CA as files the data plane reads itself (no key travels over
// xDS). The filter chain's name carries a digest of the files' contents,
// so that a renewed certificate is a changed chain the data plane loads
// again (AgentTLSStamp; the control plane resends the listener when it
// changes). A client certificate is asked for when a CA is set and never
// required at the TLS layer: each connection says whether it needs one.
func agentTLS(t *config.AgentTLS) (*corev3.TransportSocket, string, error) {
	// A file that cannot be read yet (custos dev makes them on first run;
	// a renewal in progress) still names the chain: the data plane refuses
	// the listener until the files are there, and the control plane resends
	// it once they change.
	stamp, err := AgentTLSStamp(t)
	if err != nil {
		stamp = "unreadable"
	}
	abs := func(p string) (*corev3.DataSource, error) {
		a, err := filepath.Abs(p)
		if err != nil {
			return nil, err
		}
		return &corev3.DataSource{Specifier: &corev3.DataSource_Filename{Filename: a}}, nil
	}
	cert, err := abs(t.CertFile)
	if err != nil {
		return nil, "", err
	}
	key, err := abs(t.KeyFile)
	if err != nil {
		return nil, "", err
	}
	ctc := &tlsv3.CommonTlsContext{
		TlsCertificates: []*tlsv3.TlsCertificate{{CertificateChain: cert, PrivateKey: key}},
		AlpnProtocols:   []string{"http/1.1"},
	}
	if t.ClientCAFile != "" {
		ca, err := abs(t.ClientCAFile)
		if err != nil {
			return nil, "", err
		}
		ctc.ValidationContextType = &tlsv3.CommonTlsContext_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{TrustedCa: ca}}
	}
	tctx, err := pack(&tlsv3.DownstreamTlsContext{CommonTlsContext: ctc, RequireClientCertificate: wrapperspb.Bool(false)})
	if err != nil {
		return nil, "", err
	}
	return &corev3.TransportSocket{Name: "envoy.transport_sockets.tls",
		ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: tctx}}, "custos-tls-" + stamp, nil
}

// AgentTLSStamp is a digest of the agent TLS files' contents: it changes
// when a certificate, key or CA is replaced.
func AgentTLSStamp(t *config.AgentTLS) (string, error) {
	h := sha256.New()
	for _, p := range []string{t.CertFile, t.KeyFile, t.ClientCAFile} {
		if p == "" {
			continue
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(h, "%d:", len(b))
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil))[:16], nil
}

func grpcService() *corev3.GrpcService {
	return &corev3.GrpcService{
		TargetSpecifier: &corev3.GrpcService_EnvoyGrpc_{EnvoyGrpc: &corev3.GrpcService_EnvoyGrpc{ClusterName: names.GRPCCluster}},
		Timeout:         durationpb.New(names.AuthzTimeout),
	}
}

func (b builder) extAuthz() *extauthzv3.ExtAuthz {
	return &extauthzv3.ExtAuthz{
		Services:               &extauthzv3.ExtAuthz_GrpcService{GrpcService: grpcService()},
		TransportApiVersion:    corev3.ApiVersion_V3,
		FailureModeAllow:       false,
		StatusOnError:          &typev3.HttpStatus{Code: typev3.StatusCode_ServiceUnavailable},
		IncludePeerCertificate: true,
	}
}

func (b builder) extProc() *extprocv3.ExternalProcessor {
	return &extprocv3.ExternalProcessor{
		GrpcService:      grpcService(),
		FailureModeAllow: false,
		ProcessingMode: &extprocv3.ProcessingMode{
			RequestHeaderMode:   extprocv3.ProcessingMode_SEND,
			ResponseHeaderMode:  extprocv3.ProcessingMode_SEND,
			RequestBodyMode:     extprocv3.ProcessingMode_NONE,
			ResponseBodyMode:    extprocv3.ProcessingMode_NONE,
			RequestTrailerMode:  extprocv3.ProcessingMode_SKIP,
			ResponseTrailerMode: extprocv3.ProcessingMode_SKIP,
		},
		// A masked response asks for its body, streamed, in the reply to its
		// headers (policy may add masking to any request).
		AllowModeOverride: true,
		MessageTimeout:    durationpb.New(names.MessageTimeout),
		MaxMessageTimeout: durationpb.New(b.holdTimeout()),
		MetadataOptions: &extprocv3.MetadataOptions{
			ForwardingNamespaces: &extprocv3.MetadataOptions_MetadataNamespaces{Untyped: []string{names.ExtAuthzFilter}},
			ReceivingNamespaces:  &extprocv3.MetadataOptions_MetadataNamespaces{Untyped: []string{names.ReceivingNamespace}},
		},
		StatusOnError: &typev3.HttpStatus{Code: typev3.StatusCode_ServiceUnavailable},
	}
}

// localReply describes how one status of Envoy's own replies is rendered.
type localReply struct {
	match   uint32
	status  uint32
	code    string
	message string
	extra   map[string]any
}

// localReplies renders every reply Envoy produces itself as the CONTRACT's
// JSON. Custos' own denials (401, 403) come with their JSON body and match no
// mapper; a stage that cannot decide fails its gRPC call, which Envoy turns
// into status_on_error (503) and this table into `unavailable`.
var localReplies = []localReply{
	{400, 400, "bad_request", "the request was refused before policy: %RESPONSE_CODE_DETAILS%", nil},
	{404, 404, "not_found", "no connection serves this path or host", nil},
	{413, 413, "request_too_large", "the request body is over the limit", map[string]any{"limit_bytes": float64(names.BodyLimitBytes)}},
	{431, 431, "request_headers_too_large", "the request headers are over the limit", map[string]any{"limit_bytes": float64(names.MaxRequestHeadersKB * 1024)}},
	{500, 503, "unavailable", "a stage could not complete; nothing was forwarded unprocessed (%RESPONSE_CODE_DETAILS%)", nil},
	{502, 503, "unavailable", "the upstream could not be reached (%RESPONSE_CODE_DETAILS%)", nil},
	{503, 503, "unavailable", "a stage could not decide or the upstream is unavailable; nothing was forwarded (%RESPONSE_CODE_DETAILS%)", nil},
	{504, 503, "unavailable", "a stage or the upstream timed out (%RESPONSE_CODE_DETAILS%)", nil},
}

// notDeniedByCustos matches replies Custos did not make, by the marker in
// namespace: Envoy stores a denial's dynamic metadata too (ext_authz's for
// Check, the receiving namespace for Process's immediate replies), so a
// reply with custos_denied true is Custos' own JSON and keeps its body.
// Without the key (Custos never answered) the filter matches.
func notDeniedByCustos(namespace string) *accesslogv3.AccessLogFilter {
	return &accesslogv3.AccessLogFilter{FilterSpecifier: &accesslogv3.AccessLogFilter_MetadataFilter{
		MetadataFilter: &accesslogv3.MetadataFilter{
			Matcher: &matcherv3.MetadataMatcher{
				Filter: namespace,
				Path:   []*matcherv3.MetadataMatcher_PathSegment{{Segment: &matcherv3.MetadataMatcher_PathSegment_Key{Key: names.DeniedKey}}},
				Value:  &matcherv3.ValueMatcher{MatchPattern: &matcherv3.ValueMatcher_BoolMatch{BoolMatch: false}},
			},
			MatchIfKeyNotFound: wrapperspb.Bool(true),
		},
	}}
}

func localReplyConfig() *hcmv3.LocalReplyConfig {
	lrc := &hcmv3.LocalReplyConfig{}
	for _, r := range localReplies {
		fields := map[string]any{
			"error":      r.code,
			"message":    r.message,
			"request_id": names.RequestIDFormat,
		}
		for k, v := range r.extra {
			fields[k] = v
		}
		body, err := structpb.NewStruct(fields)
		if err != nil {
			panic(err) // static table: a failure is a programming error caught by the tests
		}
		status := &accesslogv3.AccessLogFilter{FilterSpecifier: &accesslogv3.AccessLogFilter_StatusCodeFilter{
			StatusCodeFilter: &accesslogv3.StatusCodeFilter{Comparison: &accesslogv3.ComparisonFilter{
				Op: accesslogv3.ComparisonFilter_EQ,
				Value: &corev3.RuntimeUInt32{
					DefaultValue: r.match,
					RuntimeKey:   "custos.local_reply." + strconv.Itoa(int(r.match)),
				},
			}},
		}}
		m := &hcmv3.ResponseMapper{
			Filter: &accesslogv3.AccessLogFilter{FilterSpecifier: &accesslogv3.AccessLogFilter_AndFilter{
				// Neither Check's replies (ext_authz metadata) nor Process's
				// (its immediate replies mark the receiving namespace).
				AndFilter: &accesslogv3.AndFilter{Filters: []*accesslogv3.AccessLogFilter{status,
					notDeniedByCustos(names.ExtAuthzFilter), notDeniedByCustos(names.ReceivingNamespace)}},
			}},
			BodyFormatOverride: &corev3.SubstitutionFormatString{
				Format:      &corev3.SubstitutionFormatString_JsonFormat{JsonFormat: body},
				ContentType: "application/json",
			},
			HeadersToAdd: []*corev3.HeaderValueOption{{
				Header:       &corev3.HeaderValue{Key: "x-custos-request-id", Value: names.RequestIDFormat},
				AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
			}},
		}
		if r.status != r.match {
			m.StatusCode = wrapperspb.UInt32(r.status)
		}
		lrc.Mappers = append(lrc.Mappers, m)
	}
	return lrc
}

func (b builder) routes() (*routev3.RouteConfiguration, error) {
	rc := &routev3.RouteConfiguration{
		Name:                   names.RouteConfigName,
		RequestHeadersToRemove: names.StrippedHeaders,
	}
	byPath := &routev3.VirtualHost{Name: names.CatchAllVirtualHost, Domains: []string{"*"}}
	for _, c := range b.cfg.Connections {
		base := basePath(c)
		// Each route tells Check what it matched and what Envoy's router
		// puts in its place (context_extensions), so the path Custos
		// classifies and records is the path the upstream receives.
		prefix, exact := "/"+c.Name+"/", "/"+c.Name
		for _, m := range []struct {
			match  *routev3.RouteMatch
			prefix string
		}{
			{&routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: prefix}}, prefix},
			{&routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Path{Path: exact}}, exact},
		} {
			r, err := b.connectionRoute(c, m.match, m.prefix, base+"/")
			if err != nil {
				return nil, fmt.Errorf("connection %q: %w", c.Name, err)
			}
			byPath.Routes = append(byPath.Routes, r)
		}
		if len(c.Hosts) > 0 {
			vh := &routev3.VirtualHost{Name: names.VirtualHostName(c.Name), Domains: hostDomains(c.Hosts)}
			matched, rewrite := "", ""
			if base != "" {
				matched, rewrite = "/", base+"/"
			}
			r, err := b.connectionRoute(c, &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}}, matched, rewrite)
			if err != nil {
				return nil, fmt.Errorf("connection %q: %w", c.Name, err)
			}
			vh.Routes = append(vh.Routes, r)
			rc.VirtualHosts = append(rc.VirtualHosts, vh)
		}
	}
	off, err := disabledFilters()
	if err != nil {
		return nil, err
	}
	byPath.Routes = append(byPath.Routes, &routev3.Route{
		Name:  "not-found",
		Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
		Action: &routev3.Route_DirectResponse{DirectResponse: &routev3.DirectResponseAction{
			Status: 404,
		}},
		TypedPerFilterConfig: off,
	})
	rc.VirtualHosts = append(rc.VirtualHosts, byPath)
	return rc, nil
}

// hostDomains are a connection's hosts as virtual host domains: without
// their port, since the connection manager strips any port before matching
// (strip_any_host_port).
func hostDomains(hosts []string) []string {
	var out []string
	seen := map[string]bool{}
	for _, h := range hosts {
		if host, _, err := net.SplitHostPort(h); err == nil {
			h = host
		}
		if !seen[h] {
			seen[h] = true
			out = append(out, h)
		}
	}
	return out
}

// basePath is the upstream URL's path without its trailing slash ("" for root).
func basePath(c config.Connection) string {
	p := c.UpstreamURL().Path
	for len(p) > 0 && p[len(p)-1] == '/' {
		p = p[:len(p)-1]
	}
	return p
}

// connectionFilterConfig is a connection route's ext_authz settings: the
// route's facts as context_extensions (connection, and the prefix the route
// rewrites with what it rewrites it to).
func (b builder) connectionFilterConfig(c config.Connection, prefix, rewrite string) (map[string]*anypb.Any, error) {
	ext := map[string]string{
		names.ContextConnection: c.Name,
		names.ContextExtProc:    "on",
	}
	if prefix != "" {
		ext[names.ContextPrefix] = prefix
		ext[names.ContextPrefixRewrite] = rewrite
	}
	cs := &extauthzv3.CheckSettings{ContextExtensions: ext}
	if inspectsBody(c.Kind) {
		// The inspectors read what the request does from its body: Check
		// gets it whole (up to the limit; over it, 413), never a part.
		cs.WithRequestBody = &extauthzv3.BufferSettings{MaxRequestBytes: names.BodyLimitBytes, AllowPartialMessage: false, PackAsBytes: true}
	}
	authz, err := pack(&extauthzv3.ExtAuthzPerRoute{Override: &extauthzv3.ExtAuthzPerRoute_CheckSettings{CheckSettings: cs}})
	if err != nil {
		return nil, err
	}
	return map[string]*anypb.Any{names.ExtAuthzFilter: authz}, nil
}

// inspectsBody reports whether connections of kind have their requests'
// bodies inspected (filters/inspect.NeedsBody says the same; a test keeps
// them in step).
func inspectsBody(kind string) bool {
	switch kind {
	case config.KindSQLHTTP, config.KindKubernetes, config.KindCosmos, config.KindGraphQL:
		return true
	}
	return false
}

func disabledFilters() (map[string]*anypb.Any, error) {
	authz, err := pack(&extauthzv3.ExtAuthzPerRoute{Override: &extauthzv3.ExtAuthzPerRoute_Disabled{Disabled: true}})
	if err != nil {
		return nil, err
	}
	proc, err := pack(&extprocv3.ExtProcPerRoute{Override: &extprocv3.ExtProcPerRoute_Disabled{Disabled: true}})
	if err != nil {
		return nil, err
	}
	return map[string]*anypb.Any{names.ExtAuthzFilter: authz, names.ExtProcFilter: proc}, nil
}

// connectionRoute routes match to c's cluster, replacing prefix (what the
// match matched; "" for nothing) with rewrite.
func (b builder) connectionRoute(c config.Connection, match *routev3.RouteMatch, prefix, rewrite string) (*routev3.Route, error) {
	perFilter, err := b.connectionFilterConfig(c, prefix, rewrite)
	if err != nil {
		return nil, err
	}
	hold := durationpb.New(b.holdTimeout())
	action := &routev3.RouteAction{
		ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: names.ClusterName(c.Name)},
		PrefixRewrite:    rewrite,
		// The upstream sees its own host name, not the listener's.
		HostRewriteSpecifier: &routev3.RouteAction_HostRewriteLiteral{HostRewriteLiteral: c.UpstreamURL().Host},
		Timeout:              hold,
		IdleTimeout:          hold,
	}
	if c.Kind == config.KindKubernetes {
		// exec, attach and portforward upgrade the connection (WebSocket,
		// or SPDY as kubectl speaks it). The upgrade request is decided
		// like any other first; what follows it is the tunnel's.
		action.UpgradeConfigs = []*routev3.RouteAction_UpgradeConfig{
			{UpgradeType: "websocket"}, {UpgradeType: "spdy/3.1"},
		}
	}
	return &routev3.Route{
		Name:                 c.Name,
		Match:                match,
		Action:               &routev3.Route_Route{Route: action},
		TypedPerFilterConfig: perFilter,
	}, nil
}

func (b builder) clusters() ([]types.Resource, error) {
	grpcAddr := b.opts.GRPCAddress
	if grpcAddr == "" {
		grpcAddr = b.cfg.Listen.GRPC
	}
	g, err := cluster(names.GRPCCluster, grpcAddr, true, "")
	if err != nil {
		return nil, fmt.Errorf("custos gRPC cluster: %w", err)
	}
	if b.cfg.Listen.TLS != nil {
		if g.TransportSocket, err = clientMTLS(); err != nil {
			return nil, fmt.Errorf("custos gRPC cluster: %w", err)
		}
	}
	g.CircuitBreakers = &clusterv3.CircuitBreakers{Thresholds: []*clusterv3.CircuitBreakers_Thresholds{{
		Priority:           corev3.RoutingPriority_DEFAULT,
		MaxRequests:        wrapperspb.UInt32(names.MaxGRPCRequests),
		MaxPendingRequests: wrapperspb.UInt32(names.MaxGRPCRequests),
		MaxConnections:     wrapperspb.UInt32(1024),
	}}}
	out := []types.Resource{g}
	connNames := make([]string, 0, len(b.cfg.Connections))
	byName := map[string]config.Connection{}
	for _, c := range b.cfg.Connections {
		connNames = append(connNames, c.Name)
		byName[c.Name] = c
	}
	sort.Strings(connNames)
	for _, n := range connNames {
		u := byName[n].UpstreamURL()
		port := u.Port()
		tlsHost := ""
		if u.Scheme == "https" {
			tlsHost = u.Hostname()
			if port == "" {
				port = "443"
			}
		} else if port == "" {
			port = "80"
		}
		c, err := cluster(names.ClusterName(n), net.JoinHostPort(u.Hostname(), port), false, tlsHost)
		if err != nil {
			return nil, fmt.Errorf("connection %q: %w", n, err)
		}
		// Envoy's default (1,024 each) let one client's stalled uploads take
		// every upstream slot; the downstream connection cap now runs out
		// first.
		limit := wrapperspb.UInt32(names.MaxUpstreamRequests)
		c.CircuitBreakers = &clusterv3.CircuitBreakers{Thresholds: []*clusterv3.CircuitBreakers_Thresholds{{
			Priority: corev3.RoutingPriority_DEFAULT, MaxConnections: limit, MaxPendingRequests: limit, MaxRequests: limit,
		}}}
		out = append(out, c)
	}
	return out, nil
}

// clientMTLS is the transport socket with which the data plane reaches
// Custos over mutual TLS: its client certificate and the CA that verifies
// Custos come from secrets the data plane holds itself (Envoy's bootstrap
// static_resources.secrets, named names.ClientCertSecret and
// names.CustosCASecret), so no key travels over xDS.
func clientMTLS() (*corev3.TransportSocket, error) {
	tctx, err := pack(&tlsv3.UpstreamTlsContext{
		CommonTlsContext: &tlsv3.CommonTlsContext{
			TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{{Name: names.ClientCertSecret}},
			ValidationContextType: &tlsv3.CommonTlsContext_ValidationContextSdsSecretConfig{
				ValidationContextSdsSecretConfig: &tlsv3.SdsSecretConfig{Name: names.CustosCASecret},
			},
			AlpnProtocols: []string{"h2"},
		},
	})
	if err != nil {
		return nil, err
	}
	return &corev3.TransportSocket{
		Name:       "envoy.transport_sockets.tls",
		ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: tctx},
	}, nil
}

func cluster(name, hostport string, http2 bool, tlsHost string) (*clusterv3.Cluster, error) {
	sa, err := socketAddress(hostport, true)
	if err != nil {
		return nil, err
	}
	c := &clusterv3.Cluster{
		Name:           name,
		ConnectTimeout: durationpb.New(time.Second),
		LoadAssignment: &endpointv3.ClusterLoadAssignment{
			ClusterName: name,
			Endpoints: []*endpointv3.LocalityLbEndpoints{{
				LbEndpoints: []*endpointv3.LbEndpoint{{
					HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
						Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: sa}},
					}},
				}},
			}},
		},
	}
	if _, err := netip.ParseAddr(sa.GetAddress()); err == nil {
		c.ClusterDiscoveryType = &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC}
	} else {
		c.ClusterDiscoveryType = &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STRICT_DNS}
		c.DnsLookupFamily = clusterv3.Cluster_V4_PREFERRED
	}
	if http2 {
		opts, err := pack(&upstreamhttpv3.HttpProtocolOptions{
			UpstreamProtocolOptions: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig_{
				ExplicitHttpConfig: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig{
					ProtocolConfig: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig_Http2ProtocolOptions{
						Http2ProtocolOptions: &corev3.Http2ProtocolOptions{},
					},
				},
			},
		})
		if err != nil {
			return nil, err
		}
		c.TypedExtensionProtocolOptions = map[string]*anypb.Any{names.HTTPProtocolOptions: opts}
	}
	if tlsHost != "" {
		tctx, err := pack(&tlsv3.UpstreamTlsContext{
			Sni: tlsHost,
			CommonTlsContext: &tlsv3.CommonTlsContext{
				ValidationContextType: &tlsv3.CommonTlsContext_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
					TrustedCa: &corev3.DataSource{Specifier: &corev3.DataSource_Filename{Filename: caBundle}},
					MatchTypedSubjectAltNames: []*tlsv3.SubjectAltNameMatcher{{
						SanType: tlsv3.SubjectAltNameMatcher_DNS,
						Matcher: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: tlsHost}},
					}},
				}},
			},
		})
		if err != nil {
			return nil, err
		}
		c.TransportSocket = &corev3.TransportSocket{
			Name:       "envoy.transport_sockets.tls",
			ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: tctx},
		}
	}
	return c, nil
}

// socketAddress parses host:port. For a cluster endpoint (dial true) an
// unspecified host (0.0.0.0, ::, empty) means this machine: 127.0.0.1.
func socketAddress(hostport string, dial bool) (*corev3.SocketAddress, error) {
	host, portStr, err := net.SplitHostPort(hostport)
	if err != nil {
		return nil, fmt.Errorf("%q is not host:port: %w", hostport, err)
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil {
		return nil, fmt.Errorf("%q: bad port", hostport)
	}
	if host == "" {
		host = "0.0.0.0"
	}
	if dial {
		if ip, err := netip.ParseAddr(host); err == nil && ip.IsUnspecified() {
			host = "127.0.0.1"
		}
		if port == 0 {
			return nil, errors.New("port 0 cannot be dialled")
		}
	}
	return &corev3.SocketAddress{
		Address:       host,
		PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: uint32(port)},
	}, nil
}
