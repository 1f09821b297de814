// Package names holds the names and limits that Custos' control plane, its
// gRPC services, the Go data plane and the tests must agree on: Envoy filter
// and resource names, the dynamic metadata namespace and keys that carry a
// verdict from Check to Process, the headers of the agent-facing contract,
// the route context_extensions keys, and the timeouts of the emitted
// configuration.
//
// It is a leaf: it imports nothing of the project, so every package may
// import it without pulling in another's dependencies.
package names

import "time"

// Resource names Custos' xDS emits.
const (
	// ListenerName is the one listener Custos emits.
	ListenerName = "custos"
	// RouteConfigName is the route configuration the listener loads over RDS.
	RouteConfigName = "custos-routes"
	// GRPCCluster is the HTTP/2 cluster of Custos' ext_authz and ext_proc services.
	GRPCCluster = "custos-grpc"
	// CatchAllVirtualHost answers every request by path prefix; its last route is the 404.
	CatchAllVirtualHost = "custos"
)

// ClusterName is the name of the cluster of connection name.
func ClusterName(connection string) string { return "conn-" + connection }

// VirtualHostName is the name of the host-matched virtual host of a connection.
func VirtualHostName(connection string) string { return "host-" + connection }

// Envoy filter and extension names.
const (
	// ExtAuthzFilter is Envoy's ext_authz filter name; it is also the dynamic
	// metadata namespace where Check's verdict lands.
	ExtAuthzFilter = "envoy.filters.http.ext_authz"
	// ExtProcFilter is Envoy's ext_proc filter name.
	ExtProcFilter = "envoy.filters.http.ext_proc"
	// RouterFilter is Envoy's router filter name.
	RouterFilter = "envoy.filters.http.router"
	// HCMFilter is Envoy's HTTP connection manager network filter name.
	HCMFilter = "envoy.filters.network.http_connection_manager"
	// HTTPProtocolOptions is the extension key for a cluster's upstream HTTP options.
	HTTPProtocolOptions = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
)

// Secrets the data plane holds itself (Envoy's bootstrap
// static_resources.secrets) for mutual TLS with Custos: the emitted gRPC
// cluster and the bootstrap's ADS cluster name them; no key travels over xDS.
const (
	// ClientCertSecret is the data plane's client certificate and key.
	ClientCertSecret = "custos_client_cert"
	// CustosCASecret is the CA that verifies Custos' server certificate.
	CustosCASecret = "custos_ca"
)

// Dynamic metadata.
const (
	// VerdictNamespace is the dynamic metadata namespace Check writes its
	// verdict to and ext_proc receives it from (forwarding_namespaces).
	VerdictNamespace = ExtAuthzFilter
	// ReceivingNamespace is where ext_proc replies may write dynamic metadata.
	ReceivingNamespace = "custos"
	// DeniedKey is the verdict key Check sets to true when it answers a
	// request itself; the listener's local reply mappers skip such replies so
	// Custos' own JSON reaches the agent unchanged.
	DeniedKey = "custos_denied"
)

// Route context_extensions keys: what a route Custos emits tells Check about
// how it routes (ext_authz CheckSettings.context_extensions).
const (
	// ContextConnection names the route's connection.
	ContextConnection = "connection"
	// ContextExtProc marks routes where Custos' xDS placed ext_proc ("on").
	ContextExtProc = "custos.extproc"
	// ContextPrefix is the path prefix (or the whole path) the route matched,
	// which its prefix_rewrite replaces; absent when the route rewrites
	// nothing.
	ContextPrefix = "custos.prefix"
	// ContextPrefixRewrite is the route's prefix_rewrite: what Envoy puts in
	// place of ContextPrefix before the request goes upstream.
	ContextPrefixRewrite = "custos.prefix_rewrite"
)

// Headers of the agent-facing contract.
const (
	// RequestIDHeader is the response header that carries the request id.
	RequestIDHeader = "x-custos-request-id"
	// MaskedHeader is the response header that says what was masked in a
	// buffered body: counts per entity, never a value (card=3,iban=1).
	MaskedHeader = "x-custos-masked"
	// EvidenceHeader is the response header that carries where the
	// request's decision was recorded (LOG_ID/INDEX).
	EvidenceHeader = "x-custos-evidence"
	// SessionHeader names the agent's run; an agent may send it.
	SessionHeader = "x-custos-session"
	// ApprovalIDHeader names an approval the agent retries with; an agent may send it.
	ApprovalIDHeader = "x-custos-approval-id"
	// EnvoyRequestIDHeader is the request id header Envoy and the upstream see.
	EnvoyRequestIDHeader = "x-request-id"
	// CustosHeaderPrefix starts every Custos header; incoming ones other than
	// SessionHeader and ApprovalIDHeader are removed.
	CustosHeaderPrefix = "x-custos-"
)

// StrippedHeaders are the Custos request headers removed before a request goes
// upstream (route configuration request_headers_to_remove). Check also removes
// any other incoming x-custos-* header it sees, except the two an agent may set.
var StrippedHeaders = []string{
	"x-custos-request-id",
	"x-custos-decision-id",
	"x-custos-principal",
	"x-custos-connection",
	"x-custos-mask-profile",
	"x-custos-grant",
}

// RequestIDFormat is the substitution command for the request id in local replies.
const RequestIDFormat = "%REQ(X-REQUEST-ID)%"

// Timeouts and limits the emitted configuration uses.
const (
	// AuthzTimeout bounds one Check call (grpc_service.timeout).
	AuthzTimeout = 2 * time.Second
	// MessageTimeout bounds each ext_proc reply that is not a hold.
	MessageTimeout = 2 * time.Second
	// HoldMargin is added to the approval timeout for every timer that must
	// outlast a hold, so that Custos' own answer at the end of a hold arrives
	// before Envoy gives up on the request.
	HoldMargin = 30 * time.Second
	// MaxRequestHeadersKB is the listener's request-header limit (431 above it).
	MaxRequestHeadersKB = 60
	// BodyLimitBytes is the buffer limit for bodies a filter buffers (413 above it).
	BodyLimitBytes = 1 << 20
	// MaxGRPCRequests sizes the circuit breakers of Custos' gRPC cluster; each
	// held request keeps one ext_proc stream open.
	MaxGRPCRequests = 65536
	// MaxUpstreamRequests sizes the circuit breakers of each connection's
	// cluster (connections, pending and active requests): above the
	// downstream connection cap, so stalled requests from one client fill
	// the cap before they can take every upstream slot.
	MaxUpstreamRequests = 16384
	// MaxDownstreamConnections caps the data plane's open downstream
	// connections (Envoy's overload manager
	// global_downstream_max_connections; the Go data plane likewise).
	MaxDownstreamConnections = 8192
	// RequestHeadersTimeout bounds how long a client may take to send its
	// request headers (request_headers_timeout). A hold runs after the
	// headers, so it is not counted.
	RequestHeadersTimeout = 10 * time.Second
	// IdleTimeout closes a downstream connection with no request under way
	// (common_http_protocol_options idle_timeout; Envoy's default is an
	// hour): an idle keep-alive connection does not hold one of the
	// MaxDownstreamConnections for long. A held request is under way, so a
	// hold is never idle. Above common clients' own idle timeouts (Go's 90
	// seconds), so a client closes first and does not race the close.
	IdleTimeout = 5 * time.Minute
)
