package controlplane

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/custos-dev/custos/config"
)

func TestReloaderFollowsFileChangesAndSIGHUP(t *testing.T) {
	path := filepath.Join(t.TempDir(), "custos.yaml")
	write := func(s string) {
		t.Helper()
		// Write to a temporary file and rename over, as editors do.
		tmp := path + ".tmp"
		if err := os.WriteFile(tmp, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, path); err != nil {
			t.Fatal(err)
		}
	}
	write("connections: []\n")
	applied := make(chan *config.Config, 10)
	r := &Reloader{
		Path:     path,
		Apply:    func(_ context.Context, c *config.Config) error { applied <- c; return nil },
		Log:      slog.New(slog.NewTextHandler(io.Discard, nil)),
		Debounce: 10 * time.Millisecond,
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()

	next := func(what string) *config.Config {
		t.Helper()
		select {
		case c := <-applied:
			return c
		case <-time.After(5 * time.Second):
			t.Fatalf("no reload after %s", what)
		}
		return nil
	}
	// The watcher may not be in place at once: rewrite until it sees one.
	deadline := time.Now().Add(5 * time.Second)
	var c *config.Config
	for c == nil {
		write("connections:\n  - name: one\n    upstream: http://127.0.0.1:1\n")
		select {
		case c = <-applied:
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("the file change was never seen")
		}
	}
	if len(c.Connections) != 1 {
		t.Fatalf("applied %d connections", len(c.Connections))
	}
	for len(applied) > 0 {
		<-applied
	}

	// An invalid file is never applied.
	write("connections:\n  - name: Bad Name\n")
	select {
	case c := <-applied:
		t.Fatalf("an invalid file was applied: %+v", c)
	case <-time.After(300 * time.Millisecond):
	}

	write("connections:\n  - name: one\n    upstream: http://127.0.0.1:1\n  - name: two\n    upstream: http://127.0.0.1:2\n")
	if c := next("a valid rewrite"); len(c.Connections) != 2 {
		t.Fatalf("applied %d connections, want 2", len(c.Connections))
	}
	// Run is in its loop with SIGHUP registered: a SIGHUP reloads.
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	if c := next("SIGHUP"); len(c.Connections) != 2 {
		t.Fatalf("SIGHUP applied %d connections", len(c.Connections))
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
