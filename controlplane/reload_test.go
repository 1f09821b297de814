package controlplane

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/custos-dev/custos/config"
	"github.com/custos-dev/custos/config/configtest"
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

	// stale: a reload of the first file, which the rewrite loop below may
	// have queued more than once on a slow machine; it may arrive late.
	stale := func(c *config.Config) bool {
		return len(c.Connections) == 1 && c.Connections[0].Name == "one"
	}
	next := func(what string) *config.Config {
		t.Helper()
		timeout := time.After(5 * time.Second)
		for {
			select {
			case c := <-applied:
				if !stale(c) {
					return c
				}
			case <-timeout:
				t.Fatalf("no reload after %s", what)
				return nil
			}
		}
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
	for wait := time.After(300 * time.Millisecond); ; {
		select {
		case c := <-applied:
			if !stale(c) {
				t.Fatalf("an invalid file was applied: %+v", c)
			}
			continue
		case <-wait:
		}
		break
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

// logLines is a slog destination that hands each line to a channel.
type logLines chan string

func (l logLines) Write(p []byte) (int, error) {
	l <- string(p)
	return len(p), nil
}

func TestReloaderRejectsHostileFilesAndKeepsServing(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "custos.yaml")
	// replace puts the file made by make at a temporary path over path, as
	// an editor (or an attacker with write access to the directory) would.
	replace := func(make func(tmp string) error) {
		t.Helper()
		tmp := filepath.Join(dir, "next")
		os.Remove(tmp)
		if err := make(tmp); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, path); err != nil {
			t.Fatal(err)
		}
	}
	content := func(s string) func(string) error {
		return func(tmp string) error { return os.WriteFile(tmp, []byte(s), 0o600) }
	}
	const good = "connections:\n  - name: one\n    upstream: http://127.0.0.1:1\n"
	replace(content(good))

	applied := make(chan *config.Config, 10)
	logs := make(logLines, 100)
	r := &Reloader{
		Path:     path,
		Apply:    func(_ context.Context, c *config.Config) error { applied <- c; return nil },
		Log:      slog.New(slog.NewTextHandler(logs, nil)),
		Debounce: 10 * time.Millisecond,
	}
	if err := r.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	<-applied
	<-logs

	hostile := []struct {
		name   string
		make   func(tmp string) error
		reason string
	}{
		{"alias bomb", content(string(configtest.AliasBomb())), "more than 100000 YAML nodes"},
		{"FIFO", func(tmp string) error { return syscall.Mkfifo(tmp, 0o600) }, "not a regular file (a FIFO)"},
		{"/dev/zero", func(tmp string) error { return os.Symlink("/dev/zero", tmp) }, "not a regular file (a character device)"},
		{"huge file", func(tmp string) error {
			f, err := os.Create(tmp)
			if err != nil {
				return err
			}
			defer f.Close()
			return f.Truncate(1 << 30)
		}, "the limit"},
	}

	// Reload refuses each at once, in bounded memory, and applies nothing.
	for _, h := range hostile {
		replace(h.make)
		var err error
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		start := time.Now()
		err = r.Reload(context.Background())
		runtime.ReadMemStats(&after)
		if err == nil || !strings.Contains(err.Error(), h.reason) {
			t.Errorf("%s: Reload: %v, want %q", h.name, err, h.reason)
		}
		if used := after.TotalAlloc - before.TotalAlloc; used > 64<<20 {
			t.Errorf("%s: Reload allocated %d MB", h.name, used>>20)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("%s: Reload took %s", h.name, d)
		}
		if line := <-logs; !strings.Contains(line, "config rejected; the previous configuration stays") {
			t.Errorf("%s: logged %q", h.name, line)
		}
		select {
		case c := <-applied:
			t.Fatalf("%s was applied: %+v", h.name, c)
		default:
		}
	}

	// The watch loop likewise: each is rejected, none stops the loop, and
	// a good file afterwards is applied.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	rejected := func(what, reason string) {
		t.Helper()
		timeout := time.After(10 * time.Second)
		for {
			select {
			case line := <-logs:
				if strings.Contains(line, "config rejected") && strings.Contains(line, reason) {
					return
				}
			case c := <-applied:
				t.Fatalf("%s was applied: %+v", what, c)
			case <-timeout:
				t.Fatalf("%s was never rejected", what)
			}
		}
	}
	// The watcher may not be in place at once: rewrite until it sees one.
	deadline := time.Now().Add(5 * time.Second)
	for seen := false; !seen; {
		replace(hostile[0].make)
		select {
		case line := <-logs:
			seen = strings.Contains(line, "config rejected")
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("the file change was never seen")
		}
	}
	for _, h := range hostile[1:] {
		replace(h.make)
		rejected(h.name, h.reason)
	}
	replace(content(good + "  - name: two\n    upstream: http://127.0.0.1:2\n"))
	select {
	case c := <-applied:
		if len(c.Connections) != 2 {
			t.Fatalf("applied %d connections, want 2", len(c.Connections))
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a good file after the hostile ones was never applied")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
