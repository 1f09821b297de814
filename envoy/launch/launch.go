package envoytest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// Options say how to start Envoy.
type Options struct {
	// XDSAddr is the ip:port of the test's ADS server. The generated
	// bootstrap points ADS at it the way envoy/bootstrap.yaml points it at
	// custos:18000: one gRPC stream over HTTP/2 to a STATIC cluster "xds",
	// listeners and clusters over ADS. Empty means no dynamic configuration.
	XDSAddr string
	// NodeID is the node id of the generated bootstrap; "envoytest" when empty.
	NodeID string
	// Bootstrap is a bootstrap file to run instead of the generated one,
	// such as envoy/bootstrap.yaml. XDSAddr and NodeID are then unused.
	//
	// Its admin address is replaced with 127.0.0.1 at a port Envoy chooses,
	// and its DNS resolver with the harness' (Hosts), through --config-yaml,
	// unless ConfigYAML sets admin or typed_dns_resolver_config itself.
	Bootstrap string
	// ConfigYAML is passed as --config-yaml: a partial bootstrap that Envoy
	// merges into the bootstrap file with protobuf's MergeFrom. Messages are
	// merged field by field and set scalars replace the file's (port_value: 0
	// does replace 9901: it is a oneof member, so even zero counts as set);
	// repeated fields are appended to, never replaced. So a static cluster
	// of a name the file already has is refused ("cluster manager: duplicate
	// cluster 'xds'"), and so is a second ADS gRPC service ("must have no
	// more than 1 gRPC services"): an override cannot move the file's xds
	// cluster. Resolve the cluster's host name to the test's address with
	// Hosts instead, and listen at the file's port there (ListenLoopbackPort).
	ConfigYAML string
	// Hosts are the names Envoy's DNS lookups resolve (name → IPv4 address),
	// answered by a DNS server on loopback that the harness starts for each
	// Envoy; every other name is NXDOMAIN, so Envoy queries no real server.
	Hosts map[string]string
	// Listeners are names of listeners Start waits for until they are bound.
	Listeners []string
	// LogLevel is Envoy's --log-level; "info" when empty.
	LogLevel string
	// Timeout bounds the start, up to ready and listening; 30s when zero.
	Timeout time.Duration
}

// Envoy is one running Envoy process, stopped when its test ends.
type Envoy struct {
	t       testing.TB
	dir     string
	logPath string
	admin   string // http://127.0.0.1:port
	client  *http.Client
	exited  chan struct{}
	waitErr error // set before exited is closed
}

// Start starts Envoy for t and returns once its admin API answers /ready
// with LIVE (for ADS: the first listeners and clusters have arrived, or
// their initial fetch timed out) and every listener in opts.Listeners is
// bound. Envoy runs with --disable-hot-restart, a dynamic base id, its own
// temporary directory and an admin port it chooses; its log goes to a file
// that is attached to the test's output if the test fails. The process is
// killed by t.Cleanup. Start skips or fails t as Require does when no Envoy
// is installed.
func Start(t testing.TB, opts Options) *Envoy {
	t.Helper()
	path := Require(t)
	e, err := start(t, path, opts)
	if err != nil {
		t.Fatalf("start envoy: %v", err)
	}
	return e
}

func start(t testing.TB, path string, opts Options) (*Envoy, error) {
	if opts.NodeID == "" {
		opts.NodeID = "envoytest"
	}
	if opts.LogLevel == "" {
		opts.LogLevel = "info"
	}
	if opts.Timeout == 0 {
		opts.Timeout = 30 * time.Second
	}
	dns, err := startResolver(t, opts.Hosts)
	if err != nil {
		return nil, err
	}
	dir := t.TempDir()
	e := &Envoy{
		t:       t,
		dir:     dir,
		logPath: filepath.Join(dir, "envoy.log"),
		client:  &http.Client{Timeout: 5 * time.Second},
		exited:  make(chan struct{}),
	}
	adminPath := filepath.Join(dir, "admin-address")
	args := []string{
		"--disable-hot-restart",
		"--use-dynamic-base-id",
		"--admin-address-path", adminPath,
		"--log-level", opts.LogLevel,
	}
	if opts.Bootstrap != "" {
		override, err := overrideYAML(opts.ConfigYAML, dns.dnsResolverConfig())
		if err != nil {
			return nil, err
		}
		args = append(args, "-c", opts.Bootstrap, "--config-yaml", override)
	} else {
		b, err := generatedBootstrap(opts.NodeID, opts.XDSAddr, dns.dnsResolverConfig())
		if err != nil {
			return nil, err
		}
		data, err := yaml.Marshal(b)
		if err != nil {
			return nil, err
		}
		file := filepath.Join(dir, "bootstrap.yaml")
		if err := os.WriteFile(file, data, 0o644); err != nil {
			return nil, err
		}
		args = append(args, "-c", file)
		if opts.ConfigYAML != "" {
			args = append(args, "--config-yaml", opts.ConfigYAML)
		}
	}

	logFile, err := os.Create(e.logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(path, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	go func() {
		e.waitErr = cmd.Wait()
		logFile.Close()
		close(e.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-e.exited:
			if !t.Failed() {
				t.Errorf("envoy exited before the test ended: %v", e.waitErr)
			}
		default:
			_ = cmd.Process.Kill()
			<-e.exited
		}
		if t.Failed() {
			t.Logf("envoy %s\n%s", strings.Join(args, " "), e.Log())
		}
	})

	ctx, cancel := context.WithTimeout(context.Background(), opts.Timeout)
	defer cancel()
	if err := e.waitReady(ctx, adminPath); err != nil {
		return nil, err
	}
	for _, name := range opts.Listeners {
		if _, err := e.WaitListener(ctx, name); err != nil {
			return nil, err
		}
	}
	return e, nil
}

// poll calls try every 20ms until it reports done, Envoy exits or ctx ends.
func (e *Envoy) poll(ctx context.Context, what string, try func() (done bool, err error)) error {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		done, err := try()
		if done {
			return err
		}
		last = err
		select {
		case <-e.exited:
			return fmt.Errorf("envoy exited while waiting for %s: %v", what, e.waitErr)
		case <-ctx.Done():
			if last != nil {
				return fmt.Errorf("waiting for %s: %w (last: %v)", what, ctx.Err(), last)
			}
			return fmt.Errorf("waiting for %s: %w", what, ctx.Err())
		case <-tick.C:
		}
	}
}

