package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"strconv"

	"github.com/custos-dev/custos/envoy/launch"
	"github.com/custos-dev/custos/names"
)

// bareListener is the name of the bare Envoy's one listener.
const bareListener = "bare"

// BareEnvoy is real Envoy as a plain reverse proxy in front of the demo
// upstream: the hop Custos' filters are added to, without them.
type BareEnvoy struct {
	*launch.Envoy
	// URL is GET /customers/{id} through it, the request Stack.DataPlaneURL
	// sends through Custos.
	URL string
	// Addr is where its listener is bound (127.0.0.1:PORT).
	Addr string
}

// StartBareEnvoy starts the Envoy binary at path (launch.Find's when empty)
// with a static bootstrap and no xDS: one listener on a loopback port with
// only the router filter, routing /customers/ to the demo upstream at
// upstreamAddr (host:port) and rewriting the prefix to /, as Custos routes
// the connection "customers". The connection manager has the settings of
// Custos' listener that cost per request (use_remote_address,
// normalize_path, merge_slashes, escaped slashes kept, any host port and
// trailing host dot stripped) and the route Custos' host rewrite; what it
// lacks is ext_authz and ext_proc. It returns once the listener is bound;
// Close stops Envoy.
func StartBareEnvoy(ctx context.Context, path, upstreamAddr string) (*BareEnvoy, error) {
	conf, err := bareBootstrap(upstreamAddr)
	if err != nil {
		return nil, fmt.Errorf("bare envoy: %w", err)
	}
	e, err := launch.Start(ctx, launch.Options{
		Path:       path,
		NodeID:     "bench-bare",
		ConfigYAML: conf,
		Listeners:  []string{bareListener},
	})
	if err != nil {
		return nil, fmt.Errorf("bare envoy: %w", err)
	}
	addr := e.ListenerAddr(bareListener)
	if addr == "" {
		_ = e.Close()
		return nil, fmt.Errorf("bare envoy: listener %q not bound", bareListener)
	}
	return &BareEnvoy{
		Envoy: e,
		Addr:  addr,
		URL:   fmt.Sprintf("http://%s/customers/%d", addr, CustomerID),
	}, nil
}

// bareBootstrap is the bare Envoy's static_resources, as JSON (which is
// YAML) for launch.Options.ConfigYAML; launch merges it into a bootstrap
// that has only the node, the admin interface and its DNS resolver.
func bareBootstrap(upstreamAddr string) (string, error) {
	host, portStr, err := net.SplitHostPort(upstreamAddr)
	if err != nil {
		return "", fmt.Errorf("upstream %q: %w", upstreamAddr, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return "", fmt.Errorf("upstream %q: bad port", upstreamAddr)
	}
	type obj = map[string]any
	sockAddr := func(ip string, port int) obj {
		return obj{"socket_address": obj{"address": ip, "port_value": port}}
	}
	const cluster = "upstream"
	hcm := obj{
		"@type":       "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
		"stat_prefix": "bare",
		"codec_type":  "AUTO",
		"route_config": obj{
			"name": "bare",
			"virtual_hosts": []any{obj{
				"name":    "bare",
				"domains": []any{"*"},
				"routes": []any{obj{
					"match": obj{"prefix": "/customers/"},
					"route": obj{
						"cluster":              cluster,
						"prefix_rewrite":       "/",
						"host_rewrite_literal": upstreamAddr,
					},
				}},
			}},
		},
		"http_filters": []any{obj{
			"name":         names.RouterFilter,
			"typed_config": obj{"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"},
		}},
		// As xds builds Custos' listener.
		"use_remote_address":               true,
		"normalize_path":                   true,
		"merge_slashes":                    true,
		"path_with_escaped_slashes_action": "KEEP_UNCHANGED",
		"strip_any_host_port":              true,
		"strip_trailing_host_dot":          true,
		"max_request_headers_kb":           names.MaxRequestHeadersKB,
	}
	b := obj{"static_resources": obj{
		"listeners": []any{obj{
			"name":    bareListener,
			"address": sockAddr("127.0.0.1", 0),
			"filter_chains": []any{obj{"filters": []any{obj{
				"name":         names.HCMFilter,
				"typed_config": hcm,
			}}}},
		}},
		"clusters": []any{obj{
			"name":            cluster,
			"type":            "STATIC",
			"connect_timeout": "1s",
			"load_assignment": obj{
				"cluster_name": cluster,
				"endpoints": []any{obj{"lb_endpoints": []any{obj{
					"endpoint": obj{"address": sockAddr(host, port)},
				}}}},
			},
		}},
	}}
	js, err := json.Marshal(b)
	if err != nil {
		return "", err
	}
	return string(js), nil
}
