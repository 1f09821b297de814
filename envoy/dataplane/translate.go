package dataplane

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	procfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	upstreamhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
)

// onlyFields refuses a message that sets any field outside allowed: the data
// plane serves the subset of Envoy's API Custos emits and NACKs the rest
// rather than half-serve it.
func onlyFields(m proto.Message, allowed ...string) error {
	var bad []string
	m.ProtoReflect().Range(func(fd protoreflect.FieldDescriptor, _ protoreflect.Value) bool {
		name := string(fd.Name())
		for _, a := range allowed {
			if a == name {
				return true
			}
		}
		bad = append(bad, name)
		return true
	})
	if len(bad) > 0 {
		sort.Strings(bad)
		return fmt.Errorf("%s: unsupported field(s) %s", m.ProtoReflect().Descriptor().FullName(), strings.Join(bad, ", "))
	}
	return nil
}

// validated runs the message's PGV rules, as Envoy does on every resource.
func validated(m proto.Message) error {
	if v, ok := m.(interface{ ValidateAll() error }); ok {
		if err := v.ValidateAll(); err != nil {
			return err
		}
	}
	return nil
}

func unpack[T proto.Message](a *anypb.Any, into T) (T, error) {
	if a == nil {
		return into, fmt.Errorf("missing typed_config")
	}
	if err := a.UnmarshalTo(into); err != nil {
		return into, fmt.Errorf("typed_config %s: %w", a.GetTypeUrl(), err)
	}
	if err := validated(into); err != nil {
		return into, err
	}
	return into, nil
}

func dur(d *durationpb.Duration, def time.Duration) time.Duration {
	if d == nil {
		return def
	}
	return d.AsDuration()
}

// listenerConfig is one listener the data plane serves.
type listenerConfig struct {
	name string
	addr string
	hcm  *hcmConfig
	// tls serves the listener over TLS (its filter chain's transport
	// socket); nil for plain text.
	tls *tls.Config
}

func translateListener(l *listenerv3.Listener) (*listenerConfig, error) {
	if err := validated(l); err != nil {
		return nil, err
	}
	if err := onlyFields(l, "name", "address", "filter_chains"); err != nil {
		return nil, err
	}
	sa := l.GetAddress().GetSocketAddress()
	if sa == nil || sa.GetProtocol() != corev3.SocketAddress_TCP {
		return nil, fmt.Errorf("listener %q: only a TCP socket address is supported", l.GetName())
	}
	if len(l.GetFilterChains()) != 1 {
		return nil, fmt.Errorf("listener %q: exactly one filter chain is supported", l.GetName())
	}
	fc := l.GetFilterChains()[0]
	if err := onlyFields(fc, "filters", "name", "transport_socket"); err != nil {
		return nil, err
	}
	var serverTLS *tls.Config
	if ts := fc.GetTransportSocket(); ts != nil {
		var err error
		if serverTLS, err = translateDownstreamTLS(ts); err != nil {
			return nil, fmt.Errorf("listener %q: %w", l.GetName(), err)
		}
	}
	if len(fc.GetFilters()) != 1 || fc.GetFilters()[0].GetTypedConfig() == nil {
		return nil, fmt.Errorf("listener %q: the filter chain must hold one http_connection_manager", l.GetName())
	}
	hcmPB, err := unpack(fc.GetFilters()[0].GetTypedConfig(), &hcmv3.HttpConnectionManager{})
	if err != nil {
		return nil, fmt.Errorf("listener %q: %w", l.GetName(), err)
	}
	hcm, err := translateHCM(hcmPB)
	if err != nil {
		return nil, fmt.Errorf("listener %q: %w", l.GetName(), err)
	}
	return &listenerConfig{
		name: l.GetName(),
		addr: net.JoinHostPort(sa.GetAddress(), strconv.Itoa(int(sa.GetPortValue()))),
		hcm:  hcm,
		tls:  serverTLS,
	}, nil
}