func (e *Envoy) waitReady(ctx context.Context, adminPath string) error {
	err := e.poll(ctx, "the admin address", func() (bool, error) {
		b, err := os.ReadFile(adminPath)
		addr := strings.TrimSpace(string(b))
		if err != nil || addr == "" {
			return false, err
		}
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return false, err // not written whole yet
		}
		e.admin = "http://" + addr
		return true, nil
	})
	if err != nil {
		return err
	}
	return e.poll(ctx, "/ready to answer LIVE", func() (bool, error) {
		b, err := e.Get("/ready")
		if err != nil {
			return false, err
		}
		return strings.TrimSpace(string(b)) == "LIVE", nil
	})
}

// AdminURL is the base URL of Envoy's admin API, such as
// http://127.0.0.1:41234.
func (e *Envoy) AdminURL() string { return e.admin }

// Get fetches an admin API path, such as "/server_info" or
// "/config_dump?resource=dynamic_active_clusters", and returns the body of
// a 200 response.
func (e *Envoy) Get(path string) ([]byte, error) {
	resp, err := e.client.Get(e.admin + path)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("admin %s: %w", path, err)
	}
	if resp.StatusCode != http.StatusOK {
		return b, fmt.Errorf("admin %s: %s: %s", path, resp.Status, bytes.TrimSpace(b))
	}
	return b, nil
}

// Listeners returns the listeners Envoy has bound, by name, with the
// address each is bound to: the real port where the configuration said 0.
func (e *Envoy) Listeners() (map[string]string, error) {
	b, err := e.Get("/listeners?format=json")
	if err != nil {
		return nil, err
	}
	var ls struct {
		ListenerStatuses []struct {
			Name         string `json:"name"`
			LocalAddress struct {
				SocketAddress struct {
					Address   string `json:"address"`
					PortValue int    `json:"port_value"`
				} `json:"socket_address"`
			} `json:"local_address"`
		} `json:"listener_statuses"`
	}
	if err := json.Unmarshal(b, &ls); err != nil {
		return nil, fmt.Errorf("admin /listeners: %w", err)
	}
	out := make(map[string]string, len(ls.ListenerStatuses))
	for _, l := range ls.ListenerStatuses {
		sa := l.LocalAddress.SocketAddress
		if sa.PortValue == 0 {
			continue // not bound yet
		}
		out[l.Name] = net.JoinHostPort(sa.Address, strconv.Itoa(sa.PortValue))
	}
	return out, nil
}

// ListenerAddr returns the host:port listener name is bound to, or "" when
// Envoy has no such listener bound.
func (e *Envoy) ListenerAddr(name string) string {
	ls, err := e.Listeners()
	if err != nil {
		e.t.Errorf("envoy listeners: %v", err)
		return ""
	}
	return ls[name]
}

// WaitListener waits until listener name is bound and returns its address.
func (e *Envoy) WaitListener(ctx context.Context, name string) (string, error) {
	var addr string
	err := e.poll(ctx, "listener "+name, func() (bool, error) {
		ls, err := e.Listeners()
		addr = ls[name]
		return addr != "", err
	})
	return addr, err
}

