// Package azuritetest runs Azurite, the Azure Storage emulator (npm
// package azurite), for tests: installed once with npm into a cache
// directory, started on loopback free ports for Blob, Queue and Table with
// in-memory persistence, and stopped when the test binary ends. Azurite
// checks SharedKey and SAS signatures as Azure Storage does, so a test
// through it proves a signature, not just a request shape.
//
// A test package starts at most one Azurite, on first use:
//
//	func TestMain(m *testing.M) { azuritetest.Main(m) }
//
//	func TestBlob(t *testing.T) {
//		az := azuritetest.Shared(t)
//		// az.BlobURL is http://127.0.0.1:PORT/devstoreaccount1
//	}
//
// Without Node.js and npm, or when the install fails, Shared skips the test
// with one line that says how to install Azurite; with CI=true it fails it.
package azuritetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// The pinned Azurite and its well-known development account.
const (
	// Version is the azurite npm package version the tests install.
	Version = "3.37.0"
	// Account is Azurite's development storage account.
	Account = "devstoreaccount1"
	// Key is the development account's well-known key (public: it is in
	// Azurite's documentation; tests still check it is never logged).
	Key = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)

// EnvBinary names an azurite executable to use instead of installing one.
const EnvBinary = "AZURITE"

// EnvCache overrides the install cache directory (default
// $XDG_CACHE_HOME/custos-azurite, usually ~/.cache/custos-azurite).
const EnvCache = "CUSTOS_AZURITE_CACHE"

// Azurite is one running emulator.
type Azurite struct {
	// BlobURL, QueueURL and TableURL are the development account's
	// path-style service URLs, http://127.0.0.1:PORT/devstoreaccount1.
	BlobURL, QueueURL, TableURL string
	// BlobAddr, QueueAddr and TableAddr are the listening addresses.
	BlobAddr, QueueAddr, TableAddr string

	cmd  *exec.Cmd
	out  *tailBuffer
	done chan struct{}
	dir  string
}

// ConnectionString is the development account's connection string for
// this instance (what the Azure SDKs' FromConnectionString accept).
func (a *Azurite) ConnectionString() string {
	return fmt.Sprintf("DefaultEndpointsProtocol=http;AccountName=%s;AccountKey=%s;BlobEndpoint=%s;QueueEndpoint=%s;TableEndpoint=%s;",
		Account, Key, a.BlobURL, a.QueueURL, a.TableURL)
}

var shared struct {
	once sync.Once
	az   *Azurite
	err  error
}

// Main runs the package's tests and then stops the Azurite that Shared
// started, if any. Call it from TestMain.
func Main(m *testing.M) {
	code := m.Run()
	if shared.az != nil {
		_ = shared.az.Stop()
	}
	os.Exit(code)
}

// Shared returns the test package's Azurite, installing and starting it on
// first use (Main stops it). When Azurite cannot run it skips t with one
// line saying how to install it, or fails t when CI=true.
func Shared(t testing.TB) *Azurite {
	t.Helper()
	shared.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		shared.az, shared.err = Start(ctx)
	})
	if shared.err != nil {
		msg := fmt.Sprintf("azurite unavailable: %v; install Node.js and npm (the tests then install azurite@%s themselves), or run `npm install -g azurite@%s`, or set %s to an azurite executable",
			oneLine(shared.err), Version, Version, EnvBinary)
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return shared.az
}

// Start installs Azurite if needed and starts a new instance on loopback
// free ports. Stop it with Stop.
func Start(ctx context.Context) (*Azurite, error) {
	bin, err := Install(ctx)
	if err != nil {
		return nil, err
	}
	var last error
	for range 3 { // a free port can be taken between choosing and binding it
		az, err := start(ctx, bin)
		if err == nil {
			return az, nil
		}
		last = err
		if ctx.Err() != nil {
			break
		}
	}
	return nil, last
}

// Install returns an azurite executable: $AZURITE, else the pinned version
// in the cache directory (installed there with npm on first use), else
// one on PATH.
func Install(ctx context.Context) (string, error) {
	if p := os.Getenv(EnvBinary); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("%s=%s: %w", EnvBinary, p, err)
		}
		return p, nil
	}
	if _, err := exec.LookPath("node"); err != nil {
		return "", errors.New("node is not on PATH")
	}
	cache, err := CacheDir()
	if err != nil {
		return "", err
	}
	dir := filepath.Join(cache, Version)
	bin := filepath.Join(dir, "node_modules", ".bin", "azurite")
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	npm, err := exec.LookPath("npm")
	if err != nil {
		if p, err := exec.LookPath("azurite"); err == nil {
			return p, nil
		}
		return "", errors.New("npm is not on PATH")
	}
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return "", fmt.Errorf("azurite cache: %w", err)
	}
	// Install beside the final directory and rename: two test binaries
	// installing at once never see half an install.
	tmp, err := os.MkdirTemp(cache, Version+".installing-")
	if err != nil {
		return "", fmt.Errorf("azurite cache: %w", err)
	}
	defer os.RemoveAll(tmp)
	ictx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ictx, npm, "install", "--prefix", tmp, "--no-audit", "--no-fund", "--loglevel=error", "azurite@"+Version)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("npm install azurite@%s: %w: %s", Version, err, lastLine(out))
	}
	if err := os.Rename(tmp, dir); err != nil {
		if _, serr := os.Stat(bin); serr == nil { // another binary won the race
			return bin, nil
		}
		return "", fmt.Errorf("azurite cache: %w", err)
	}
	return bin, nil
}

