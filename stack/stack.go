// Package stack runs Custos whole on one machine: the control plane and a
// data plane following it over xDS on loopback — the Go data plane, as
// `custos dev` runs by default, or real Envoy, as `custos dev --envoy` and
// production run. The end-to-end tests (through both data planes) and the
// benchmarks start exactly this.
package stack

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/custos-dev/custos/config"
	"github.com/custos-dev/custos/controlplane"
	"github.com/custos-dev/custos/envoy/dataplane"
	"github.com/custos-dev/custos/envoy/launch"
	"github.com/custos-dev/custos/mtls"
	"github.com/custos-dev/custos/names"
)

// DefaultReadyTimeout bounds the wait for the data plane's first complete
// configuration.
const DefaultReadyTimeout = 20 * time.Second

// LoopbackListen is a listen block with every listener on an ephemeral
// loopback port, for stacks started by tests and benchmarks.
const LoopbackListen = `listen:
  grpc: 127.0.0.1:0
  xds: 127.0.0.1:0
  http: 127.0.0.1:0
  dataplane: 127.0.0.1:0
`

// DataPlane names a data plane.
type DataPlane string

// The data planes a stack can run.
const (
	// Go is the embedded Go data plane (envoy/dataplane).
	Go DataPlane = "go"
	// Envoy is the real Envoy binary (envoy/launch finds it).
	Envoy DataPlane = "envoy"
)

// Options configure a stack.
type Options struct {
	// Config is the configuration both planes run with (required).
	Config *config.Config
	// Logger receives both planes' logs (default: discarded).
	Logger *slog.Logger
	// NodeID names the data plane to the control plane (default "custos-dev").
	NodeID string
	// ReadyTimeout bounds the start (default DefaultReadyTimeout).
	ReadyTimeout time.Duration
	// DataPlane is Go (the default) or Envoy.
	DataPlane DataPlane
	// EnvoyPath is the Envoy binary (default: launch.Find).
	EnvoyPath string
	// EnvoyLog, if set, receives Envoy's log as it is written.
	EnvoyLog io.Writer
	// Stages builds the per-request stages (default: extproc.DefaultStages).
	Stages controlplane.StagesFunc
	// TLSDir holds the private CA and certificates made when the
	// configuration has neither listen.tls nor listen.insecure (default: a
	// temporary directory removed by Close).
	TLSDir string
}

// Stack is a running control plane and data plane.
type Stack struct {
	// CP is the control plane: gRPC services, ADS, HTTP endpoints.
	CP *controlplane.ControlPlane
	// DataPlane says which data plane runs.
	DataPlane DataPlane
	// DP is the Go data plane (nil with Envoy).
	DP *dataplane.DataPlane
	// Envoy is the Envoy process (nil with the Go data plane).
	Envoy *launch.Envoy
	// Addr is where the data plane listens for agents.
	Addr string
	// PKI is the private CA and certificates of a stack that made them
	// (nil when the configuration has listen.tls or listen.insecure).
	PKI *mtls.PKI

	cancel    context.CancelFunc
	closeOnce sync.Once
	done      chan struct{}
	tmpDir    string
	dpFiles   *mtls.Files // the data plane's client certificate and CA
}

