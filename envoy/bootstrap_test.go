package envoy_test

// These tests read the deployment files (envoy/bootstrap.yaml, compose.yaml,
// examples/compose.yaml, envoy/istio/*.yaml) with Envoy's own protos, so that
// a misspelt field, a wrong enum or an Any of an unknown type fails here
// rather than when Envoy or istiod loads the file. They also check that the
// files agree with each other and with what Custos' xDS emits.

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	// The overload manager's downstream connection monitor, named in the bootstrap.
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/resource_monitors/downstream_connections/v3"
	upstreamhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"go.yaml.in/yaml/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/custos-dev/custos/config"
	"github.com/custos-dev/custos/names"
	"github.com/custos-dev/custos/xds"
)

const (
	bootstrapFile     = "bootstrap.yaml"
	composeFile       = "../compose.yaml"
	composeConfigFile = "../examples/compose.yaml"
	istioDir          = "istio"

	// The Istio files are written for approvals.timeout 5m (see istio/README.md).
	istioApprovalTimeout = 5 * time.Minute
	// The custos Service the Istio files point at.
	istioCustosHost = "custos.custos-system.svc.cluster.local"
	istioCustosPort = 9000
)

// validator is what protoc-gen-validate generates on every Envoy message.
type validator interface{ ValidateAll() error }

func validateAll(t *testing.T, what string, m proto.Message) {
	t.Helper()
	v, ok := m.(validator)
	if !ok {
		t.Fatalf("%s: %T has no ValidateAll", what, m)
	}
	if err := v.ValidateAll(); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// checkNoDeprecatedFields fails on any field set in m, or in a message packed
// in an Any inside it, that Envoy's protos mark deprecated: Envoy warns about
// those and eventually refuses them.
func checkNoDeprecatedFields(t *testing.T, what string, m proto.Message) {
	t.Helper()
	var walk func(path string, m protoreflect.Message)
	walk = func(path string, m protoreflect.Message) {
		if a, ok := m.Interface().(*anypb.Any); ok {
			inner, err := a.UnmarshalNew()
			if err != nil {
				t.Errorf("%s: %s: %v", what, path, err)
				return
			}
			walk(path+"("+string(inner.ProtoReflect().Descriptor().FullName())+")", inner.ProtoReflect())
			return
		}
		m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
			p := path + "." + string(fd.Name())
			if opts, ok := fd.Options().(*descriptorpb.FieldOptions); ok && opts.GetDeprecated() {
				t.Errorf("%s: %s is deprecated", what, p)
			}
			switch {
			case fd.IsList() && fd.Message() != nil:
				for i := 0; i < v.List().Len(); i++ {
					walk(p+"["+strconv.Itoa(i)+"]", v.List().Get(i).Message())
				}
			case fd.IsMap() && fd.MapValue().Message() != nil:
				v.Map().Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
					walk(p+"["+k.String()+"]", mv.Message())
					return true
				})
			case !fd.IsList() && !fd.IsMap() && fd.Message() != nil:
				walk(p, v.Message())
			}
			return true
		})
	}
	walk(string(m.ProtoReflect().Descriptor().Name()), m.ProtoReflect())
}

// yamlDocs reads every YAML document of path as generic values.
func yamlDocs(t *testing.T, path string) []map[string]any {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var docs []map[string]any
	for {
		var doc map[string]any
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if doc != nil {
			docs = append(docs, doc)
		}
	}
	if len(docs) == 0 {
		t.Fatalf("%s: no YAML documents", path)
	}
	return docs
}

func yamlDoc(t *testing.T, path string) map[string]any {
	t.Helper()
	docs := yamlDocs(t, path)
	if len(docs) != 1 {
		t.Fatalf("%s: %d YAML documents, want 1", path, len(docs))
	}
	return docs[0]
}

// unmarshalProto converts a generic YAML value to JSON and reads it with
// protojson: unknown fields, bad enums and unresolvable Any types are errors.
func unmarshalProto(t *testing.T, what string, v any, m proto.Message) {
	t.Helper()
	js, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("%s: to JSON: %v", what, err)
	}
	if err := protojson.Unmarshal(js, m); err != nil {
		t.Fatalf("%s: not a %s: %v", what, m.ProtoReflect().Descriptor().FullName(), err)
	}
}

