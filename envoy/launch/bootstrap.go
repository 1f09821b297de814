package launch

import (
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"strconv"

	"go.yaml.in/yaml/v3"

	"github.com/custos-dev/custos/names"
)

// xdsCluster is the static cluster of the generated bootstrap, as in
// envoy/bootstrap.yaml.
const xdsCluster = "xds"

func socketAddress(ip string, port int) map[string]any {
	return map[string]any{"socket_address": map[string]any{"address": ip, "port_value": port}}
}

// loopbackAdmin is the admin interface of every Envoy Start starts:
// loopback, at a port Envoy chooses and writes to --admin-address-path.
func loopbackAdmin() map[string]any {
	return map[string]any{"address": socketAddress("127.0.0.1", 0)}
}

// generatedBootstrap is envoy/bootstrap.yaml's shape with the ADS server
// at an address of the caller's: ADS over
// one gRPC stream (HTTP/2) to a STATIC cluster at xdsAddr, listeners and
// clusters over ADS. Without xdsAddr Envoy has no dynamic configuration.
func generatedBootstrap(nodeID, xdsAddr string, dns map[string]any, tls *TLSFiles) (map[string]any, error) {
	b := map[string]any{
		"node":                      map[string]any{"id": nodeID, "cluster": "custos"},
		"admin":                     loopbackAdmin(),
		"typed_dns_resolver_config": dns,
		// As envoy/bootstrap.yaml: a cap on open downstream connections.
		"overload_manager": map[string]any{"resource_monitors": []any{map[string]any{
			"name": "envoy.resource_monitors.global_downstream_max_connections",
			"typed_config": map[string]any{
				"@type":                             "type.googleapis.com/envoy.extensions.resource_monitors.downstream_connections.v3.DownstreamConnectionsConfig",
				"max_active_downstream_connections": names.MaxDownstreamConnections,
			},
		}}},
	}
	if xdsAddr == "" {
		return b, nil
	}
	host, port, err := net.SplitHostPort(xdsAddr)
	if err != nil {
		return nil, fmt.Errorf("XDSAddr %q: %w", xdsAddr, err)
	}
	if host == "localhost" || host == "" {
		host = "127.0.0.1"
	}
	if _, err := netip.ParseAddr(host); err != nil {
		return nil, fmt.Errorf("XDSAddr %q: the host must be an IP address (the cluster is STATIC)", xdsAddr)
	}
	p, err := strconv.Atoi(port)
	if err != nil || p <= 0 || p > 65535 {
		return nil, fmt.Errorf("XDSAddr %q: bad port", xdsAddr)
	}
	ads := map[string]any{"ads": map[string]any{}, "resource_api_version": "V3"}
	b["dynamic_resources"] = map[string]any{
		"ads_config": map[string]any{
			"api_type":                       "GRPC",
			"transport_api_version":          "V3",
			"grpc_services":                  []any{map[string]any{"envoy_grpc": map[string]any{"cluster_name": xdsCluster}}},
			"set_node_on_first_message_only": true,
		},
		"lds_config": ads,
		"cds_config": ads,
	}
	xds := map[string]any{
		"name":            xdsCluster,
		"type":            "STATIC",
		"connect_timeout": "1s",
		"typed_extension_protocol_options": map[string]any{
			"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": map[string]any{
				"@type":                "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
				"explicit_http_config": map[string]any{"http2_protocol_options": map[string]any{}},
			},
		},
		"load_assignment": map[string]any{
			"cluster_name": xdsCluster,
			"endpoints": []any{map[string]any{"lb_endpoints": []any{map[string]any{
				"endpoint": map[string]any{"address": socketAddress(host, p)},
			}}}},
		},
	}
	statics := map[string]any{"clusters": []any{xds}}
	if tls != nil {
		statics["secrets"] = []any{
			map[string]any{"name": names.ClientCertSecret, "tls_certificate": map[string]any{
				"certificate_chain": map[string]any{"filename": tls.CertFile},
				"private_key":       map[string]any{"filename": tls.KeyFile},
			}},
			map[string]any{"name": names.CustosCASecret, "validation_context": map[string]any{
				"trusted_ca": map[string]any{"filename": tls.CAFile},
			}},
		}
		xds["transport_socket"] = mtlsSocket()
	}
	b["static_resources"] = statics
	return b, nil
}

// mtlsSocket presents the client certificate secret and verifies the
// server with the CA secret.
func mtlsSocket() map[string]any {
	return map[string]any{
		"name": "envoy.transport_sockets.tls",
		"typed_config": map[string]any{
			"@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
			"common_tls_context": map[string]any{
				"tls_certificate_sds_secret_configs":   []any{map[string]any{"name": names.ClientCertSecret}},
				"validation_context_sds_secret_config": map[string]any{"name": names.CustosCASecret},
				"alpn_protocols":                       []any{"h2"},
			},
		},
	}
}

// overrideYAML is what Start passes as --config-yaml: the caller's own
// override, plus launch's admin address and DNS resolver unless the
// override sets its own. Envoy merges it into the bootstrap file with
// protobuf's MergeFrom (see Options.Bootstrap).
func overrideYAML(configYAML string, dns map[string]any) (string, error) {
	o := map[string]any{}
	if configYAML != "" {
		if err := yaml.Unmarshal([]byte(configYAML), &o); err != nil {
			return "", fmt.Errorf("ConfigYAML: %w", err)
		}
		if o == nil {
			o = map[string]any{}
		}
	}
	if _, ok := o["admin"]; !ok {
		o["admin"] = loopbackAdmin()
	}
	if _, ok := o["typed_dns_resolver_config"]; !ok {
		o["typed_dns_resolver_config"] = dns
	}
	// JSON is YAML, and it keeps the override on one line of the command.
	js, err := json.Marshal(o)
	if err != nil {
		return "", fmt.Errorf("ConfigYAML: %w", err)
	}
	return string(js), nil
}