// translateDownstreamTLS reads a filter chain's DownstreamTlsContext: the
// certificate and key (and the client CA) from the files it names, read now
// so that a missing or bad file is NACKed, as Envoy does. A client
// certificate is asked for when a CA is set, and required only with
// require_client_certificate.
func translateDownstreamTLS(ts *corev3.TransportSocket) (*tls.Config, error) {
	if ts.GetName() != "envoy.transport_sockets.tls" || ts.GetTypedConfig() == nil {
		return nil, fmt.Errorf("transport_socket %q is not supported", ts.GetName())
	}
	dtc, err := unpack(ts.GetTypedConfig(), &tlsv3.DownstreamTlsContext{})
	if err != nil {
		return nil, err
	}
	if err := onlyFields(dtc, "common_tls_context", "require_client_certificate"); err != nil {
		return nil, err
	}
	ctc := dtc.GetCommonTlsContext()
	if err := onlyFields(ctc, "tls_certificates", "validation_context", "alpn_protocols"); err != nil {
		return nil, err
	}
	if len(ctc.GetTlsCertificates()) != 1 {
		return nil, errors.New("exactly one tls_certificate is supported")
	}
	tc := ctc.GetTlsCertificates()[0]
	certFile, keyFile := tc.GetCertificateChain().GetFilename(), tc.GetPrivateKey().GetFilename()
	if certFile == "" || keyFile == "" {
		return nil, errors.New("the certificate and key must be files (filename)")
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("tls_certificate: %w", err)
	}
	c := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12, NextProtos: ctc.GetAlpnProtocols()}
	if vc := ctc.GetValidationContext(); vc != nil {
		if err := onlyFields(vc, "trusted_ca"); err != nil {
			return nil, err
		}
		pem, err := os.ReadFile(vc.GetTrustedCa().GetFilename())
		if err != nil {
			return nil, fmt.Errorf("trusted_ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, errors.New("trusted_ca holds no certificate")
		}
		c.ClientCAs, c.ClientAuth = pool, tls.VerifyClientCertIfGiven
		if dtc.GetRequireClientCertificate().GetValue() {
			c.ClientAuth = tls.RequireAndVerifyClientCert
		}
	}
	return c, nil
}

// hcmConfig is the connection manager's behaviour.
type hcmConfig struct {
	routeConfigName      string
	extAuthz             *extAuthzConfig
	extProc              *extProcConfig
	useRemoteAddress     bool
	normalizePath        bool
	mergeSlashes         bool
	rejectEscapedSlashes bool
	stripAnyHostPort     bool
	stripTrailingHostDot bool
	maxRequestHeaderSize int
	streamIdleTimeout    time.Duration
	localReply           *localReplyConfig
	// rejectUnderscores: common_http_protocol_options
	// headers_with_underscores_action REJECT_REQUEST.
	rejectUnderscores bool
	// suppressEnvoyHeaders: the router's suppress_envoy_headers.
	suppressEnvoyHeaders bool
	// requestHeadersTimeout bounds the reading of the request headers (0: none).
	requestHeadersTimeout time.Duration
	// idleTimeout (common_http_protocol_options idle_timeout, 0: none)
	// closes a connection without a request under way; drainTimeout is how
	// long a connection that was idle drains before it closes.
	idleTimeout, drainTimeout time.Duration
}

