package xds

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/custos-dev/custos/config"
	"github.com/custos-dev/custos/filters/inspect"
	"github.com/custos-dev/custos/names"
)

const testConfig = `
listen:
  grpc: 0.0.0.0:9000
  xds: 127.0.0.1:18000
  http: 127.0.0.1:9090
  dataplane: 127.0.0.1:10000
connections:
  - name: customers
    upstream: http://127.0.0.1:8081
    hosts: [customers.internal, crm.internal]
  - name: storage
    upstream: https://acct.blob.core.windows.net/container
  - name: warehouse
    upstream: http://warehouse.internal:8082
    kind: sql-http
    statement_from: json:/query
approvals:
  timeout: 10m
`

func testCfg(t *testing.T) *config.Config {
	t.Helper()
	cfg, err := config.Parse([]byte(testConfig))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// validateDeep runs ValidateAll on m and on every Any inside it, recursively:
// PGV does not look inside Any, so this is what Envoy would check on load.
func validateDeep(t *testing.T, m proto.Message, where string) {
	t.Helper()
	if v, ok := m.(interface{ ValidateAll() error }); ok {
		if err := v.ValidateAll(); err != nil {
			t.Fatalf("%s: %v", where, err)
		}
	}
	m.ProtoReflect().Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		visit := func(pm protoreflect.Message) {
			msg := pm.Interface()
			if a, ok := msg.(*anypb.Any); ok {
				inner, err := a.UnmarshalNew()
				if err != nil {
					t.Fatalf("%s.%s: unpack %s: %v", where, fd.Name(), a.GetTypeUrl(), err)
				}
				validateDeep(t, inner, where+"."+string(fd.Name())+"<"+a.GetTypeUrl()+">")
				return
			}
			validateDeep(t, msg, where+"."+string(fd.Name()))
		}
		switch {
		case fd.IsList() && fd.Kind() == protoreflect.MessageKind:
			for i := 0; i < v.List().Len(); i++ {
				visit(v.List().Get(i).Message())
			}
		case fd.IsMap() && fd.MapValue().Kind() == protoreflect.MessageKind:
			v.Map().Range(func(_ protoreflect.MapKey, mv protoreflect.Value) bool {
				visit(mv.Message())
				return true
			})
		case !fd.IsList() && !fd.IsMap() && fd.Kind() == protoreflect.MessageKind:
			visit(v.Message())
		}
		return true
	})
}