// Stats returns Envoy's counters and gauges whose names match the regular
// expression filter (all of them when it is empty).
func (e *Envoy) Stats(filter string) (map[string]uint64, error) {
	path := "/stats"
	if filter != "" {
		path += "?filter=" + url.QueryEscape(filter)
	}
	b, err := e.Get(path)
	if err != nil {
		return nil, err
	}
	out := map[string]uint64{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), ": ")
		if !ok {
			continue
		}
		if n, err := strconv.ParseUint(value, 10, 64); err == nil {
			out[name] = n // histograms, which are not numbers, are left out
		}
	}
	return out, sc.Err()
}

// Resource is one dynamic resource Envoy holds, as its config dump shows it.
type Resource struct {
	// Kind is "listener", "route" or "cluster".
	Kind string
	// Name is the resource's name.
	Name string
	// Version is the xDS version of the resource in use ("" when none is).
	Version string
	// Error is the reason Envoy gave for refusing the last update of this
	// resource, "" when there was none.
	Error string
}

// DynamicResources returns the listeners, route configurations and clusters
// Envoy received over xDS, from /config_dump.
func (e *Envoy) DynamicResources() ([]Resource, error) {
	b, err := e.Get("/config_dump")
	if err != nil {
		return nil, err
	}
	type errorState struct {
		Details string `json:"details"`
	}
	type named struct {
		Name string `json:"name"`
	}
	var dump struct {
		Configs []struct {
			DynamicListeners []struct {
				Name        string `json:"name"`
				ActiveState *struct {
					VersionInfo string `json:"version_info"`
				} `json:"active_state"`
				ErrorState *errorState `json:"error_state"`
			} `json:"dynamic_listeners"`
			DynamicActiveClusters []struct {
				VersionInfo string      `json:"version_info"`
				Cluster     named       `json:"cluster"`
				ErrorState  *errorState `json:"error_state"`
			} `json:"dynamic_active_clusters"`
			DynamicRouteConfigs []struct {
				VersionInfo string      `json:"version_info"`
				RouteConfig named       `json:"route_config"`
				ErrorState  *errorState `json:"error_state"`
			} `json:"dynamic_route_configs"`
		} `json:"configs"`
	}
	if err := json.Unmarshal(b, &dump); err != nil {
		return nil, fmt.Errorf("admin /config_dump: %w", err)
	}
	details := func(s *errorState) string {
		if s == nil {
			return ""
		}
		return s.Details
	}
	var out []Resource
	for _, c := range dump.Configs {
		for _, l := range c.DynamicListeners {
			r := Resource{Kind: "listener", Name: l.Name, Error: details(l.ErrorState)}
			if l.ActiveState != nil {
				r.Version = l.ActiveState.VersionInfo
			}
			out = append(out, r)
		}
		for _, cl := range c.DynamicActiveClusters {
			out = append(out, Resource{Kind: "cluster", Name: cl.Cluster.Name, Version: cl.VersionInfo, Error: details(cl.ErrorState)})
		}
		for _, rc := range c.DynamicRouteConfigs {
			out = append(out, Resource{Kind: "route", Name: rc.RouteConfig.Name, Version: rc.VersionInfo, Error: details(rc.ErrorState)})
		}
	}
	slices.SortFunc(out, func(a, b Resource) int { return strings.Compare(a.Kind+"/"+a.Name, b.Kind+"/"+b.Name) })
	return out, nil
}

// Log returns what Envoy has logged so far, without the long list of
// statically linked extensions it prints at start-up (LinkedExtensions reads
// that).
func (e *Envoy) Log() string {
	b, err := os.ReadFile(e.logPath)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	var out strings.Builder
	for line := range strings.Lines(string(b)) {
		if !isExtensionLine(line) {
			out.WriteString(line)
		}
	}
	return out.String()
}

// LinkedExtensions returns the statically linked extensions Envoy listed in
// its start-up log, by category (such as "envoy.filters.http").
func (e *Envoy) LinkedExtensions() (map[string][]string, error) {
	b, err := os.ReadFile(e.logPath)
	if err != nil {
		return nil, err
	}
	out := map[string][]string{}
	for line := range strings.Lines(string(b)) {
		if !isExtensionLine(line) {
			continue
		}
		_, list, _ := strings.Cut(line, "]   ")
		category, names, ok := strings.Cut(list, ": ")
		if !ok {
			continue
		}
		for n := range strings.SplitSeq(strings.TrimSpace(names), ",") {
			out[category] = append(out[category], strings.TrimSpace(n))
		}
	}
	if len(out) == 0 {
		return nil, errors.New("no statically linked extensions in the log (log level above info?)")
	}
	return out, nil
}

// isExtensionLine reports whether line is one of the start-up log's
// "[...][info][main] [source/server/server.cc:467]   category: a, b" lines.
func isExtensionLine(line string) bool {
	return strings.Contains(line, "[main] [source/server/server.cc:") && strings.Contains(line, "]   ")
}