func translateHCM(h *hcmv3.HttpConnectionManager) (*hcmConfig, error) {
	if err := onlyFields(h, "codec_type", "stat_prefix", "rds", "http_filters", "use_remote_address",
		"normalize_path", "merge_slashes", "path_with_escaped_slashes_action", "strip_any_host_port", "strip_trailing_host_dot",
		"max_request_headers_kb", "stream_idle_timeout", "local_reply_config", "common_http_protocol_options", "request_headers_timeout",
		"drain_timeout"); err != nil {
		return nil, err
	}
	if o := h.GetCommonHttpProtocolOptions(); o != nil {
		if err := onlyFields(o, "headers_with_underscores_action", "idle_timeout"); err != nil {
			return nil, err
		}
		switch o.GetHeadersWithUnderscoresAction() {
		case corev3.HttpProtocolOptions_ALLOW:
		case corev3.HttpProtocolOptions_REJECT_REQUEST:
		default:
			return nil, fmt.Errorf("common_http_protocol_options: headers_with_underscores_action %s is not supported", o.GetHeadersWithUnderscoresAction())
		}
	}
	rds := h.GetRds()
	if rds == nil || rds.GetConfigSource().GetAds() == nil {
		return nil, fmt.Errorf("http_connection_manager: routes must come from RDS over ADS")
	}
	c := &hcmConfig{
		routeConfigName:       rds.GetRouteConfigName(),
		useRemoteAddress:      h.GetUseRemoteAddress().GetValue(),
		normalizePath:         h.GetNormalizePath().GetValue(),
		mergeSlashes:          h.GetMergeSlashes(),
		stripAnyHostPort:      h.GetStripAnyHostPort(),
		stripTrailingHostDot:  h.GetStripTrailingHostDot(),
		rejectUnderscores:     h.GetCommonHttpProtocolOptions().GetHeadersWithUnderscoresAction() == corev3.HttpProtocolOptions_REJECT_REQUEST,
		streamIdleTimeout:     dur(h.GetStreamIdleTimeout(), 5*time.Minute), // Envoy's default
		requestHeadersTimeout: dur(h.GetRequestHeadersTimeout(), 0),
		idleTimeout:           time.Hour, // Envoy's default
		drainTimeout:          dur(h.GetDrainTimeout(), defaultDrainTimeout),
	}
	if d := h.GetCommonHttpProtocolOptions().GetIdleTimeout(); d != nil {
		c.idleTimeout = d.AsDuration() // 0 turns it off
	}
	switch h.GetPathWithEscapedSlashesAction() {
	case hcmv3.HttpConnectionManager_IMPLEMENTATION_SPECIFIC_DEFAULT, hcmv3.HttpConnectionManager_KEEP_UNCHANGED:
	case hcmv3.HttpConnectionManager_REJECT_REQUEST:
		c.rejectEscapedSlashes = true
	default:
		return nil, fmt.Errorf("http_connection_manager: path_with_escaped_slashes_action %s is not supported", h.GetPathWithEscapedSlashesAction())
	}
	kb := h.GetMaxRequestHeadersKb().GetValue()
	if kb == 0 {
		kb = 60 // Envoy's default
	}
	c.maxRequestHeaderSize = int(kb) * 1024
	lr, err := translateLocalReply(h.GetLocalReplyConfig())
	if err != nil {
		return nil, err
	}
	c.localReply = lr

	filters := h.GetHttpFilters()
	if len(filters) == 0 || filters[len(filters)-1].GetName() != routerName {
		return nil, fmt.Errorf("http_filters: the last filter must be %s", routerName)
	}
	for i, f := range filters {
		if err := onlyFields(f, "name", "typed_config"); err != nil {
			return nil, err
		}
		switch f.GetName() {
		case extAuthzName:
			if i != 0 {
				return nil, fmt.Errorf("http_filters: %s must come first", extAuthzName)
			}
			pb, err := unpack(f.GetTypedConfig(), &extauthzv3.ExtAuthz{})
			if err != nil {
				return nil, fmt.Errorf("%s: %w", extAuthzName, err)
			}
			if c.extAuthz, err = translateExtAuthz(pb); err != nil {
				return nil, err
			}
		case extProcName:
			if c.extProc != nil {
				return nil, fmt.Errorf("http_filters: %s appears twice", extProcName)
			}
			pb, err := unpack(f.GetTypedConfig(), &procfilterv3.ExternalProcessor{})
			if err != nil {
				return nil, fmt.Errorf("%s: %w", extProcName, err)
			}
			if c.extProc, err = translateExtProc(pb); err != nil {
				return nil, err
			}
		case routerName:
			if i != len(filters)-1 {
				return nil, fmt.Errorf("http_filters: %s must be last", routerName)
			}
			pb, err := unpack(f.GetTypedConfig(), &routerv3.Router{})
			if err != nil {
				return nil, fmt.Errorf("%s: %w", routerName, err)
			}
			if err := onlyFields(pb, "suppress_envoy_headers"); err != nil {
				return nil, err
			}
			c.suppressEnvoyHeaders = pb.GetSuppressEnvoyHeaders()
		default:
			return nil, fmt.Errorf("http_filters: filter %q is not supported by the data plane", f.GetName())
		}
	}
	return c, nil
}

