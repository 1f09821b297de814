// Package xds turns a Custos configuration into the Envoy resources that put
// Custos in the data path (one listener, its routes, one cluster per upstream
// and one for Custos' own gRPC services), validates every message, and serves
// them over ADS from a go-control-plane snapshot cache, reloading on change.
//
// The same resources drive a production Envoy (envoy/bootstrap.yaml) and the
// Go data plane (envoy/dataplane) used by `custos dev` and the tests.
package xds

// Resource names shared by the control plane, the data plane and the tests.
const (
	// ListenerName is the one listener Custos emits.
	ListenerName = "custos"
	// RouteConfigName is the route configuration the listener loads over RDS.
	RouteConfigName = "custos-routes"
	// GRPCCluster is the HTTP/2 cluster of Custos' ext_authz and ext_proc services.
	GRPCCluster = "custos-grpc"
	// CatchAllVirtualHost answers every request by path prefix; its last route is the 404.
	CatchAllVirtualHost = "custos"

	// ExtAuthzFilter is Envoy's ext_authz filter name; it is also the dynamic
	// metadata namespace where Check's decision lands.
	ExtAuthzFilter = "envoy.filters.http.ext_authz"
	// ExtProcFilter is Envoy's ext_proc filter name.
	ExtProcFilter = "envoy.filters.http.ext_proc"
	// RouterFilter is Envoy's router filter name.
	RouterFilter = "envoy.filters.http.router"
	// HCMFilter is Envoy's HTTP connection manager network filter name.
	HCMFilter = "envoy.filters.network.http_connection_manager"
	// HTTPProtocolOptions is the extension key for a cluster's upstream HTTP options.
	HTTPProtocolOptions = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"

	// ReceivingNamespace is where ext_proc replies may write dynamic metadata.
	ReceivingNamespace = "custos"

	// ContextConnection is the context_extensions key naming a route's connection.
	ContextConnection = "connection"
	// ContextExtProc marks routes where Custos' xDS placed ext_proc ("on").
	ContextExtProc = "custos.extproc"
)

// ClusterName is the name of the cluster of connection name.
func ClusterName(connection string) string { return "conn-" + connection }

// VirtualHostName is the name of the host-matched virtual host of a connection.
func VirtualHostName(connection string) string { return "host-" + connection }

// StrippedHeaders are the Custos request headers removed before a request goes
// upstream (route configuration request_headers_to_remove). Check also removes
// any other incoming x-custos-* header it sees, except the two an agent may set:
// x-custos-session and x-custos-approval-id.
var StrippedHeaders = []string{
	"x-custos-request-id",
	"x-custos-decision-id",
	"x-custos-principal",
	"x-custos-connection",
	"x-custos-mask-profile",
	"x-custos-grant",
}
