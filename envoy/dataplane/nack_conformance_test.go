package dataplane_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/config/accesslog/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	mutationv3 "github.com/envoyproxy/go-control-plane/envoy/config/common/mutation_rules/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	corsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/cors/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	procfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// Everything outside Custos' own xDS output is NACKed with an error naming
// it, rather than half-served.
// This rule is the Go data plane's alone and has no "envoy" run: real Envoy
// implements and serves nearly all of these (the rest it refuses for its own
// reasons, with its own errors); TestNACKKeepsLastGoodConfiguration checks
// the NACK itself against both.
// Mirrors (docs/envoy-references.md): —.
func TestDataPlaneNACKsWhatCustosNeverEmits(t *testing.T) {
	for _, tc := range []struct {
		name string
		s    func(t *testing.T) setup
		want string
	}{
		{"FULL_DUPLEX_STREAMED body mode", func(t *testing.T) setup {
			return setup{proc: procConfig(&procfilterv3.ProcessingMode{RequestBodyMode: procfilterv3.ProcessingMode_FULL_DUPLEX_STREAMED})}
		}, "FULL_DUPLEX_STREAMED"},
		{"ext_proc mutation_rules", func(t *testing.T) setup {
			c := procConfig(nil)
			c.MutationRules = &mutationv3.HeaderMutationRules{AllowAllRouting: wrapperspb.Bool(true)}
			return setup{proc: c}
		}, "mutation_rules"},
		{"ext_proc per-route overrides", func(t *testing.T) setup {
			return setup{proc: procConfig(nil), route: func(r *routeT) {
				r.TypedPerFilterConfig["envoy.filters.http.ext_proc"] = mustAny(t, &procfilterv3.ExtProcPerRoute{Override: &procfilterv3.ExtProcPerRoute_Overrides{
					Overrides: &procfilterv3.ExtProcOverrides{ProcessingMode: &procfilterv3.ProcessingMode{}}}})
			}}
		}, "overrides"},
		{"ext_authz http_service", func(t *testing.T) setup {
			c := authzConfig()
			c.Services = &extauthzv3.ExtAuthz_HttpService{HttpService: &extauthzv3.HttpService{ServerUri: &corev3.HttpUri{
				Uri: "http://authz", HttpUpstreamType: &corev3.HttpUri_Cluster{Cluster: "grpc"}, Timeout: durationpbMS(100)}}}
			return setup{authz: c}
		}, "http_service"},
		{"another HTTP filter", func(t *testing.T) setup {
			return setup{hcm: func(m *hcmv3.HttpConnectionManager) {
				m.HttpFilters = append([]*hcmv3.HttpFilter{{Name: "envoy.filters.http.cors", ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(t, &corsv3.Cors{})}}}, m.HttpFilters...)
			}}
		}, "envoy.filters.http.cors"},
		{"escaped slashes unescaped", func(t *testing.T) setup {
			return setup{hcm: func(m *hcmv3.HttpConnectionManager) {
				m.PathWithEscapedSlashesAction = hcmv3.HttpConnectionManager_UNESCAPE_AND_REDIRECT
			}}
		}, "UNESCAPE_AND_REDIRECT"},
		{"inline route_config", func(t *testing.T) setup {
			return setup{hcm: func(m *hcmv3.HttpConnectionManager) {
				m.RouteSpecifier = &hcmv3.HttpConnectionManager_RouteConfig{RouteConfig: &routev3.RouteConfiguration{Name: "inline"}}
			}}
		}, "route_config"},
		{"regex route match", func(t *testing.T) setup {
			return setup{route: func(r *routeT) {
				r.Match = &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: ".*"}}}
			}}
		}, "safe_regex"},
		{"header route match", func(t *testing.T) setup {
			return setup{route: func(r *routeT) {
				r.Match.Headers = []*routev3.HeaderMatcher{{Name: "x"}}
			}}
		}, "headers"},
		{"EDS cluster", func(t *testing.T) setup {
			return setup{grpcCluster: func(c *clusterv3.Cluster) {
				c.ClusterDiscoveryType = &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS}
				c.EdsClusterConfig = &clusterv3.Cluster_EdsClusterConfig{EdsConfig: &corev3.ConfigSource{ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}}}}
			}}
		}, `cluster "grpc"`},
		{"local reply header filter", func(t *testing.T) setup {
			return setup{hcm: func(m *hcmv3.HttpConnectionManager) {
				m.LocalReplyConfig = &hcmv3.LocalReplyConfig{Mappers: []*hcmv3.ResponseMapper{{
					Filter:     &accesslogv3.AccessLogFilter{FilterSpecifier: &accesslogv3.AccessLogFilter_HeaderFilter{HeaderFilter: &accesslogv3.HeaderFilter{Header: &routev3.HeaderMatcher{Name: "x"}}}},
					StatusCode: wrapperspb.UInt32(400),
				}}}
			}}
		}, "header_filter"},
		{"request_timeout", func(t *testing.T) setup {
			return setup{hcm: func(m *hcmv3.HttpConnectionManager) { m.RequestTimeout = durationpbMS(100) }}
		}, "request_timeout"},
		{"TLS certificate pinning", func(t *testing.T) setup {
			return setup{grpcCluster: func(c *clusterv3.Cluster) {
				c.TransportSocket = tlsSocket(t, &tlsv3.CertificateValidationContext{
					TrustedCa:             &corev3.DataSource{Specifier: &corev3.DataSource_Filename{Filename: caFile(t)}},
					VerifyCertificateHash: []string{strings.Repeat("ab", 32)},
				})
			}}
		}, "verify_certificate_hash"},
		{"TLS CA file without certificates", func(t *testing.T) setup {
			bad := filepath.Join(t.TempDir(), "ca.pem")
			if err := os.WriteFile(bad, []byte("not a certificate"), 0o600); err != nil {
				t.Fatal(err)
			}
			return setup{grpcCluster: func(c *clusterv3.Cluster) {
				c.TransportSocket = tlsSocket(t, &tlsv3.CertificateValidationContext{
					TrustedCa: &corev3.DataSource{Specifier: &corev3.DataSource_Filename{Filename: bad}},
				})
			}}
		}, "no PEM certificate"},
		{"listener address in use", func(t *testing.T) setup {
			busy, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { busy.Close() })
			_, port, _ := net.SplitHostPort(busy.Addr().String())
			p, _ := strconv.Atoi(port)
			return setup{listenPort: uint32(p)}
		}, "address already in use"},
		{"unsupported format command", func(t *testing.T) setup {
			body, _ := structpb.NewStruct(map[string]any{"t": "%START_TIME%"})
			return setup{hcm: func(m *hcmv3.HttpConnectionManager) {
				m.LocalReplyConfig = &hcmv3.LocalReplyConfig{BodyFormat: &corev3.SubstitutionFormatString{Format: &corev3.SubstitutionFormatString_JsonFormat{JsonFormat: body}}}
			}}
		}, "START_TIME"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			msg := startNACK(t, tc.s(t))
			if !strings.Contains(msg, tc.want) {
				t.Fatalf("NACK %q does not name %q", msg, tc.want)
			}
		})
	}
}