// Start starts the control plane, then the data plane as its xDS client, and
// returns once the data plane serves. The stack lives until ctx ends or
// Close is called.
func Start(ctx context.Context, opts Options) (*Stack, error) {
	if opts.Config == nil {
		return nil, errors.New("stack: no configuration")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.NodeID == "" {
		opts.NodeID = "custos-dev"
	}
	if opts.ReadyTimeout <= 0 {
		opts.ReadyTimeout = DefaultReadyTimeout
	}
	if opts.DataPlane == "" {
		opts.DataPlane = Go
	}
	s := &Stack{DataPlane: opts.DataPlane, done: make(chan struct{})}
	cfg, err := s.secure(opts.Config, opts.TLSDir)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	s.cancel = cancel
	cp, err := controlplane.StartWith(ctx, cfg, "", opts.Logger, opts.Stages)
	if err != nil {
		cancel()
		s.removeTmp()
		return nil, err
	}
	s.CP = cp
	switch opts.DataPlane {
	case Go:
		err = s.startGo(ctx, opts)
	case Envoy:
		err = s.startEnvoy(ctx, opts)
	default:
		err = fmt.Errorf("unknown data plane %q (go or envoy)", opts.DataPlane)
	}
	if err != nil {
		cancel()
		cp.Shutdown()
		s.removeTmp()
		return nil, err
	}
	return s, nil
}

// secure returns cfg with mutual TLS between the data plane and the control
// plane: the file's listen.tls as it is, plain text where the file says
// listen.insecure, and otherwise a private CA and certificates made for
// this stack (in dir), allowing only the data plane's identity.
func (s *Stack) secure(cfg *config.Config, dir string) (*config.Config, error) {
	if t := cfg.Listen.TLS; t != nil || cfg.Listen.Insecure {
		return cfg, nil
	}
	if s.PKI == nil {
		if dir == "" {
			tmp, err := os.MkdirTemp("", "custos-tls-")
			if err != nil {
				return nil, fmt.Errorf("stack: %w", err)
			}
			s.tmpDir, dir = tmp, tmp
		}
		pki, err := mtls.DevPKI(dir)
		if err != nil {
			s.removeTmp()
			return nil, fmt.Errorf("stack: %w", err)
		}
		s.PKI = &pki
		s.dpFiles = &pki.Client
	}
	c := *cfg
	c.Listen.TLS = &config.TLS{CertFile: s.PKI.Server.CertFile, KeyFile: s.PKI.Server.KeyFile,
		ClientCAFile: s.PKI.CAFile, AllowedClients: []string{mtls.EnvoyIdentity}}
	return &c, nil
}

func (s *Stack) removeTmp() {
	if s.tmpDir != "" {
		_ = os.RemoveAll(s.tmpDir)
	}
}

func (s *Stack) startGo(ctx context.Context, opts Options) error {
	dpo := dataplane.Options{XDS: s.CP.XDSAddr, NodeID: opts.NodeID, Logger: opts.Logger,
		MaxDownstreamConnections: names.MaxDownstreamConnections}
	if f := s.dpFiles; f != nil {
		dpo.XDSTLS = &dataplane.Secret{CertFile: f.CertFile, KeyFile: f.KeyFile, CAFile: f.CAFile}
		dpo.Secrets = map[string]dataplane.Secret{
			names.ClientCertSecret: {CertFile: f.CertFile, KeyFile: f.KeyFile},
			names.CustosCASecret:   {CAFile: f.CAFile},
		}
	}
	dp, err := dataplane.New(dpo)
	if err != nil {
		return fmt.Errorf("data plane: %w", err)
	}
	s.DP = dp
	go func() { _ = dp.Run(ctx); close(s.done) }()
	timer := time.NewTimer(opts.ReadyTimeout)
	defer timer.Stop()
	select {
	case <-dp.Ready():
	case <-timer.C:
		s.cancel()
		<-s.done
		return fmt.Errorf("the data plane got no configuration over xDS within %s (last NACK: %q)", opts.ReadyTimeout, dp.LastNACK())
	case <-ctx.Done():
		<-s.done
		return fmt.Errorf("waiting for the data plane: %w", ctx.Err())
	}
	s.Addr = dp.Addr()
	return nil
}

func (s *Stack) startEnvoy(ctx context.Context, opts Options) error {
	e, err := launch.Start(ctx, launch.Options{
		Path:      opts.EnvoyPath,
		XDSAddr:   s.CP.XDSAddr,
		NodeID:    opts.NodeID,
		Listeners: []string{names.ListenerName},
		Timeout:   opts.ReadyTimeout,
		LogOutput: opts.EnvoyLog,
		TLS:       s.envoyTLS(),
	})
	if err != nil {
		return fmt.Errorf("envoy: %w", err)
	}
	s.Envoy = e
	s.Addr = e.ListenerAddr(names.ListenerName)
	go func() {
		select {
		case <-ctx.Done():
		case <-e.Done():
		}
		_ = e.Close()
		close(s.done)
	}()
	// The listener is bound; wait until Envoy has taken every resource of
	// the served snapshot, so the first request finds its routes and clusters.
	wctx, cancel := context.WithTimeout(ctx, opts.ReadyTimeout)
	defer cancel()
	if err := s.CP.XDS.WaitACK(wctx, s.CP.XDS.Version()); err != nil {
		s.cancel()
		<-s.done
		return fmt.Errorf("envoy: %w", err)
	}
	return nil
}

func (s *Stack) envoyTLS() *launch.TLSFiles {
	if s.dpFiles == nil {
		return nil
	}
	return &launch.TLSFiles{CertFile: s.dpFiles.CertFile, KeyFile: s.dpFiles.KeyFile, CAFile: s.dpFiles.CAFile}
}

// Apply installs cfg in the control plane, with the stack's own mutual TLS
// where the file sets none (as Start did), and returns once the data plane
// has acknowledged it over xDS.
func (s *Stack) Apply(ctx context.Context, cfg *config.Config) error {
	cfg, err := s.secure(cfg, "")
	if err != nil {
		return err
	}
	if err := s.CP.Apply(ctx, cfg); err != nil {
		return err
	}
	return s.CP.XDS.WaitACK(ctx, s.CP.XDS.Version())
}

// Done is closed when the data plane has stopped.
func (s *Stack) Done() <-chan struct{} { return s.done }

// Close stops the data plane (its listener drains), then the control plane.
func (s *Stack) Close() {
	s.closeOnce.Do(func() {
		s.cancel()
		<-s.done
		s.CP.Shutdown()
		s.removeTmp()
	})
}