// extAuthzConfig is the ext_authz filter's behaviour.
type extAuthzConfig struct {
	cluster          string
	timeout          time.Duration
	statusOnError    int
	failureModeAllow bool
	peerCertificate  bool
	// withBody is with_request_body; nil when the body is not sent.
	withBody *bodySettings
}

type bodySettings struct {
	maxBytes     int
	allowPartial bool
	packAsBytes  bool
}

func translateExtAuthz(pb *extauthzv3.ExtAuthz) (*extAuthzConfig, error) {
	if err := onlyFields(pb, "grpc_service", "transport_api_version", "failure_mode_allow", "status_on_error",
		"include_peer_certificate", "with_request_body"); err != nil {
		return nil, err
	}
	if pb.GetTransportApiVersion() != corev3.ApiVersion_V3 {
		return nil, fmt.Errorf("%s: transport_api_version must be V3", extAuthzName)
	}
	cluster, timeout, err := grpcTarget(pb.GetGrpcService())
	if err != nil {
		return nil, fmt.Errorf("%s: %w", extAuthzName, err)
	}
	c := &extAuthzConfig{
		cluster:          cluster,
		timeout:          timeout,
		statusOnError:    403, // Envoy's default
		failureModeAllow: pb.GetFailureModeAllow(),
		peerCertificate:  pb.GetIncludePeerCertificate(),
	}
	if s := pb.GetStatusOnError(); s != nil && s.GetCode() >= 100 && s.GetCode() <= 511 {
		c.statusOnError = int(s.GetCode()) // out of range stays 403, as in Envoy
	}
	if b := pb.GetWithRequestBody(); b != nil {
		if err := onlyFields(b, "max_request_bytes", "allow_partial_message", "pack_as_bytes"); err != nil {
			return nil, err
		}
		c.withBody = &bodySettings{maxBytes: int(b.GetMaxRequestBytes()), allowPartial: b.GetAllowPartialMessage(), packAsBytes: b.GetPackAsBytes()}
	}
	return c, nil
}

func grpcTarget(g *corev3.GrpcService) (string, time.Duration, error) {
	if err := onlyFields(g, "envoy_grpc", "timeout"); err != nil {
		return "", 0, err
	}
	eg := g.GetEnvoyGrpc()
	if eg == nil {
		return "", 0, fmt.Errorf("grpc_service: only envoy_grpc is supported")
	}
	if err := onlyFields(eg, "cluster_name"); err != nil {
		return "", 0, err
	}
	return eg.GetClusterName(), dur(g.GetTimeout(), 200*time.Millisecond), nil
}

// processingMode says which messages ext_proc sends. Trailer modes are
// accepted and never matter: over HTTP/1 Envoy's codec drops trailers
// before any filter sees them (enable_trailers false).
type processingMode struct {
	requestHeaders, responseHeaders bool
	requestBody, responseBody       procfilterv3.ProcessingMode_BodySendMode
}

