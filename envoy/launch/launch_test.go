package launch_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/custos-dev/custos/envoy/launch"
)

// helloListener is a static listener answering every request with "hello",
// merged into the generated bootstrap: Envoy without an ADS server.
const helloListener = `
static_resources:
  listeners:
  - name: hello
    address: {socket_address: {address: 127.0.0.1, port_value: 0}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: hello
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {prefix: /}
                direct_response: {status: 200, body: {inline_string: hello}}
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
`

// envoyPath is Find's path; without Envoy the test skips, or fails with
// CI=true, as envoytest.Require does.
func envoyPath(t *testing.T) string {
	path, err := launch.Find()
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%v (CI=true: tests that need Envoy must not skip)", err)
		}
		t.Skip(err)
	}
	return path
}

// TestStartServesAndCloseStops runs one Envoy as a program would, with no
// help from package testing: Start returns it serving its listener, Close
// kills it, closes Done and removes the directory Start made.
func TestStartServesAndCloseStops(t *testing.T) {
	t.Parallel()
	envoyPath(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out bytes.Buffer // read only after Done, which Envoy's writes happen before
	e, err := launch.Start(ctx, launch.Options{
		ConfigYAML: helloListener,
		Listeners:  []string{"hello"},
		LogOutput:  &out,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	select {
	case <-e.Done():
		t.Fatalf("Done closed while Envoy runs: %v", e.Err())
	default:
	}
	if err := e.Err(); err != nil {
		t.Errorf("Err while Envoy runs: %v", err)
	}

	addr := e.ListenerAddr("hello")
	if addr == "" || strings.HasSuffix(addr, ":0") {
		t.Fatalf("ListenerAddr(hello) = %q", addr)
	}
	resp, err := http.Get("http://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || string(body) != "hello" {
		t.Fatalf("GET %s: %q, %v; want hello", addr, body, err)
	}
	stats, err := e.Stats(`^http\.hello\.downstream_rq_total$`)
	if err != nil || stats["http.hello.downstream_rq_total"] < 1 {
		t.Errorf("Stats: %v, %v; want http.hello.downstream_rq_total >= 1", stats, err)
	}

	i := slices.Index(e.Args(), "--admin-address-path")
	if i < 0 || i+1 >= len(e.Args()) {
		t.Fatalf("no --admin-address-path in %q", e.Args())
	}
	dir := filepath.Dir(e.Args()[i+1])
	if err := e.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	select {
	case <-e.Done():
	default:
		t.Fatal("Done still open after Close")
	}
	if e.Err() == nil {
		t.Error("Err is nil after Close killed Envoy")
	}
	if err := e.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Envoy's directory %s after Close: %v", dir, err)
	}
	if _, err := http.Get("http://" + addr + "/"); err == nil {
		t.Errorf("%s still answers after Close", addr)
	}
	if !strings.Contains(out.String(), "starting main dispatch loop") {
		t.Errorf("LogOutput lacks Envoy's start-up:\n%s", out.String())
	}
}

// TestStartErrorHasTheLog starts Envoy with a listener it refuses: Start
// returns a *StartError ending with Envoy's reason, and leaves no process
// and no directory behind.
func TestStartErrorHasTheLog(t *testing.T) {
	envoyPath(t)
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	bad := strings.Replace(helloListener, "router.v3.Router", "router.v3.NoSuchRouter", 1)
	e, err := launch.Start(context.Background(), launch.Options{ConfigYAML: bad})
	if err == nil {
		e.Close()
		t.Fatal("Start succeeded with a listener Envoy must refuse")
	}
	var serr *launch.StartError
	if !errors.As(err, &serr) {
		t.Fatalf("Start: %T %v, want a *StartError", err, err)
	}
	if !strings.Contains(err.Error(), "NoSuchRouter") {
		t.Errorf("the error does not end with Envoy's reason:\n%v", err)
	}
	if left, _ := os.ReadDir(tmp); len(left) != 0 {
		t.Errorf("left behind in TMPDIR: %v", left)
	}
}
