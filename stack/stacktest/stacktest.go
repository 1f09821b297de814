// Package stacktest is the end-to-end fixture: the control plane, a data
// plane, a recording upstream and its connections, started for one test and
// stopped by t.Cleanup. Every end-to-end test runs through both data planes
// with ForEachDataPlane: the Go one always, real Envoy when it is installed
// (`make envoy`); without Envoy the Envoy half skips with one line, except
// when CI=true, where it fails.
package stacktest

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"sync"
	"testing"

	"github.com/custos-dev/custos/audit"
	"github.com/custos-dev/custos/config"
	"github.com/custos-dev/custos/controlplane"
	"github.com/custos-dev/custos/envoy/envoytest"
	"github.com/custos-dev/custos/examples/demo"
	"github.com/custos-dev/custos/extproc"
	"github.com/custos-dev/custos/filters/record"
	"github.com/custos-dev/custos/stack"
)

// DataPlanes are the data planes every end-to-end test runs through.
var DataPlanes = []stack.DataPlane{stack.Go, stack.Envoy}

// ForEachDataPlane runs f as one subtest per data plane, named after it.
func ForEachDataPlane(t *testing.T, f func(t *testing.T, dp stack.DataPlane)) {
	t.Helper()
	for _, dp := range DataPlanes {
		t.Run(string(dp), func(t *testing.T) {
			if dp == stack.Envoy {
				envoytest.Require(t)
			}
			f(t, dp)
		})
	}
}

// Options configure a fixture.
type Options struct {
	// Handler is the upstream's handler (default: the demo API).
	Handler http.Handler
	// Extra is YAML appended to the "customers" configuration
	// (stack.CustomersConfig); it may use the upstream's URL through Config.
	Extra string
	// Config, if set, builds the configuration from the upstream's URL
	// instead of CustomersConfig + Extra.
	Config func(upstreamURL string) (*config.Config, error)
	// Stages builds the per-request stages (default: the defaults).
	Stages controlplane.StagesFunc
}

// Fixture is a running stack with its upstream.
type Fixture struct {
	*stack.Stack
	// URL is the data plane's base URL (http://ADDR).
	URL string
	// Upstream is the recording upstream.
	Upstream *stack.Upstream
	// Config is the configuration the stack runs.
	Config *config.Config
	// Log holds both planes' logs (and Envoy's), attached to the test's
	// output when it fails.
	Log *Buffer
	// Events are the events the record stage received.
	Events *Events
}

// Start starts a fixture on data plane dp.
func Start(t *testing.T, dp stack.DataPlane, opts Options) *Fixture {
	t.Helper()
	h := opts.Handler
	if h == nil {
		h = demo.Handler()
	}
	up, err := stack.StartUpstream(h)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(up.Close)
	build := opts.Config
	if build == nil {
		build = func(u string) (*config.Config, error) { return stack.CustomersConfig(u, opts.Extra) }
	}
	cfg, err := build(up.URL)
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	if cfg.Audit.SigningKeyFile == "" {
		// Every stack keeps real evidence: an audit log and its signing key
		// in the test's own directories.
		c := *cfg
		c.Audit.Dir = filepath.Join(t.TempDir(), "audit")
		c.Audit.SigningKeyFile = filepath.Join(t.TempDir(), "keys", "audit.key")
		if _, err := audit.LoadOrCreateSigningKey(c.Audit.SigningKeyFile, "custos-test", true); err != nil {
			t.Fatal(err)
		}
		cfg = &c
	}
	logs := &Buffer{}
	events := &Events{}
	stages := opts.Stages
	if stages == nil {
		stages = extproc.DefaultStages
	}
	st, err := stack.Start(context.Background(), stack.Options{
		Config:    cfg,
		NodeID:    t.Name(),
		Logger:    slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		DataPlane: dp,
		EnvoyLog:  logs,
		Stages: func(c *config.Config, l *slog.Logger) (extproc.Stages, error) {
			st, err := stages(c, l)
			events.next = st.Record
			st.Record = events
			return st, err
		},
	})
	if err != nil {
		t.Fatalf("start the %s stack: %v\n%s", dp, err, logs.String())
	}
	t.Cleanup(func() {
		http.DefaultClient.CloseIdleConnections()
		st.Close()
		if t.Failed() {
			t.Logf("logs of the %s stack:\n%s", dp, logs.String())
		}
	})
	return &Fixture{Stack: st, URL: "http://" + st.Addr, Upstream: up, Config: cfg, Log: logs, Events: events}
}

// Buffer is a bytes.Buffer safe for concurrent writers.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

// String returns everything written.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

var _ io.Writer = (*Buffer)(nil)

// Events keeps every event the record stage receives, then hands it on to
// the stage it wraps.
type Events struct {
	mu   sync.Mutex
	got  []record.Event
	next record.Recorder
}

// Record keeps e and records it with the wrapped recorder.
func (ev *Events) Record(ctx context.Context, e record.Event) error {
	ev.mu.Lock()
	ev.got = append(ev.got, e)
	next := ev.next
	ev.mu.Unlock()
	if next == nil {
		return nil
	}
	return next.Record(ctx, e)
}

// Of returns the events of kind k for request id (every request when id is "").
func (ev *Events) Of(k record.Kind, id string) []record.Event {
	ev.mu.Lock()
	defer ev.mu.Unlock()
	var out []record.Event
	for _, e := range ev.got {
		if e.Kind == k && (id == "" || e.RequestID == id) {
			out = append(out, e)
		}
	}
	return out
}
