// Package envoytest runs the real Envoy 1.40 for a Go test, through package
// envoy/launch: it finds the binary (as `make envoy` does) or skips the test,
// starts Envoy with an admin port of its own choosing against the test's
// ADS server, waits until the admin API says it is ready and its listeners
// are bound, attaches its log to the output of a failed test, and stops it
// when the test ends. Several Envoys may run at once: nothing is shared
// between them (no fixed port, file or base id).
//
// Envoy resolves names through a DNS server on loopback (Options.Hosts), so
// a bootstrap that names its hosts, like the unmodified envoy/bootstrap.yaml,
// runs in a test; see Options.Bootstrap.
//
// TestEnvoyIsTheOneCustosSupports checks the version and the linked
// extensions; TestEnvoyAcceptsEveryConfiguration checks that Envoy ACKs every
// resource Custos' xDS serves for the example and fixture configurations.
package envoytest

import (
	"context"
	"errors"
	"net"
	"os"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/custos-dev/custos/envoy/launch"
)

// WantVersion is the Envoy release Custos is tested against (major.minor).
const WantVersion = launch.WantVersion

// ErrNotFound is returned by Find when no usable Envoy is installed.
var ErrNotFound = launch.ErrNotFound

// Options say how to start Envoy; see launch.Options. Start fills in Path
// (Require's), Dir (the test's temporary directory, so the log outlives
// Envoy) and NodeID ("envoytest") when they are empty.
type Options = launch.Options

// TLSFiles are the data plane's client certificate and the CA that verifies
// Custos (launch.TLSFiles).
type TLSFiles = launch.TLSFiles

// Resource is one dynamic resource Envoy holds, as its config dump shows it.
type Resource = launch.Resource

// Find returns the path of the Envoy binary the tests use (launch.Find).
func Find() (path string, err error) { return launch.Find() }

// Version runs `path --version` and returns the release it reports, such as
// "1.40.0".
func Version(path string) (string, error) { return launch.Version(path) }

// Require returns Find's path, or skips the test with one line saying how
// to install Envoy. With CI=true in the environment it fails the test
// instead: CI must never pass by skipping what needs Envoy.
func Require(t testing.TB) string {
	t.Helper()
	path, err := Find()
	if err == nil {
		return path
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%v (CI=true: tests that need Envoy must not skip)", err)
	}
	t.Skip(err)
	return ""
}

// Envoy is one running Envoy process, stopped when its test ends. It has
// the methods of launch.Envoy; ListenerAddr reports its error to the test.
type Envoy struct {
	*launch.Envoy
	t      testing.TB
	closed atomic.Bool // Close was called by the test, not the cleanup
}

// Start starts Envoy for t and returns once its admin API answers /ready
// with LIVE (for ADS: the first listeners and clusters have arrived, or
// their initial fetch timed out) and every listener in opts.Listeners is
// bound. Envoy runs with --disable-hot-restart, a dynamic base id, its own
// temporary directory and an admin port it chooses; its log goes to a file
// that is attached to the test's output if the test fails. The process is
// killed by t.Cleanup, and it is an error for it to exit before unless the
// test closed it. Start skips or fails t as Require does when no Envoy is
// installed.
func Start(t testing.TB, opts Options) *Envoy {
	t.Helper()
	if opts.Path == "" {
		opts.Path = Require(t)
	}
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
	}
	if opts.NodeID == "" {
		opts.NodeID = "envoytest"
	}
	le, err := launch.Start(context.Background(), opts)
	if err != nil {
		var serr *launch.StartError
		if errors.As(err, &serr) {
			t.Logf("envoy %s\n%s", strings.Join(serr.Args, " "), serr.Log)
			t.Fatalf("start envoy: %v", serr.Err)
		}
		t.Fatalf("%v", err)
	}
	e := &Envoy{Envoy: le, t: t}
	t.Cleanup(func() {
		select {
		case <-e.Done():
			if !e.closed.Load() && !t.Failed() {
				t.Errorf("envoy exited before the test ended: %v", e.Err())
			}
		default:
		}
		if err := e.Envoy.Close(); err != nil {
			t.Errorf("stop envoy: %v", err)
		}
		if t.Failed() {
			t.Logf("envoy %s\n%s", strings.Join(e.Args(), " "), e.Log())
		}
	})
	return e
}

// Close stops Envoy before the test ends (launch.Envoy.Close).
func (e *Envoy) Close() error {
	e.closed.Store(true)
	return e.Envoy.Close()
}

// ListenerAddr returns the host:port listener name is bound to, or "" when
// Envoy has no such listener bound; an admin API error fails the test.
func (e *Envoy) ListenerAddr(name string) string {
	ls, err := e.Listeners()
	if err != nil {
		e.t.Errorf("envoy listeners: %v", err)
		return ""
	}
	return ls[name]
}

// ListenLoopbackPort listens on TCP port on a loopback address of its own
// (a random one of 127.0.0.0/8), closed when the test ends. It is for a
// server that a configuration reaches at a fixed port, such as the
// custos:18000 of envoy/bootstrap.yaml: map the name to the listener's
// address in Options.Hosts, and several tests may each have their own.
func ListenLoopbackPort(t testing.TB, port int) net.Listener {
	t.Helper()
	l, err := launch.ListenLoopbackPort(port)
	if err != nil {
		t.Fatalf("%v", err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}
