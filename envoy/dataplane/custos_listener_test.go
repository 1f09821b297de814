package dataplane_test

import (
	"testing"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	procfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"

	"github.com/custos-dev/custos/config"
	"github.com/custos-dev/custos/names"
	"github.com/custos-dev/custos/xds"
)

// custosSetup is the listener Custos' own xDS emits (xds.Resources): its
// connection manager settings, local_reply_config and the ext_authz,
// ext_proc and router filters as configured there, calling the scenario's
// scripted servers. The route is the harness's (one prefix route to the
// upstream), so the scenario's servers see every request.
func custosSetup(t *testing.T) setup {
	t.Helper()
	cfg, err := config.Parse([]byte(adsConfig))
	if err != nil {
		t.Fatal(err)
	}
	res, err := xds.Resources(cfg, xds.Options{})
	if err != nil {
		t.Fatal(err)
	}
	l := res[resource.ListenerType][0].(*listenerv3.Listener)
	custos := &hcmv3.HttpConnectionManager{}
	if err := l.GetFilterChains()[0].GetFilters()[0].GetTypedConfig().UnmarshalTo(custos); err != nil {
		t.Fatal(err)
	}
	s := setup{
		authz:  &extauthzv3.ExtAuthz{},
		proc:   &procfilterv3.ExternalProcessor{},
		router: &routerv3.Router{},
	}
	for _, f := range custos.GetHttpFilters() {
		var m proto.Message
		switch f.GetName() {
		case names.ExtAuthzFilter:
			m = s.authz
		case names.ExtProcFilter:
			m = s.proc
		case names.RouterFilter:
			m = s.router
		default:
			t.Fatalf("Custos emits a filter the harness does not know: %s", f.GetName())
		}
		if err := f.GetTypedConfig().UnmarshalTo(m); err != nil {
			t.Fatal(err)
		}
	}
	s.authz.GetGrpcService().GetEnvoyGrpc().ClusterName = grpcClusterName
	s.proc.GetGrpcService().GetEnvoyGrpc().ClusterName = grpcClusterName
	s.hcm = func(m *hcmv3.HttpConnectionManager) {
		rds, filters := m.RouteSpecifier, m.HttpFilters
		proto.Reset(m)
		proto.Merge(m, custos)
		m.StatPrefix, m.RouteSpecifier, m.HttpFilters = "test", rds, filters
	}
	return s
}
