// Package launch runs the real Envoy 1.40 for Custos: it finds the binary
// (as `make envoy` does), starts it with an admin port of its own choosing
// against an ADS server or a bootstrap file, waits until the admin API says
// it is ready and its listeners are bound, and stops it on Close. Several
// Envoys may run at once: nothing is shared between them (no fixed port,
// file or base id).
//
// Envoy resolves names through a DNS server that launch runs on loopback
// for each Envoy (Options.Hosts), so a bootstrap that names its hosts, like
// the unmodified envoy/bootstrap.yaml, runs anywhere; see Options.Bootstrap.
//
// `custos dev --envoy` and the programs in bench/ start Envoy with it;
// package envoy/envoytest wraps it for Go tests. TestStartServesAndCloseStops
// runs one Envoy through its life.
package launch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"go.yaml.in/yaml/v3"
)

// Options say how to start Envoy.
type Options struct {
	// Path is the Envoy binary to run; Find's when empty.
	Path string
	// XDSAddr is the ip:port of an ADS server. The generated bootstrap
	// points ADS at it the way envoy/bootstrap.yaml points it at
	// custos:18000: one gRPC stream over HTTP/2 to a STATIC cluster "xds",
	// listeners and clusters over ADS. Empty means no dynamic configuration.
	XDSAddr string
	// NodeID is the node id of the generated bootstrap; "envoy" when empty,
	// as in envoy/bootstrap.yaml.
	NodeID string
	// Bootstrap is a bootstrap file to run instead of the generated one,
	// such as envoy/bootstrap.yaml. XDSAddr and NodeID are then unused.
	//
	// Its admin address is replaced with 127.0.0.1 at a port Envoy chooses,
	// and its DNS resolver with launch's (Hosts), through --config-yaml,
	// unless ConfigYAML sets admin or typed_dns_resolver_config itself.
	Bootstrap string
	// ConfigYAML is passed as --config-yaml: a partial bootstrap that Envoy
	// merges into the bootstrap file with protobuf's MergeFrom. Messages are
	// merged field by field and set scalars replace the file's (port_value: 0
	// does replace 9901: it is a oneof member, so even zero counts as set);
	// repeated fields are appended to, never replaced. So a static cluster
	// of a name the file already has is refused ("cluster manager: duplicate
	// cluster 'xds'"), and so is a second ADS gRPC service ("must have no
	// more than 1 gRPC services"): an override cannot move the file's xds
	// cluster. Resolve the cluster's host name to the ADS server's address
	// with Hosts instead, and listen at the file's port there
	// (ListenLoopbackPort).
	ConfigYAML string
	// Hosts are the names Envoy's DNS lookups resolve (name → IPv4 address),
	// answered by a DNS server on loopback that Start starts for each Envoy
	// and Close stops; every other name is NXDOMAIN, so Envoy queries no
	// real server.
	Hosts map[string]string
	// Listeners are names of listeners Start waits for until they are bound.
	Listeners []string
	// LogLevel is Envoy's --log-level; "info" when empty.
	LogLevel string
	// Timeout bounds the start, up to ready and listening; 30s when zero.
	Timeout time.Duration
	// Dir is the directory of Envoy's files: the generated bootstrap, the
	// file Envoy writes its admin address to, and envoy.log. When empty,
	// Start makes a temporary directory and Close removes it; a Dir given
	// is left in place, log included, for Log to read after Close.
	Dir string
	// LogOutput, when set, receives Envoy's log (its stdout and stderr) as
	// it is written, as well as the log file does. A write that fails ends
	// the copy, never Envoy: the rest of the log goes to the file only.
	LogOutput io.Writer
	// TLS, when set, makes the generated bootstrap reach the ADS server over
	// mutual TLS and hold the two secrets Custos' emitted gRPC cluster names
	// (names.ClientCertSecret, names.CustosCASecret), as envoy/bootstrap.yaml
	// does.
	TLS *TLSFiles
	// WorkDir is Envoy's working directory, against which relative file
	// names in its bootstrap resolve (envoy/bootstrap.yaml's tls/...);
	// the caller's when empty.
	WorkDir string
}

// TLSFiles are the data plane's client certificate and key and the CA
// that verifies Custos, as files Envoy reads.
type TLSFiles struct {
	CertFile, KeyFile, CAFile string
}