// dig walks nested maps by key.
func dig(t *testing.T, v any, keys ...string) any {
	t.Helper()
	for i, k := range keys {
		m, ok := v.(map[string]any)
		if !ok {
			t.Fatalf("%s is %T, not a mapping", strings.Join(keys[:i], "."), v)
		}
		if v, ok = m[k]; !ok {
			t.Fatalf("missing key %s", strings.Join(keys[:i+1], "."))
		}
	}
	return v
}

func digString(t *testing.T, v any, keys ...string) string {
	t.Helper()
	s, ok := dig(t, v, keys...).(string)
	if !ok {
		t.Fatalf("%s is not a string", strings.Join(keys, "."))
	}
	return s
}

func strList(t *testing.T, what string, v any) []string {
	t.Helper()
	l, ok := v.([]any)
	if !ok {
		t.Fatalf("%s is %T, not a list", what, v)
	}
	out := make([]string, 0, len(l))
	for _, e := range l {
		s, ok := e.(string)
		if !ok {
			t.Fatalf("%s: element %v is %T, not a string", what, e, e)
		}
		out = append(out, s)
	}
	return out
}

func loadBootstrap(t *testing.T) *bootstrapv3.Bootstrap {
	t.Helper()
	b := &bootstrapv3.Bootstrap{}
	unmarshalProto(t, bootstrapFile, yamlDoc(t, bootstrapFile), b)
	return b
}

func socketAddr(t *testing.T, what string, a *corev3.Address) string {
	t.Helper()
	sa := a.GetSocketAddress()
	if sa == nil {
		t.Fatalf("%s: not a socket address: %v", what, a)
	}
	return net.JoinHostPort(sa.GetAddress(), strconv.Itoa(int(sa.GetPortValue())))
}

func clusterEndpoint(t *testing.T, c *clusterv3.Cluster) string {
	t.Helper()
	eps := c.GetLoadAssignment().GetEndpoints()
	if len(eps) != 1 || len(eps[0].GetLbEndpoints()) != 1 {
		t.Fatalf("cluster %q: want exactly one endpoint, got %v", c.GetName(), c.GetLoadAssignment())
	}
	return socketAddr(t, "cluster "+c.GetName(), eps[0].GetLbEndpoints()[0].GetEndpoint().GetAddress())
}