func translateMode(m *procfilterv3.ProcessingMode) (processingMode, error) {
	pm := processingMode{
		requestHeaders:  m.GetRequestHeaderMode() != procfilterv3.ProcessingMode_SKIP,
		responseHeaders: m.GetResponseHeaderMode() != procfilterv3.ProcessingMode_SKIP,
		requestBody:     m.GetRequestBodyMode(),
		responseBody:    m.GetResponseBodyMode(),
	}
	for _, b := range []procfilterv3.ProcessingMode_BodySendMode{pm.requestBody, pm.responseBody} {
		switch b {
		case procfilterv3.ProcessingMode_NONE, procfilterv3.ProcessingMode_BUFFERED,
			procfilterv3.ProcessingMode_STREAMED, procfilterv3.ProcessingMode_BUFFERED_PARTIAL:
		default:
			return pm, fmt.Errorf("processing_mode: body mode %s is not supported by the data plane", b)
		}
	}
	return pm, nil
}

// extProcConfig is the ext_proc filter's behaviour.
type extProcConfig struct {
	cluster           string
	mode              processingMode
	messageTimeout    time.Duration
	maxMessageTimeout time.Duration
	failureModeAllow  bool
	allowModeOverride bool
	statusOnError     int
	forwardNamespaces []string
	receiveNamespaces []string
}

func translateExtProc(pb *procfilterv3.ExternalProcessor) (*extProcConfig, error) {
	if err := onlyFields(pb, "grpc_service", "failure_mode_allow", "processing_mode", "message_timeout",
		"max_message_timeout", "allow_mode_override", "metadata_options", "status_on_error"); err != nil {
		return nil, err
	}
	cluster, _, err := grpcTarget(pb.GetGrpcService())
	if err != nil {
		return nil, fmt.Errorf("%s: %w", extProcName, err)
	}
	mode, err := translateMode(pb.GetProcessingMode())
	if err != nil {
		return nil, fmt.Errorf("%s: %w", extProcName, err)
	}
	mo := pb.GetMetadataOptions()
	if mo != nil {
		if err := onlyFields(mo, "forwarding_namespaces", "receiving_namespaces"); err != nil {
			return nil, err
		}
		for _, ns := range []*procfilterv3.MetadataOptions_MetadataNamespaces{mo.GetForwardingNamespaces(), mo.GetReceivingNamespaces()} {
			if ns != nil {
				if err := onlyFields(ns, "untyped"); err != nil {
					return nil, err
				}
			}
		}
	}
	c := &extProcConfig{
		cluster:           cluster,
		mode:              mode,
		messageTimeout:    dur(pb.GetMessageTimeout(), 200*time.Millisecond),
		maxMessageTimeout: dur(pb.GetMaxMessageTimeout(), 0),
		failureModeAllow:  pb.GetFailureModeAllow(),
		allowModeOverride: pb.GetAllowModeOverride(),
		statusOnError:     500, // Envoy's default
		forwardNamespaces: mo.GetForwardingNamespaces().GetUntyped(),
		receiveNamespaces: mo.GetReceivingNamespaces().GetUntyped(),
	}
	if s := pb.GetStatusOnError(); s != nil {
		c.statusOnError = int(s.GetCode())
	}
	return c, nil
}

// routeTable is one route configuration.
type routeTable struct {
	name           string
	vhosts         []*virtualHost
	headersRemoved []string
}

type virtualHost struct {
	name    string
	domains []string
	routes  []*route
}

type route struct {
	name string
	// exactly one of prefix and path
	prefix, path string
	// action: cluster or direct response
	cluster       string
	prefixRewrite string
	hostRewrite   string
	timeout       time.Duration
	idleTimeout   time.Duration
	direct        *directResponse
	// per-filter settings
	authzDisabled bool
	contextExt    map[string]string
	// withBody is the route's with_request_body (check_settings), which
	// overrides the filter's; nil for none.
	withBody     *bodySettings
	procDisabled bool
	// upgrades are the upgrade types the route allows (upgrade_configs),
	// lower-case.
	upgrades map[string]bool
}

type directResponse struct {
	status int
	body   string
}