// Envoy is one running Envoy process, stopped by Close.
type Envoy struct {
	args    []string
	dir     string
	ownDir  bool // Start made dir, and Close removes it
	logPath string
	admin   string // http://127.0.0.1:port
	client  *http.Client
	dns     *resolver
	cmd     *exec.Cmd // nil until the process has started
	exited  chan struct{}
	waitErr error // set before exited is closed

	closeOnce sync.Once
	closeErr  error
}

// StartError is the error Start returns when Envoy started but did not
// become ready: what Start was waiting for, and what Envoy logged.
type StartError struct {
	// Err is what went wrong, such as Envoy exiting or the wait timing out.
	Err error
	// Args are Envoy's command-line arguments (after the binary's path).
	Args []string
	// Log is everything Envoy logged, as Envoy.Log returns it.
	Log string
}

// startErrorTail is how many lines of Envoy's log StartError's message
// ends with: enough for the error Envoy exits with and what led to it.
const startErrorTail = 20

// Error says what went wrong, followed by the last lines of Envoy's log.
func (e *StartError) Error() string {
	lines := strings.SplitAfter(strings.TrimRight(e.Log, "\n"), "\n")
	if len(lines) > startErrorTail {
		lines = lines[len(lines)-startErrorTail:]
	}
	tail := strings.Join(lines, "")
	if strings.TrimSpace(tail) == "" {
		tail = "(nothing)"
	}
	return fmt.Sprintf("start envoy: %v\nenvoy's log ends:\n%s", e.Err, tail)
}

// Unwrap returns Err.
func (e *StartError) Unwrap() error { return e.Err }

