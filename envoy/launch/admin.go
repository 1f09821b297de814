package launch

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
	"slices"
	"strconv"
	"strings"
)

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
// Envoy has no such listener bound or its admin API does not answer
// (Listeners says why).
func (e *Envoy) ListenerAddr(name string) string {
	ls, _ := e.Listeners()
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
// that). After Close it has the log only if Options.Dir kept it.
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