func translateRoutes(rc *routev3.RouteConfiguration) (*routeTable, error) {
	if err := validated(rc); err != nil {
		return nil, err
	}
	if err := onlyFields(rc, "name", "virtual_hosts", "request_headers_to_remove"); err != nil {
		return nil, err
	}
	t := &routeTable{name: rc.GetName()}
	for _, h := range rc.GetRequestHeadersToRemove() {
		t.headersRemoved = append(t.headersRemoved, strings.ToLower(h))
	}
	for _, vh := range rc.GetVirtualHosts() {
		if err := onlyFields(vh, "name", "domains", "routes"); err != nil {
			return nil, err
		}
		v := &virtualHost{name: vh.GetName()}
		for _, d := range vh.GetDomains() {
			if d != "*" && strings.Contains(d, "*") {
				return nil, fmt.Errorf("virtual host %q: wildcard domain %q is not supported", vh.GetName(), d)
			}
			v.domains = append(v.domains, asciiLower(d))
		}
		for _, r := range vh.GetRoutes() {
			rt, err := translateRoute(r)
			if err != nil {
				return nil, fmt.Errorf("virtual host %q: %w", vh.GetName(), err)
			}
			v.routes = append(v.routes, rt)
		}
		t.vhosts = append(t.vhosts, v)
	}
	return t, nil
}

func translateRoute(r *routev3.Route) (*route, error) {
	if err := onlyFields(r, "name", "match", "route", "direct_response", "typed_per_filter_config"); err != nil {
		return nil, err
	}
	m := r.GetMatch()
	if err := onlyFields(m, "prefix", "path"); err != nil {
		return nil, fmt.Errorf("route %q: %w", r.GetName(), err)
	}
	rt := &route{name: r.GetName(), prefix: m.GetPrefix(), path: m.GetPath()}
	if _, ok := m.GetPathSpecifier().(*routev3.RouteMatch_Prefix); !ok && rt.path == "" {
		return nil, fmt.Errorf("route %q: a prefix or path match is required", r.GetName())
	}
	switch a := r.GetAction().(type) {
	case *routev3.Route_Route:
		ra := a.Route
		if err := onlyFields(ra, "cluster", "prefix_rewrite", "host_rewrite_literal", "timeout", "idle_timeout", "upgrade_configs"); err != nil {
			return nil, fmt.Errorf("route %q: %w", r.GetName(), err)
		}
		for _, u := range ra.GetUpgradeConfigs() {
			if err := onlyFields(u, "upgrade_type", "enabled"); err != nil {
				return nil, fmt.Errorf("route %q: %w", r.GetName(), err)
			}
			if u.GetEnabled() == nil || u.GetEnabled().GetValue() {
				if rt.upgrades == nil {
					rt.upgrades = map[string]bool{}
				}
				rt.upgrades[strings.ToLower(u.GetUpgradeType())] = true
			}
		}
		rt.cluster = ra.GetCluster()
		rt.prefixRewrite = ra.GetPrefixRewrite()
		rt.hostRewrite = ra.GetHostRewriteLiteral()
		rt.timeout = dur(ra.GetTimeout(), 15*time.Second) // Envoy's default route timeout
		rt.idleTimeout = dur(ra.GetIdleTimeout(), 0)
	case *routev3.Route_DirectResponse:
		if err := onlyFields(a.DirectResponse, "status", "body"); err != nil {
			return nil, fmt.Errorf("route %q: %w", r.GetName(), err)
		}
		d := &directResponse{status: int(a.DirectResponse.GetStatus())}
		if b := a.DirectResponse.GetBody(); b != nil {
			if err := onlyFields(b, "inline_string"); err != nil {
				return nil, fmt.Errorf("route %q: %w", r.GetName(), err)
			}
			d.body = b.GetInlineString()
		}
		rt.direct = d
	default:
		return nil, fmt.Errorf("route %q: action %T is not supported", r.GetName(), a)
	}
	for name, cfg := range r.GetTypedPerFilterConfig() {
		switch name {
		case extAuthzName:
			pb, err := unpack(cfg, &extauthzv3.ExtAuthzPerRoute{})
			if err != nil {
				return nil, fmt.Errorf("route %q: %w", r.GetName(), err)
			}
			if cs := pb.GetCheckSettings(); cs != nil {
				if err := onlyFields(cs, "context_extensions", "with_request_body"); err != nil {
					return nil, fmt.Errorf("route %q: %w", r.GetName(), err)
				}
				rt.contextExt = cs.GetContextExtensions()
				if b := cs.GetWithRequestBody(); b != nil {
					// Overrides the filter's with_request_body on this route.
					if err := onlyFields(b, "max_request_bytes", "allow_partial_message", "pack_as_bytes"); err != nil {
						return nil, fmt.Errorf("route %q: %w", r.GetName(), err)
					}
					rt.withBody = &bodySettings{maxBytes: int(b.GetMaxRequestBytes()), allowPartial: b.GetAllowPartialMessage(), packAsBytes: b.GetPackAsBytes()}
				}
			}
			rt.authzDisabled = pb.GetDisabled()
		case extProcName:
			pb, err := unpack(cfg, &procfilterv3.ExtProcPerRoute{})
			if err != nil {
				return nil, fmt.Errorf("route %q: %w", r.GetName(), err)
			}
			if pb.GetOverrides() != nil {
				return nil, fmt.Errorf("route %q: ext_proc overrides are not supported", r.GetName())
			}
			rt.procDisabled = pb.GetDisabled()
		default:
			return nil, fmt.Errorf("route %q: per-filter config for %q is not supported", r.GetName(), name)
		}
	}
	return rt, nil
}