// CacheDir is where Install keeps Azurite: $CUSTOS_AZURITE_CACHE, else
// custos-azurite in the user's cache directory. .ci/run installs the
// pinned version into CacheDir()/Version.
func CacheDir() (string, error) {
	if d := os.Getenv(EnvCache); d != "" {
		return d, nil
	}
	d, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("azurite cache: %w", err)
	}
	return filepath.Join(d, "custos-azurite"), nil
}

func start(ctx context.Context, bin string) (*Azurite, error) {
	ports, err := freePorts(3)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "custos-azurite-")
	if err != nil {
		return nil, err
	}
	addr := func(p int) string { return fmt.Sprintf("127.0.0.1:%d", p) }
	a := &Azurite{
		BlobAddr: addr(ports[0]), QueueAddr: addr(ports[1]), TableAddr: addr(ports[2]),
		out: &tailBuffer{max: 8 << 10}, done: make(chan struct{}), dir: dir,
	}
	a.BlobURL = "http://" + a.BlobAddr + "/" + Account
	a.QueueURL = "http://" + a.QueueAddr + "/" + Account
	a.TableURL = "http://" + a.TableAddr + "/" + Account
	// --silent: no access log, whose URLs would carry SAS signatures.
	a.cmd = exec.Command(bin,
		"--blobHost", "127.0.0.1", "--blobPort", fmt.Sprint(ports[0]),
		"--queueHost", "127.0.0.1", "--queuePort", fmt.Sprint(ports[1]),
		"--tableHost", "127.0.0.1", "--tablePort", fmt.Sprint(ports[2]),
		"--inMemoryPersistence", "--skipApiVersionCheck", "--silent", "--disableTelemetry")
	a.cmd.Dir = dir // its workspace: Azurite refuses --location with --inMemoryPersistence
	a.cmd.Stdout, a.cmd.Stderr = a.out, a.out
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "AZURITE_ACCOUNTS=") { // only the development account
			a.cmd.Env = append(a.cmd.Env, kv)
		}
	}
	setProcAttr(a.cmd)
	if err := a.cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("start azurite: %w", err)
	}
	go func() { _ = a.cmd.Wait(); close(a.done) }()
	if err := a.wait(ctx, time.Minute); err != nil {
		_ = a.Stop()
		return nil, err
	}
	return a, nil
}

// wait polls each service until it answers HTTP.
func (a *Azurite) wait(ctx context.Context, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	client := &http.Client{Timeout: 2 * time.Second}
	for _, addr := range []string{a.BlobAddr, a.QueueAddr, a.TableAddr} {
		for {
			resp, err := client.Get("http://" + addr + "/" + Account + "?comp=list")
			if err == nil {
				resp.Body.Close()
				break
			}
			select {
			case <-a.done:
				return fmt.Errorf("azurite exited before listening on %s: %s", addr, lastLine([]byte(a.out.String())))
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(100 * time.Millisecond):
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("azurite not listening on %s after %s: %s", addr, limit, lastLine([]byte(a.out.String())))
			}
		}
	}
	return nil
}

// Stop ends the emulator (its whole process group) and removes its
// workspace.
func (a *Azurite) Stop() error {
	stopProcess(a.cmd, a.done)
	return os.RemoveAll(a.dir)
}

// Output is what Azurite printed (its last 8 KiB), SAS signatures redacted.
func (a *Azurite) Output() string { return a.out.String() }

func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("free port: %w", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

var sigParam = regexp.MustCompile(`(?i)(sig=)[^&\s"]*`)

// tailBuffer keeps the last max bytes written, safely for concurrent
// writers (Azurite's stdout and stderr).
type tailBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
	max int
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf.Write(p)
	if over := t.buf.Len() - t.max; over > 0 {
		t.buf.Next(over)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return sigParam.ReplaceAllString(t.buf.String(), "${1}REDACTED")
}

func lastLine(b []byte) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return oneLine(errors.New(lines[len(lines)-1]))
}

func oneLine(err error) string {
	s := strings.Join(strings.Fields(err.Error()), " ")
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return s
}
