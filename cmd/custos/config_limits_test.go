package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/custos-dev/custos/config"
	"github.com/custos-dev/custos/config/configtest"
)

// TestConfigValidateRefusesHostileFiles runs `custos config validate` on
// each input of issue 14 that once exhausted memory, blocked or flooded the
// terminal: each ends at once, non-zero, with a one-line reason.
func TestConfigValidateRefusesHostileFiles(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo.yaml")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	huge := filepath.Join(dir, "huge.yaml")
	if err := os.WriteFile(huge, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(huge, 1<<30); err != nil { // sparse
		t.Fatal(err)
	}
	tests := []struct {
		name, path, reason string
	}{
		{"alias bomb", writeFile(t, "bomb.yaml", string(configtest.AliasBomb())),
			fmt.Sprintf("alias *conn expands the configuration to more than %d YAML nodes, the limit", config.MaxNodes)},
		{"/dev/zero", "/dev/zero", "not a regular file (a character device)"},
		{"FIFO", fifo, "not a regular file (a FIFO)"},
		{"directory", dir, "not a regular file (a directory)"},
		{"huge file", huge, "1073741824 bytes, more than 1048576 bytes (1 MiB), the limit"},
		{"long value", writeFile(t, "long.yaml", "listen:\n  grpc: "+strings.Repeat("x", 100_000)+"\n"),
			`listen.grpc (line 2): "` + strings.Repeat("x", 64) + `…" is not a valid address`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stdout, stderr, err := validateWithin(t, tt.path, 10*time.Second)
			var ue usageError
			switch {
			case err == nil:
				t.Fatalf("validated: %s", stdout)
			case errors.As(err, &ue):
				t.Fatalf("a usage error: %v", err)
			case strings.Contains(err.Error(), "\n"):
				t.Errorf("reason is not one line: %q", err)
			case !strings.Contains(err.Error(), tt.reason) || !strings.Contains(err.Error(), tt.path):
				t.Errorf("reason %q, want %s and %q", err, tt.path, tt.reason)
			}
			if len(stdout)+len(stderr) > 0 {
				t.Errorf("printed more than the reason: %q %q", stdout, stderr)
			}
		})
	}
}

func TestConfigValidateCapsTheErrorsListed(t *testing.T) {
	const bad = 1000
	src := "connections:\n  - name: a\n    upstream: http://127.0.0.1:1\n    hosts:\n" + strings.Repeat("      - 7\n", bad)
	p := writeFile(t, "many.yaml", src)
	_, stderr, err := run(context.Background(), "config", "validate", "--config", p)
	want := fmt.Sprintf("%s: %d error(s), the first %d listed", p, bad, config.MaxErrors)
	if err == nil || err.Error() != want {
		t.Fatalf("reason %v, want %q", err, want)
	}
	lines := strings.Split(strings.TrimSuffix(stderr, "\n"), "\n")
	if len(lines) != config.MaxErrors+1 {
		t.Fatalf("%d lines on stderr, want %d errors and a count", len(lines), config.MaxErrors)
	}
	if want := fmt.Sprintf("%s: and %d more errors (only the first %d are listed)", p, bad-config.MaxErrors, config.MaxErrors); lines[config.MaxErrors] != want {
		t.Errorf("last line %q, want %q", lines[config.MaxErrors], want)
	}
}

// validateWithin runs `config validate --config path`, failing the test if
// it has not returned within d.
func validateWithin(t *testing.T, path string, d time.Duration) (stdout, stderr string, err error) {
	t.Helper()
	type result struct {
		stdout, stderr string
		err            error
	}
	done := make(chan result, 1)
	go func() {
		var r result
		r.stdout, r.stderr, r.err = run(context.Background(), "config", "validate", "--config", path)
		done <- r
	}()
	select {
	case r := <-done:
		return r.stdout, r.stderr, r.err
	case <-time.After(d):
		// Unblock a read stuck on a FIFO, so that the goroutine ends.
		if w, err := os.OpenFile(path, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
			w.Close()
		}
		t.Fatalf("config validate --config %s did not return within %s", path, d)
		return "", "", nil
	}
}