// translateTLS reads the upstream TLS Custos emits: SNI, a trusted CA (a
// file, or a validation context secret), exact DNS subject alt names, a
// client certificate secret and ALPN. Secrets are named only: as with
// Envoy's static_resources.secrets, the data plane holds them itself
// (Options.Secrets); none travels over xDS. Anything else (pinning, inline
// keys, SDS servers, TLS parameters) is refused rather than ignored.
func translateTLS(ts *corev3.TransportSocket) (*tlsSettings, error) {
	if err := onlyFields(ts, "name", "typed_config"); err != nil {
		return nil, err
	}
	tctx, err := unpack(ts.GetTypedConfig(), &tlsv3.UpstreamTlsContext{})
	if err != nil {
		return nil, err
	}
	if err := onlyFields(tctx, "sni", "common_tls_context"); err != nil {
		return nil, err
	}
	ctc := tctx.GetCommonTlsContext()
	if err := onlyFields(ctc, "validation_context", "validation_context_sds_secret_config",
		"tls_certificate_sds_secret_configs", "alpn_protocols"); err != nil {
		return nil, err
	}
	tl := &tlsSettings{sni: tctx.GetSni()}
	switch sc := ctc.GetTlsCertificateSdsSecretConfigs(); len(sc) {
	case 0:
	case 1:
		if err := onlyFields(sc[0], "name"); err != nil {
			return nil, fmt.Errorf("tls_certificate_sds_secret_configs: only static secrets (a name, no sds_config): %w", err)
		}
		tl.certSecret = sc[0].GetName()
	default:
		return nil, fmt.Errorf("tls_certificate_sds_secret_configs: at most one certificate is supported")
	}
	if sc := ctc.GetValidationContextSdsSecretConfig(); sc != nil {
		if err := onlyFields(sc, "name"); err != nil {
			return nil, fmt.Errorf("validation_context_sds_secret_config: only static secrets (a name, no sds_config): %w", err)
		}
		tl.caSecret = sc.GetName()
		return tl, nil
	}
	vc := ctc.GetValidationContext()
	if err := onlyFields(vc, "trusted_ca", "match_typed_subject_alt_names"); err != nil {
		return nil, err
	}
	if vc.GetTrustedCa().GetFilename() == "" {
		return nil, fmt.Errorf("TLS without a trusted_ca file is not supported (it would not verify the upstream)")
	}
	tl.caFile = vc.GetTrustedCa().GetFilename()
	for _, m := range vc.GetMatchTypedSubjectAltNames() {
		if m.GetSanType() != tlsv3.SubjectAltNameMatcher_DNS {
			return nil, fmt.Errorf("subject alt name matcher %s is not supported (DNS only)", m.GetSanType())
		}
		if err := onlyFields(m.GetMatcher(), "exact"); err != nil {
			return nil, err
		}
		tl.sanDNS = append(tl.sanDNS, m.GetMatcher().GetExact())
	}
	b, err := os.ReadFile(tl.caFile)
	if err != nil {
		return nil, fmt.Errorf("trusted_ca: %w", err)
	}
	if !x509.NewCertPool().AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("trusted_ca %s holds no PEM certificate", tl.caFile)
	}
	tl.caBytes = b
	return tl, nil
}