func TestSnapshotIsConsistentAndEveryResourceValidates(t *testing.T) {
	snap, err := Snapshot(testCfg(t), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := snap.Consistent(); err != nil {
		t.Fatal(err)
	}
	for _, typ := range []string{resource.ListenerType, resource.RouteType, resource.ClusterType} {
		rs := snap.GetResources(typ)
		if len(rs) == 0 {
			t.Fatalf("no %s resources", typ)
		}
		for name, r := range rs {
			validateDeep(t, r, typ+"/"+name)
		}
	}
	if got := len(snap.GetResources(resource.ClusterType)); got != 4 {
		t.Fatalf("%d clusters, want custos-grpc plus one per connection (4)", got)
	}
}

func TestSnapshotVersionFollowsContent(t *testing.T) {
	a, err := Snapshot(testCfg(t), Options{})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := Snapshot(testCfg(t), Options{})
	if a.GetVersion(resource.ListenerType) != b.GetVersion(resource.ListenerType) {
		t.Fatal("the same configuration produced two versions")
	}
	cfg := testCfg(t)
	cfg.Connections = cfg.Connections[:1]
	c, _ := Snapshot(cfg, Options{})
	if c.GetVersion(resource.ListenerType) == a.GetVersion(resource.ListenerType) {
		t.Fatal("a changed configuration kept its version")
	}
}

func listener(t *testing.T, cfg *config.Config) *hcmv3.HttpConnectionManager {
	t.Helper()
	res, err := Resources(cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	l := res[resource.ListenerType][0].(*listenerv3.Listener)
	hcm := &hcmv3.HttpConnectionManager{}
	if err := l.GetFilterChains()[0].GetFilters()[0].GetTypedConfig().UnmarshalTo(hcm); err != nil {
		t.Fatal(err)
	}
	return hcm
}

func TestListenerConnectionManagerSettings(t *testing.T) {
	hcm := listener(t, testCfg(t))
	var filters []string
	for _, f := range hcm.GetHttpFilters() {
		filters = append(filters, f.GetName())
	}
	if got := strings.Join(filters, ","); got != names.ExtAuthzFilter+","+names.ExtProcFilter+","+names.RouterFilter {
		t.Fatalf("filters %s, want ext_authz, ext_proc, router", got)
	}
	if !hcm.GetUseRemoteAddress().GetValue() || !hcm.GetNormalizePath().GetValue() || !hcm.GetMergeSlashes() {
		t.Fatal("use_remote_address, normalize_path and merge_slashes must be on")
	}
	// Escaped slashes reach Check, which refuses them with a request id and
	// a record; Envoy's own REJECT_REQUEST answers before it assigns a
	// request id and echoes the agent's x-request-id.
	if hcm.GetPathWithEscapedSlashesAction() != hcmv3.HttpConnectionManager_KEEP_UNCHANGED {
		t.Fatal("escaped slashes must be kept for Check to refuse")
	}
	if !hcm.GetStripTrailingHostDot() {
		t.Fatal("strip_trailing_host_dot must be on")
	}
	if hcm.GetRds().GetRouteConfigName() != names.RouteConfigName || hcm.GetRds().GetConfigSource().GetAds() == nil {
		t.Fatal("routes must come over RDS from ADS")
	}
	// stream_idle_timeout outlasts the longest hold (approvals.timeout 10m).
	if d := hcm.GetStreamIdleTimeout().AsDuration(); d <= testCfg(t).Approvals.Timeout {
		t.Fatalf("stream_idle_timeout %s does not outlast a hold", d)
	}
	// request_timeout runs until every decoding filter is done, so a hold
	// counts against it: it is off (or above the hold), never below. The
	// headers get a short timeout of their own.
	if d := hcm.GetRequestTimeout().AsDuration(); d != 0 && d <= testCfg(t).Approvals.Timeout+names.HoldMargin {
		t.Fatalf("request_timeout %s would cut a hold", d)
	}
	if d := hcm.GetRequestHeadersTimeout().AsDuration(); d != names.RequestHeadersTimeout {
		t.Fatalf("request_headers_timeout %s, want %s", d, names.RequestHeadersTimeout)
	}
	// An idle keep-alive connection (no request under way: a hold is one)
	// is closed after names.IdleTimeout, not Envoy's default hour.
	if d := hcm.GetCommonHttpProtocolOptions().GetIdleTimeout().AsDuration(); d != names.IdleTimeout {
		t.Fatalf("idle_timeout %s, want %s", d, names.IdleTimeout)
	}
	authz := &extauthzv3.ExtAuthz{}
	if err := hcm.GetHttpFilters()[0].GetTypedConfig().UnmarshalTo(authz); err != nil {
		t.Fatal(err)
	}
	if authz.GetStatusOnError().GetCode() != 503 || authz.GetFailureModeAllow() {
		t.Fatal("ext_authz must fail closed with 503")
	}
	proc := &extprocv3.ExternalProcessor{}
	if err := hcm.GetHttpFilters()[1].GetTypedConfig().UnmarshalTo(proc); err != nil {
		t.Fatal(err)
	}
	if proc.GetFailureModeAllow() {
		t.Fatal("ext_proc must fail closed")
	}
	if ns := proc.GetMetadataOptions().GetForwardingNamespaces().GetUntyped(); len(ns) != 1 || ns[0] != names.ExtAuthzFilter {
		t.Fatalf("forwarding namespaces %v, want the ext_authz namespace", ns)
	}
	if proc.GetMaxMessageTimeout().AsDuration() <= testCfg(t).Approvals.Timeout {
		t.Fatal("max_message_timeout must outlast a hold")
	}
	codes := map[uint32]bool{}
	for _, m := range hcm.GetLocalReplyConfig().GetMappers() {
		and := m.GetFilter().GetAndFilter().GetFilters()
		if len(and) != 3 || and[1].GetMetadataFilter().GetMatcher().GetFilter() != names.ExtAuthzFilter ||
			and[2].GetMetadataFilter().GetMatcher().GetFilter() != names.ReceivingNamespace {
			t.Fatalf("mapper filter %v: want status and not denied by Check nor by Process", m.GetFilter())
		}
		codes[and[0].GetStatusCodeFilter().GetComparison().GetValue().GetDefaultValue()] = true
	}
	for _, c := range []uint32{400, 404, 413, 431, 500, 502, 503, 504} {
		if !codes[c] {
			t.Errorf("no local reply mapper for %d", c)
		}
	}
	for _, c := range []uint32{401, 403} {
		if codes[c] {
			t.Errorf("a mapper for %d would rewrite Custos' own denials", c)
		}
	}
}

func routeConfig(t *testing.T) *routev3.RouteConfiguration {
	t.Helper()
	res, err := Resources(testCfg(t), Options{})
	if err != nil {
		t.Fatal(err)
	}
	return res[resource.RouteType][0].(*routev3.RouteConfiguration)
}

func TestRoutesPerConnection(t *testing.T) {
	rc := routeConfig(t)
	var byPath *routev3.VirtualHost
	hostVH := map[string]*routev3.VirtualHost{}
	for _, vh := range rc.GetVirtualHosts() {
		if vh.GetName() == names.CatchAllVirtualHost {
			byPath = vh
		} else {
			hostVH[vh.GetName()] = vh
		}
	}
	if byPath == nil || len(byPath.GetDomains()) != 1 || byPath.GetDomains()[0] != "*" {
		t.Fatal("no catch-all virtual host")
	}
	if vh := hostVH[names.VirtualHostName("customers")]; vh == nil || strings.Join(vh.GetDomains(), ",") != "customers.internal,crm.internal" {
		t.Fatalf("no host virtual host for customers: %v", vh)
	}
	if len(hostVH) != 1 {
		t.Fatalf("host virtual hosts %d, want only customers' (the others have no hosts)", len(hostVH))
	}
	want := map[string]string{ // match → prefix_rewrite
		"/customers/": "/", "/customers": "/",
		"/storage/": "/container/", "/storage": "/container/",
		"/warehouse/": "/", "/warehouse": "/",
	}
	routes := byPath.GetRoutes()
	for _, r := range routes[:len(routes)-1] {
		m := r.GetMatch().GetPrefix() + r.GetMatch().GetPath()
		rw, ok := want[m]
		if !ok {
			t.Errorf("unexpected route %q", m)
			continue
		}
		delete(want, m)
		if got := r.GetRoute().GetPrefixRewrite(); got != rw {
			t.Errorf("%s: prefix_rewrite %q, want %q", m, got, rw)
		}
		if r.GetRoute().GetCluster() != names.ClusterName(r.GetName()) {
			t.Errorf("%s: cluster %q", m, r.GetRoute().GetCluster())
		}
		per := &extauthzv3.ExtAuthzPerRoute{}
		if err := r.GetTypedPerFilterConfig()[names.ExtAuthzFilter].UnmarshalTo(per); err != nil {
			t.Fatal(err)
		}
		ext := per.GetCheckSettings().GetContextExtensions()
		if ext[names.ContextConnection] != r.GetName() || ext[names.ContextExtProc] != "on" {
			t.Errorf("%s: context_extensions %v", m, ext)
		}
	}
	if len(want) > 0 {
		t.Errorf("missing routes: %v", want)
	}
	last := routes[len(routes)-1]
	if last.GetDirectResponse().GetStatus() != 404 || last.GetMatch().GetPrefix() != "/" {
		t.Fatal("the last route must be the catch-all 404")
	}
	for _, f := range []string{names.ExtAuthzFilter, names.ExtProcFilter} {
		if last.GetTypedPerFilterConfig()[f] == nil {
			t.Errorf("the 404 route does not disable %s", f)
		}
	}
	found := false
	for _, h := range rc.GetRequestHeadersToRemove() {
		if h == "x-custos-request-id" {
			found = true
		}
	}
	if !found {
		t.Fatal("incoming x-custos-request-id is not stripped")
	}
}

func TestClusters(t *testing.T) {
	res, err := Resources(testCfg(t), Options{})
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]*clusterv3.Cluster{}
	for _, r := range res[resource.ClusterType] {
		c := r.(*clusterv3.Cluster)
		byName[c.GetName()] = c
	}
	g := byName[names.GRPCCluster]
	if g == nil || g.GetTypedExtensionProtocolOptions()[names.HTTPProtocolOptions] == nil {
		t.Fatal("the gRPC cluster must be HTTP/2")
	}
	ep := g.GetLoadAssignment().GetEndpoints()[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetSocketAddress()
	if ep.GetAddress() != "127.0.0.1" || ep.GetPortValue() != 9000 {
		t.Fatalf("gRPC endpoint %s:%d: 0.0.0.0 must become 127.0.0.1", ep.GetAddress(), ep.GetPortValue())
	}
	if g.GetCircuitBreakers().GetThresholds()[0].GetMaxRequests().GetValue() < 1000 {
		t.Fatal("the gRPC cluster's circuit breakers are too small for held streams")
	}
	st := byName[names.ClusterName("storage")]
	if st.GetTransportSocket() == nil || st.GetType() != clusterv3.Cluster_STRICT_DNS {
		t.Fatal("an https upstream needs TLS and DNS")
	}
	wh := byName[names.ClusterName("warehouse")]
	port := wh.GetLoadAssignment().GetEndpoints()[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetSocketAddress().GetPortValue()
	if port != 8082 {
		t.Fatalf("warehouse port %d", port)
	}
}

func TestUpdateKeepsSnapshotOnError(t *testing.T) {
	s := NewServer(context.Background(), slog.New(slog.NewTextHandler(io.Discard, nil)), Options{})
	v, err := s.Update(context.Background(), testCfg(t))
	if err != nil || v == "" {
		t.Fatalf("update: %q %v", v, err)
	}
	bad := testCfg(t)
	bad.Listen.Dataplane = "nonsense"
	if _, err := s.Update(context.Background(), bad); err == nil {
		t.Fatal("an unbuildable configuration was accepted")
	}
	if s.Version() != v {
		t.Fatal("a rejected configuration changed the version")
	}
}

// The routes ask for request bodies exactly for the kinds whose inspectors
// read them.
func TestBodiesAreSentForTheKindsThatInspectThem(t *testing.T) {
	for _, k := range config.Kinds {
		if inspectsBody(k) != inspect.NeedsBody(k) {
			t.Errorf("kind %s: xds sends the body %v, the inspector needs it %v", k, inspectsBody(k), inspect.NeedsBody(k))
		}
	}
}