// Start starts Envoy and returns once its admin API answers /ready with
// LIVE (for ADS: the first listeners and clusters have arrived, or their
// initial fetch timed out) and every listener in opts.Listeners is bound.
// Envoy runs with --disable-hot-restart, a dynamic base id, its own
// directory (Options.Dir) and an admin port it chooses; its log goes to
// envoy.log there. ctx and opts.Timeout bound the start only: Envoy runs
// until Close, which the caller must call. On Linux the kernel kills Envoy
// if the calling program dies first.
//
// When Envoy starts but does not become ready, Start stops it and returns a
// *StartError, whose message ends with the tail of Envoy's log.
func Start(ctx context.Context, opts Options) (*Envoy, error) {
	if opts.Path == "" {
		p, err := Find()
		if err != nil {
			return nil, fmt.Errorf("start envoy: %w", err)
		}
		opts.Path = p
	}
	if opts.NodeID == "" {
		opts.NodeID = "envoy"
	}
	if opts.LogLevel == "" {
		opts.LogLevel = "info"
	}
	if opts.Timeout == 0 {
		opts.Timeout = 30 * time.Second
	}
	e := &Envoy{
		dir:    opts.Dir,
		client: &http.Client{Timeout: 5 * time.Second},
		exited: make(chan struct{}),
	}
	if err := e.start(opts); err != nil {
		_ = e.Close()
		return nil, fmt.Errorf("start envoy: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, opts.Timeout)
	defer cancel()
	err := e.waitReady(ctx)
	for _, name := range opts.Listeners {
		if err != nil {
			break
		}
		_, err = e.WaitListener(ctx, name)
	}
	if err != nil {
		e.kill()
		serr := &StartError{Err: err, Args: e.Args(), Log: e.Log()}
		_ = e.Close()
		return nil, serr
	}
	return e, nil
}

// start prepares Envoy's directory, DNS server and command line, and starts
// the process.
func (e *Envoy) start(opts Options) error {
	if e.dir == "" {
		dir, err := os.MkdirTemp("", "envoy-")
		if err != nil {
			return err
		}
		e.dir, e.ownDir = dir, true
	}
	e.logPath = filepath.Join(e.dir, "envoy.log")
	adminPath := e.adminPath()
	// A Dir used before may hold an earlier Envoy's address.
	if err := os.Remove(adminPath); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	dns, err := startResolver(opts.Hosts)
	if err != nil {
		return err
	}
	e.dns = dns
	e.args = []string{
		"--disable-hot-restart",
		"--use-dynamic-base-id",
		"--admin-address-path", adminPath,
		"--log-level", opts.LogLevel,
	}
	if opts.Bootstrap != "" {
		override, err := overrideYAML(opts.ConfigYAML, dns.dnsResolverConfig())
		if err != nil {
			return err
		}
		e.args = append(e.args, "-c", opts.Bootstrap, "--config-yaml", override)
	} else {
		b, err := generatedBootstrap(opts.NodeID, opts.XDSAddr, dns.dnsResolverConfig(), opts.TLS)
		if err != nil {
			return err
		}
		data, err := yaml.Marshal(b)
		if err != nil {
			return err
		}
		file := filepath.Join(e.dir, "bootstrap.yaml")
		if err := os.WriteFile(file, data, 0o644); err != nil {
			return err
		}
		e.args = append(e.args, "-c", file)
		if opts.ConfigYAML != "" {
			e.args = append(e.args, "--config-yaml", opts.ConfigYAML)
		}
	}

	logFile, err := os.Create(e.logPath)
	if err != nil {
		return err
	}
	cmd := exec.Command(opts.Path, e.args...)
	cmd.Dir = opts.WorkDir
	if opts.LogOutput != nil {
		// One pointer for both, so exec calls Write from one goroutine.
		w := &teeWriter{file: logFile, out: opts.LogOutput}
		cmd.Stdout, cmd.Stderr = w, w
		cmd.WaitDelay = time.Second
	} else {
		cmd.Stdout, cmd.Stderr = logFile, logFile
	}
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return err
	}
	e.cmd = cmd
	go func() {
		e.waitErr = cmd.Wait()
		logFile.Close()
		close(e.exited)
	}()
	return nil
}

func (e *Envoy) adminPath() string { return filepath.Join(e.dir, "admin-address") }

// teeWriter copies Envoy's output to its log file and to out. It reports
// no error, so that exec keeps draining Envoy's pipe whatever happens to
// the copies: a blocked pipe would stall Envoy.
type teeWriter struct {
	file io.Writer
	out  io.Writer // nil after a write to it failed
}

func (w *teeWriter) Write(p []byte) (int, error) {
	_, _ = w.file.Write(p)
	if w.out != nil {
		if _, err := w.out.Write(p); err != nil {
			w.out = nil
		}
	}
	return len(p), nil
}

// Args returns Envoy's command-line arguments (after the binary's path),
// such as the --config-yaml override Start made.
func (e *Envoy) Args() []string { return append([]string(nil), e.args...) }

// Done returns a channel that is closed when the Envoy process has exited,
// on its own or by Close.
func (e *Envoy) Done() <-chan struct{} { return e.exited }

// Err returns nil while Envoy runs. Once Done is closed it returns how the
// process ended, such as "exit status 1", or "signal: killed" after Close;
// nil if Envoy exited with status 0.
func (e *Envoy) Err() error {
	select {
	case <-e.exited:
		return e.waitErr
	default:
		return nil
	}
}

// Close kills Envoy, waits for it to exit, stops its DNS server and
// removes the directory Start made for it (not a Dir of Options). It may
// be called more than once, and returns the first call's error.
func (e *Envoy) Close() error {
	e.closeOnce.Do(func() {
		e.kill()
		if e.dns != nil {
			e.dns.close()
		}
		if e.ownDir {
			if err := os.RemoveAll(e.dir); err != nil {
				e.closeErr = fmt.Errorf("remove envoy's directory: %w", err)
			}
		}
	})
	return e.closeErr
}

// kill kills the process, if it started, and waits until it has exited.
func (e *Envoy) kill() {
	if e.cmd == nil {
		return
	}
	select {
	case <-e.exited:
	default:
		_ = e.cmd.Process.Kill()
		<-e.exited
	}
}

// poll calls try every 20ms until it reports done, Envoy exits or ctx ends.
func (e *Envoy) poll(ctx context.Context, what string, try func() (done bool, err error)) error {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		done, err := try()
		if done {
			return err
		}
		last = err
		select {
		case <-e.exited:
			return fmt.Errorf("envoy exited while waiting for %s: %v", what, e.waitErr)
		case <-ctx.Done():
			if last != nil {
				return fmt.Errorf("waiting for %s: %w (last: %v)", what, ctx.Err(), last)
			}
			return fmt.Errorf("waiting for %s: %w", what, ctx.Err())
		case <-tick.C:
		}
	}
}

func (e *Envoy) waitReady(ctx context.Context) error {
	err := e.poll(ctx, "the admin address", func() (bool, error) {
		b, err := os.ReadFile(e.adminPath())
		addr := strings.TrimSpace(string(b))
		if err != nil || addr == "" {
			return false, err
		}
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return false, err // not written whole yet
		}
		e.admin = "http://" + addr
		return true, nil
	})
	if err != nil {
		return err
	}
	return e.poll(ctx, "/ready to answer LIVE", func() (bool, error) {
		b, err := e.Get("/ready")
		if err != nil {
			return false, err
		}
		return strings.TrimSpace(string(b)) == "LIVE", nil
	})
}