// clusterConfig is one upstream cluster.
type clusterConfig struct {
	name           string
	addr           string // host:port of the one endpoint
	dns            bool
	http2          bool
	connectTimeout time.Duration
	maxRequests    int
	tls            *tlsSettings
}

type tlsSettings struct {
	sni     string
	caFile  string
	sanDNS  []string
	caBytes []byte
	// certSecret and caSecret name static secrets (Options.Secrets).
	certSecret, caSecret string
}

func translateCluster(c *clusterv3.Cluster) (*clusterConfig, error) {
	if err := validated(c); err != nil {
		return nil, err
	}
	if err := onlyFields(c, "name", "type", "connect_timeout", "load_assignment", "typed_extension_protocol_options",
		"circuit_breakers", "dns_lookup_family", "transport_socket"); err != nil {
		return nil, fmt.Errorf("cluster %q: %w", c.GetName(), err)
	}
	cc := &clusterConfig{name: c.GetName(), connectTimeout: dur(c.GetConnectTimeout(), 5*time.Second), maxRequests: 1024}
	switch c.GetType() {
	case clusterv3.Cluster_STATIC:
	case clusterv3.Cluster_STRICT_DNS:
		cc.dns = true
	default:
		return nil, fmt.Errorf("cluster %q: type %s is not supported", c.GetName(), c.GetType())
	}
	eps := c.GetLoadAssignment().GetEndpoints()
	if len(eps) != 1 || len(eps[0].GetLbEndpoints()) != 1 {
		return nil, fmt.Errorf("cluster %q: exactly one endpoint is supported", c.GetName())
	}
	sa := eps[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetSocketAddress()
	if sa == nil {
		return nil, fmt.Errorf("cluster %q: the endpoint needs a socket address", c.GetName())
	}
	cc.addr = net.JoinHostPort(sa.GetAddress(), strconv.Itoa(int(sa.GetPortValue())))
	for k, v := range c.GetTypedExtensionProtocolOptions() {
		if k != "envoy.extensions.upstreams.http.v3.HttpProtocolOptions" {
			return nil, fmt.Errorf("cluster %q: protocol options %q are not supported", c.GetName(), k)
		}
		opts, err := unpack(v, &upstreamhttpv3.HttpProtocolOptions{})
		if err != nil {
			return nil, fmt.Errorf("cluster %q: %w", c.GetName(), err)
		}
		if opts.GetExplicitHttpConfig().GetHttp2ProtocolOptions() == nil {
			return nil, fmt.Errorf("cluster %q: only explicit HTTP/2 protocol options are supported", c.GetName())
		}
		cc.http2 = true
	}
	for _, t := range c.GetCircuitBreakers().GetThresholds() {
		if t.GetPriority() == corev3.RoutingPriority_DEFAULT && t.GetMaxRequests() != nil {
			cc.maxRequests = int(t.GetMaxRequests().GetValue())
		}
	}
	if ts := c.GetTransportSocket(); ts != nil {
		tl, err := translateTLS(ts)
		if err != nil {
			return nil, fmt.Errorf("cluster %q: %w", c.GetName(), err)
		}
		cc.tls = tl
	}
	return cc, nil
}