func tlsSocket(t *testing.T, vc *tlsv3.CertificateValidationContext) *corev3.TransportSocket {
	t.Helper()
	return &corev3.TransportSocket{Name: "envoy.transport_sockets.tls", ConfigType: &corev3.TransportSocket_TypedConfig{
		TypedConfig: mustAny(t, &tlsv3.UpstreamTlsContext{CommonTlsContext: &tlsv3.CommonTlsContext{
			ValidationContextType: &tlsv3.CommonTlsContext_ValidationContext{ValidationContext: vc},
		}}),
	}}
}

// caFile writes a freshly generated self-signed CA certificate.
func caFile(t *testing.T) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// A resource the data plane cannot take is NACKed with the error, and the
// last good configuration keeps serving: here a listener whose connection
// manager names a filter configuration of a type neither data plane knows.
// Mirrors: the xDS protocol (ACK/NACK); Envoy's LDS update_rejected.
func TestNACKKeepsLastGoodConfiguration(t *testing.T) {
	bothPlanes(t, func(t *testing.T, p plane) {
		good := setup{authz: authzConfig()}
		h := p.start(t, good)
		bad := good
		bad.hcm = func(m *hcmv3.HttpConnectionManager) {
			m.HttpFilters = append([]*hcmv3.HttpFilter{{Name: "custos.unknown", ConfigType: &hcmv3.HttpFilter_TypedConfig{
				TypedConfig: &anyT{TypeUrl: "type.googleapis.com/custos.test.NoSuchFilter"}}}}, m.HttpFilters...)
		}
		msg := h.pushNACK(bad)
		t.Logf("NACK: %s", msg)
		if !strings.Contains(msg, "custos.test.NoSuchFilter") && !strings.Contains(msg, "custos.unknown") {
			t.Errorf("NACK %q names neither the filter nor its type", msg)
		}
		resp, body := h.get("/x")
		wantStatus(t, resp, body, 200)
		if h.authz.calls() != 1 {
			t.Errorf("ext_authz called %d times: the last good configuration is not the one serving", h.authz.calls())
		}
	})
}