func port(t *testing.T, hostport string) string {
	t.Helper()
	_, p, err := net.SplitHostPort(hostport)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestBootstrapParsesAsEnvoyV3BootstrapAndValidates(t *testing.T) {
	b := loadBootstrap(t)
	validateAll(t, bootstrapFile, b)
	checkNoDeprecatedFields(t, bootstrapFile, b)
	// PGV does not look inside Any: check the typed options too.
	for _, c := range b.GetStaticResources().GetClusters() {
		for name, a := range c.GetTypedExtensionProtocolOptions() {
			m, err := a.UnmarshalNew()
			if err != nil {
				t.Fatalf("cluster %q %s: %v", c.GetName(), name, err)
			}
			validateAll(t, "cluster "+c.GetName()+" "+name, m)
		}
	}
}

func TestBootstrapTakesListenersAndClustersFromCustosADS(t *testing.T) {
	b := loadBootstrap(t)
	if id, cl := b.GetNode().GetId(), b.GetNode().GetCluster(); id != "envoy" || cl != "custos" {
		t.Errorf("node = %q/%q, want envoy/custos", id, cl)
	}
	dyn := b.GetDynamicResources()
	ads := dyn.GetAdsConfig()
	if ads.GetApiType() != corev3.ApiConfigSource_GRPC {
		t.Errorf("ads_config.api_type = %v, want GRPC (Custos serves state-of-the-world ADS)", ads.GetApiType())
	}
	if ads.GetTransportApiVersion() != corev3.ApiVersion_V3 {
		t.Errorf("ads_config.transport_api_version = %v, want V3", ads.GetTransportApiVersion())
	}
	if !ads.GetSetNodeOnFirstMessageOnly() {
		t.Error("ads_config.set_node_on_first_message_only is false")
	}
	if gs := ads.GetGrpcServices(); len(gs) != 1 || gs[0].GetEnvoyGrpc().GetClusterName() != "xds" {
		t.Errorf("ads_config.grpc_services = %v, want one envoy_grpc service on cluster xds", gs)
	}
	for name, src := range map[string]*corev3.ConfigSource{"lds_config": dyn.GetLdsConfig(), "cds_config": dyn.GetCdsConfig()} {
		if src.GetAds() == nil {
			t.Errorf("%s does not come from ADS: %v", name, src)
		}
		if src.GetResourceApiVersion() != corev3.ApiVersion_V3 {
			t.Errorf("%s.resource_api_version = %v, want V3", name, src.GetResourceApiVersion())
		}
	}
	// Everything but the ADS cluster and the mTLS secrets comes from Custos.
	st := b.GetStaticResources()
	if len(st.GetListeners()) != 0 {
		t.Errorf("static listeners in the bootstrap: %v", st)
	}
	secrets := map[string]bool{}
	for _, sec := range st.GetSecrets() {
		secrets[sec.GetName()] = true
	}
	if len(secrets) != 2 || !secrets[names.ClientCertSecret] || !secrets[names.CustosCASecret] {
		t.Errorf("static secrets %v, want exactly %s and %s, which Custos' gRPC cluster names", secrets, names.ClientCertSecret, names.CustosCASecret)
	}
	// The ADS cluster presents the client certificate and verifies Custos.
	if ts := st.GetClusters()[0].GetTransportSocket(); ts == nil || !strings.Contains(ts.String(), names.ClientCertSecret) || !strings.Contains(ts.String(), names.CustosCASecret) {
		t.Errorf("the xds cluster does not reach Custos over mutual TLS: %v", ts)
	}
	if cs := st.GetClusters(); len(cs) != 1 || cs[0].GetName() != "xds" {
		t.Errorf("static clusters = %v, want only xds", cs)
	}
}

func TestBootstrapXDSClusterIsHTTP2StrictDNSToCustosXDSPort(t *testing.T) {
	b := loadBootstrap(t)
	c := b.GetStaticResources().GetClusters()[0]
	if c.GetType() != clusterv3.Cluster_STRICT_DNS {
		t.Errorf("xds cluster type = %v, want STRICT_DNS", c.GetType())
	}
	if d := c.GetConnectTimeout().AsDuration(); d != time.Second {
		t.Errorf("xds connect_timeout = %v, want 1s", d)
	}
	a, ok := c.GetTypedExtensionProtocolOptions()[names.HTTPProtocolOptions]
	if !ok {
		t.Fatalf("xds cluster has no %s: gRPC needs HTTP/2", names.HTTPProtocolOptions)
	}
	opts := &upstreamhttpv3.HttpProtocolOptions{}
	if err := a.UnmarshalTo(opts); err != nil {
		t.Fatalf("%s: %v", names.HTTPProtocolOptions, err)
	}
	if opts.GetExplicitHttpConfig().GetHttp2ProtocolOptions() == nil {
		t.Errorf("xds cluster is not explicitly HTTP/2: %v", opts)
	}

	// The endpoint is the compose service custos on the port of listen.xds
	// in the configuration compose.yaml gives it.
	cfg, err := config.Load(composeConfigFile)
	if err != nil {
		t.Fatal(err)
	}
	want := net.JoinHostPort("custos", port(t, cfg.Listen.XDS))
	if got := clusterEndpoint(t, c); got != want {
		t.Errorf("xds cluster endpoint = %s, want %s (listen.xds of %s)", got, want, composeConfigFile)
	}
}

func TestBootstrapAdminListensOnLoopbackOnly(t *testing.T) {
	b := loadBootstrap(t)
	if got := socketAddr(t, "admin", b.GetAdmin().GetAddress()); got != "127.0.0.1:9901" {
		t.Errorf("admin address = %s, want 127.0.0.1:9901", got)
	}
}

// composeService returns services.NAME of compose.yaml.
func composeService(t *testing.T, name string) map[string]any {
	t.Helper()
	svc, ok := dig(t, yamlDoc(t, composeFile), "services", name).(map[string]any)
	if !ok {
		t.Fatalf("%s: services.%s is not a mapping", composeFile, name)
	}
	return svc
}

// flagValue returns the argument after flag in args.
func flagValue(t *testing.T, args []string, flag string) string {
	t.Helper()
	i := slices.Index(args, flag)
	if i < 0 || i+1 >= len(args) {
		t.Fatalf("no %s VALUE in %q", flag, args)
	}
	return args[i+1]
}

func TestComposeEnvoyRunsTheBootstrapAndOnlyRebindsAdmin(t *testing.T) {
	envoy := composeService(t, "envoy")
	args := strList(t, "services.envoy.command", envoy["command"])
	path := flagValue(t, args, "-c")
	mounts := strList(t, "services.envoy.volumes", envoy["volumes"])
	if want := "./envoy/bootstrap.yaml:" + path + ":ro"; !slices.Contains(mounts, want) {
		t.Errorf("services.envoy.volumes = %q, want %q", mounts, want)
	}

	// Envoy merges --config-yaml over the file (Bootstrap.MergeFrom).
	var overrideDoc map[string]any
	if err := yaml.Unmarshal([]byte(flagValue(t, args, "--config-yaml")), &overrideDoc); err != nil {
		t.Fatalf("--config-yaml: %v", err)
	}
	override := &bootstrapv3.Bootstrap{}
	unmarshalProto(t, "--config-yaml", overrideDoc, override)
	file := loadBootstrap(t)
	merged := proto.Clone(file).(*bootstrapv3.Bootstrap)
	proto.Merge(merged, override)
	validateAll(t, "bootstrap merged with --config-yaml", merged)

	if got := socketAddr(t, "merged admin", merged.GetAdmin().GetAddress()); got != "0.0.0.0:9901" {
		t.Errorf("admin address after --config-yaml = %s, want 0.0.0.0:9901 (published on the host's loopback only)", got)
	}
	ports := strList(t, "services.envoy.ports", envoy["ports"])
	if !slices.Contains(ports, "127.0.0.1:9901:9901") {
		t.Errorf("services.envoy.ports = %q, want admin published as 127.0.0.1:9901:9901", ports)
	}
	merged.Admin, file.Admin = nil, nil
	if !proto.Equal(merged, file) {
		t.Errorf("--config-yaml changes more than admin:\nfile:   %v\nmerged: %v", file, merged)
	}
}

// listenerHCM returns the connection manager of Custos' listener.
func listenerHCM(t *testing.T, rs map[resource.Type][]types.Resource) *hcmv3.HttpConnectionManager {
	t.Helper()
	ls := rs[resource.ListenerType]
	if len(ls) != 1 {
		t.Fatalf("%d listeners, want 1", len(ls))
	}
	lis := ls[0].(*listenerv3.Listener)
	hcm := &hcmv3.HttpConnectionManager{}
	if err := lis.GetFilterChains()[0].GetFilters()[0].GetTypedConfig().UnmarshalTo(hcm); err != nil {
		t.Fatal(err)
	}
	return hcm
}

// custosResources builds Custos' xDS resources for cfg.
func custosResources(t *testing.T, cfg *config.Config, opts xds.Options) map[resource.Type][]types.Resource {
	t.Helper()
	rs, err := xds.Resources(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

func TestComposeCustosConfigGivesEnvoyAListenerOnAllInterfacesPort10000(t *testing.T) {
	cfg, err := config.Load(composeConfigFile)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Dev != nil {
		t.Fatalf("%s has a dev: block; custos serve refuses it", composeConfigFile)
	}
	custos := composeService(t, "custos")
	args := strList(t, "services.custos.command", custos["command"])
	if args[0] != "serve" || flagValue(t, args, "--config") != "/etc/custos/custos.yaml" {
		t.Errorf("services.custos.command = %q, want serve --config /etc/custos/custos.yaml ...", args)
	}
	if mounts := strList(t, "services.custos.volumes", custos["volumes"]); !slices.Contains(mounts, "./examples/compose.yaml:/etc/custos/custos.yaml:ro") {
		t.Errorf("services.custos.volumes = %q, want examples/compose.yaml at /etc/custos/custos.yaml", mounts)
	}
	grpcAddr := flagValue(t, args, "--grpc-address")
	if port(t, grpcAddr) != port(t, cfg.Listen.GRPC) {
		t.Errorf("--grpc-address %s does not use the port of listen.grpc %s", grpcAddr, cfg.Listen.GRPC)
	}

	rs := custosResources(t, cfg, xds.Options{GRPCAddress: grpcAddr})
	lis := rs[resource.ListenerType][0].(*listenerv3.Listener)
	if got := socketAddr(t, "listener", lis.GetAddress()); got != "0.0.0.0:10000" {
		t.Errorf("listener Envoy binds = %s, want 0.0.0.0:10000 (listen.dataplane)", got)
	}
	if ports := strList(t, "services.envoy.ports", composeService(t, "envoy")["ports"]); !slices.Contains(ports, "10000:10000") {
		t.Errorf("services.envoy.ports = %q, want 10000:10000", ports)
	}
	for _, r := range rs[resource.ClusterType] {
		c := r.(*clusterv3.Cluster)
		if c.GetName() != names.GRPCCluster {
			continue
		}
		if got := clusterEndpoint(t, c); got != grpcAddr || c.GetType() != clusterv3.Cluster_STRICT_DNS {
			t.Errorf("%s = %s (%v), want %s STRICT_DNS", names.GRPCCluster, got, c.GetType(), grpcAddr)
		}
		return
	}
	t.Errorf("no %s cluster", names.GRPCCluster)
}

// envoyFilters returns the EnvoyFilters of istio/envoy-filter.yaml.
func envoyFilters(t *testing.T) []map[string]any {
	t.Helper()
	docs := yamlDocs(t, filepath.Join(istioDir, "envoy-filter.yaml"))
	for _, d := range docs {
		if d["kind"] != "EnvoyFilter" || d["apiVersion"] != "networking.istio.io/v1alpha3" {
			t.Fatalf("envoy-filter.yaml: unexpected %v/%v", d["apiVersion"], d["kind"])
		}
	}
	return docs
}

// patch returns the one configPatch of ef that applies to applyTo.
func patch(t *testing.T, ef map[string]any, applyTo string) map[string]any {
	t.Helper()
	name := digString(t, ef, "metadata", "name")
	var found map[string]any
	for _, p := range dig(t, ef, "spec", "configPatches").([]any) {
		pm := p.(map[string]any)
		if pm["applyTo"] == applyTo {
			if found != nil {
				t.Fatalf("EnvoyFilter %s: two %s patches", name, applyTo)
			}
			found = pm
		}
	}
	if found == nil {
		t.Fatalf("EnvoyFilter %s: no %s patch", name, applyTo)
	}
	return found
}

// istioExtProc reads and validates the ext_proc filter an EnvoyFilter inserts.
func istioExtProc(t *testing.T, ef map[string]any) *extprocv3.ExternalProcessor {
	t.Helper()
	name := digString(t, ef, "metadata", "name")
	p := patch(t, ef, "HTTP_FILTER")
	if op := digString(t, p, "patch", "operation"); op != "INSERT_BEFORE" {
		t.Errorf("EnvoyFilter %s: operation %s, want INSERT_BEFORE", name, op)
	}
	if f := digString(t, p, "match", "listener", "filterChain", "filter", "name"); f != names.HCMFilter {
		t.Errorf("EnvoyFilter %s: matches filter %s, want %s", name, f, names.HCMFilter)
	}
	if sub := digString(t, p, "match", "listener", "filterChain", "filter", "subFilter", "name"); sub != names.RouterFilter {
		t.Errorf("EnvoyFilter %s: inserted before %s, want before %s (after Istio's ext_authz)", name, sub, names.RouterFilter)
	}
	hf := &hcmv3.HttpFilter{}
	unmarshalProto(t, "EnvoyFilter "+name+" HTTP_FILTER value", dig(t, p, "patch", "value"), hf)
	validateAll(t, "EnvoyFilter "+name+" HTTP_FILTER value", hf)
	checkNoDeprecatedFields(t, "EnvoyFilter "+name+" HTTP_FILTER value", hf)
	if hf.GetName() != names.ExtProcFilter {
		t.Errorf("EnvoyFilter %s: filter name %q, want %q", name, hf.GetName(), names.ExtProcFilter)
	}
	ep := &extprocv3.ExternalProcessor{}
	if err := hf.GetTypedConfig().UnmarshalTo(ep); err != nil {
		t.Fatalf("EnvoyFilter %s: typed_config is not an ExternalProcessor: %v", name, err)
	}
	validateAll(t, "EnvoyFilter "+name+" ExternalProcessor", ep)
	return ep
}

func TestIstioEnvoyFilterExtProcIsAValidExternalProcessor(t *testing.T) {
	for _, ef := range envoyFilters(t) {
		ep := istioExtProc(t, ef)
		name := digString(t, ef, "metadata", "name")
		pm := ep.GetProcessingMode()
		if pm.GetRequestHeaderMode() != extprocv3.ProcessingMode_SEND || pm.GetResponseHeaderMode() != extprocv3.ProcessingMode_SEND {
			t.Errorf("EnvoyFilter %s: processing_mode %v, want request and response headers SEND", name, pm)
		}
		if fw := ep.GetMetadataOptions().GetForwardingNamespaces().GetUntyped(); !slices.Contains(fw, names.ExtAuthzFilter) {
			t.Errorf("EnvoyFilter %s: forwarding namespaces %q lack %s: ext_proc would not see Check's decision", name, fw, names.ExtAuthzFilter)
		}
		if ep.GetFailureModeAllow() {
			t.Errorf("EnvoyFilter %s: failure_mode_allow is true", name)
		}
		want := "outbound|" + strconv.Itoa(istioCustosPort) + "||" + istioCustosHost
		if got := ep.GetGrpcService().GetEnvoyGrpc().GetClusterName(); got != want {
			t.Errorf("EnvoyFilter %s: cluster %q, want %q", name, got, want)
		}
	}
}

// istioReference is the configuration the Istio files are written for.
func istioReference(t *testing.T) map[resource.Type][]types.Resource {
	t.Helper()
	cfg, err := config.Parse([]byte("connections:\n  - name: c\n    upstream: http://c.example:80\napprovals:\n  timeout: " + istioApprovalTimeout.String() + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	return custosResources(t, cfg, xds.Options{GRPCAddress: net.JoinHostPort(istioCustosHost, strconv.Itoa(istioCustosPort))})
}

func TestIstioExtProcMatchesTheExtProcCustosXDSEmits(t *testing.T) {
	var want *extprocv3.ExternalProcessor
	for _, f := range listenerHCM(t, istioReference(t)).GetHttpFilters() {
		if f.GetName() == names.ExtProcFilter {
			want = &extprocv3.ExternalProcessor{}
			if err := f.GetTypedConfig().UnmarshalTo(want); err != nil {
				t.Fatal(err)
			}
		}
	}
	if want == nil {
		t.Fatal("Custos' listener has no ext_proc filter")
	}
	for _, ef := range envoyFilters(t) {
		got := istioExtProc(t, ef)
		// Only the cluster differs: Istio names it after the Service.
		got.GetGrpcService().GetEnvoyGrpc().ClusterName = names.GRPCCluster
		if !proto.Equal(got, want) {
			t.Errorf("EnvoyFilter %s: ext_proc differs from Custos' own (approvals.timeout %v):\nistio: %v\nxds:   %v",
				digString(t, ef, "metadata", "name"), istioApprovalTimeout, got, want)
		}
	}
}

func TestIstioEnvoyFilterMarksExtProcForCheckWhereItInsertsExtProc(t *testing.T) {
	for _, ef := range envoyFilters(t) {
		name := digString(t, ef, "metadata", "name")
		insert := patch(t, ef, "HTTP_FILTER")
		mark := patch(t, ef, "VIRTUAL_HOST")
		if a, b := digString(t, insert, "match", "context"), digString(t, mark, "match", "context"); a != b {
			t.Errorf("EnvoyFilter %s: ext_proc inserted in context %s but marked in %s", name, a, b)
		}
		if op := digString(t, mark, "patch", "operation"); op != "MERGE" {
			t.Errorf("EnvoyFilter %s: VIRTUAL_HOST operation %s, want MERGE", name, op)
		}
		vh := &routev3.VirtualHost{} // a partial virtual host: only its typed_per_filter_config
		unmarshalProto(t, "EnvoyFilter "+name+" VIRTUAL_HOST value", dig(t, mark, "patch", "value"), vh)
		a, ok := vh.GetTypedPerFilterConfig()[names.ExtAuthzFilter]
		if !ok {
			t.Fatalf("EnvoyFilter %s: no typed_per_filter_config for %s", name, names.ExtAuthzFilter)
		}
		per := &extauthzv3.ExtAuthzPerRoute{}
		if err := a.UnmarshalTo(per); err != nil {
			t.Fatalf("EnvoyFilter %s: not an ExtAuthzPerRoute: %v", name, err)
		}
		validateAll(t, "EnvoyFilter "+name+" ExtAuthzPerRoute", per)
		ext := per.GetCheckSettings().GetContextExtensions()
		if ext[names.ContextExtProc] != "on" {
			t.Errorf("EnvoyFilter %s: context_extensions %v, want %s: on", name, ext, names.ContextExtProc)
		}
		if _, ok := ext[names.ContextConnection]; ok {
			t.Errorf("EnvoyFilter %s: sets %s; under Istio Check must pick the connection by :authority", name, names.ContextConnection)
		}
	}
}

func TestIstioStreamIdleTimeoutOutlastsTheLongestHold(t *testing.T) {
	want := listenerHCM(t, istioReference(t)).GetStreamIdleTimeout().AsDuration()
	for _, ef := range envoyFilters(t) {
		name := digString(t, ef, "metadata", "name")
		p := patch(t, ef, "NETWORK_FILTER")
		if f := digString(t, p, "match", "listener", "filterChain", "filter", "name"); f != names.HCMFilter {
			t.Errorf("EnvoyFilter %s: NETWORK_FILTER matches %s, want %s", name, f, names.HCMFilter)
		}
		if op := digString(t, p, "patch", "operation"); op != "MERGE" {
			t.Errorf("EnvoyFilter %s: NETWORK_FILTER operation %s, want MERGE", name, op)
		}
		f := &listenerv3.Filter{} // a partial filter: only its typed_config
		unmarshalProto(t, "EnvoyFilter "+name+" NETWORK_FILTER value", dig(t, p, "patch", "value"), f)
		hcm := &hcmv3.HttpConnectionManager{}
		if err := f.GetTypedConfig().UnmarshalTo(hcm); err != nil {
			t.Fatalf("EnvoyFilter %s: not an HttpConnectionManager: %v", name, err)
		}
		if got := hcm.GetStreamIdleTimeout().AsDuration(); got != want {
			t.Errorf("EnvoyFilter %s: stream_idle_timeout %v, want %v as Custos' xDS sets for approvals.timeout %v", name, got, want, istioApprovalTimeout)
		}
	}
}

func TestIstioFilesAreKubernetesObjectsThatAgreeOnProviderSelectorsAndService(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(istioDir, "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no YAML in %s: %v", istioDir, err)
	}
	for _, f := range files {
		for _, d := range yamlDocs(t, f) {
			for _, k := range []string{"apiVersion", "kind"} {
				if s, _ := d[k].(string); s == "" {
					t.Errorf("%s: a document without %s", f, k)
				}
			}
			if digString(t, d, "metadata", "name") == "" || digString(t, d, "metadata", "namespace") == "" {
				t.Errorf("%s: %v without metadata.name and namespace", f, d["kind"])
			}
		}
	}

	for _, f := range files {
		checkNoYAML11Booleans(t, f)
	}

	mesh := yamlDoc(t, filepath.Join(istioDir, "mesh-config.yaml"))
	providers, _ := dig(t, mesh, "spec", "meshConfig", "extensionProviders").([]any)
	if len(providers) != 1 {
		t.Fatalf("mesh-config.yaml: %d extension providers, want 1", len(providers))
	}
	provider := digString(t, providers[0], "name")
	grpc := dig(t, providers[0], "envoyExtAuthzGrpc")
	if s := digString(t, grpc, "service"); s != istioCustosHost {
		t.Errorf("provider service %s, want %s", s, istioCustosHost)
	}
	if p, _ := dig(t, grpc, "port").(int); p != istioCustosPort {
		t.Errorf("provider port %v, want %d", dig(t, grpc, "port"), istioCustosPort)
	}
	if fo, _ := dig(t, grpc, "failOpen").(bool); fo {
		t.Error("provider failOpen is true")
	}

	selectors := func(docs []map[string]any, keys ...string) []string {
		var out []string
		for _, d := range docs {
			js, err := json.Marshal(dig(t, d, keys...))
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, string(js))
		}
		slices.Sort(out)
		return out
	}
	policies := yamlDocs(t, filepath.Join(istioDir, "authorization-policy.yaml"))
	for _, p := range policies {
		if a := digString(t, p, "spec", "action"); a != "CUSTOM" {
			t.Errorf("AuthorizationPolicy %s: action %s, want CUSTOM", digString(t, p, "metadata", "name"), a)
		}
		if n := digString(t, p, "spec", "provider", "name"); n != provider {
			t.Errorf("AuthorizationPolicy %s: provider %s, want %s", digString(t, p, "metadata", "name"), n, provider)
		}
	}
	// ext_proc must run exactly where Check runs: ext_proc without Check's
	// decision fails every request, Check without ext_proc loses holds and masking.
	if a, b := selectors(policies, "spec", "selector", "matchLabels"), selectors(envoyFilters(t), "spec", "workloadSelector", "labels"); !slices.Equal(a, b) {
		t.Errorf("AuthorizationPolicies select %v but EnvoyFilters select %v", a, b)
	}

	dr := yamlDoc(t, filepath.Join(istioDir, "destination-rule.yaml"))
	if h := digString(t, dr, "spec", "host"); h != istioCustosHost {
		t.Errorf("DestinationRule host %s, want %s", h, istioCustosHost)
	}
	if n, _ := dig(t, dr, "spec", "trafficPolicy", "connectionPool", "http", "http2MaxRequests").(int); n != names.MaxGRPCRequests {
		t.Errorf("DestinationRule http2MaxRequests %d, want %d (names.MaxGRPCRequests)", n, names.MaxGRPCRequests)
	}
}

// yaml11Bools are the plain scalars that YAML 1.2 (go.yaml.in/yaml/v3) reads
// as strings but YAML 1.1, which Kubernetes' decoder follows, reads as booleans.
var yaml11Bools = []string{"y", "yes", "n", "no", "on", "off"}

// checkNoYAML11Booleans fails on an unquoted scalar that kubectl would read
// as a boolean where this test reads a string (custos.extproc: on).
func checkNoYAML11Booleans(t *testing.T, path string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var walk func(n *yaml.Node)
	walk = func(n *yaml.Node) {
		if n.Kind == yaml.ScalarNode && n.Style == 0 && n.Tag == "!!str" && slices.Contains(yaml11Bools, strings.ToLower(n.Value)) {
			t.Errorf("%s:%d: quote %q: Kubernetes reads it as a boolean", path, n.Line, n.Value)
		}
		for _, c := range n.Content {
			walk(c)
		}
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var n yaml.Node
		if err := dec.Decode(&n); errors.Is(err, io.EOF) {
			return
		} else if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		walk(&n)
	}
}
