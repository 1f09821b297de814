// Package stack runs Custos whole on one machine: the control plane and the
// Go data plane following it over xDS on loopback, as `custos dev` runs
// them. The end-to-end tests and the benchmarks start exactly this.
package stack

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/custos-dev/custos/config"
	"github.com/custos-dev/custos/controlplane"
	"github.com/custos-dev/custos/envoy/dataplane"
)

// DefaultReadyTimeout bounds the wait for the data plane's first complete
// configuration.
const DefaultReadyTimeout = 10 * time.Second

// LoopbackListen is a listen block with every listener on an ephemeral
// loopback port, for stacks started by tests and benchmarks.
const LoopbackListen = `listen:
  grpc: 127.0.0.1:0
  xds: 127.0.0.1:0
  http: 127.0.0.1:0
  dataplane: 127.0.0.1:0
`

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
}

// Stack is a running control plane and data plane.
type Stack struct {
	// CP is the control plane: gRPC services, ADS, HTTP endpoints.
	CP *controlplane.ControlPlane
	// DP is the data plane.
	DP *dataplane.DataPlane
	// Addr is where the data plane listens for agents.
	Addr string

	cancel context.CancelFunc
	done   chan struct{}
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
	ctx, cancel := context.WithCancel(ctx)
	cp, err := controlplane.Start(ctx, opts.Config, "", opts.Logger)
	if err != nil {
		cancel()
		return nil, err
	}
	dp, err := dataplane.New(dataplane.Options{XDS: cp.XDSAddr, NodeID: opts.NodeID, Logger: opts.Logger})
	if err != nil {
		cancel()
		cp.Shutdown()
		return nil, fmt.Errorf("data plane: %w", err)
	}
	s := &Stack{CP: cp, DP: dp, cancel: cancel, done: make(chan struct{})}
	go func() { _ = dp.Run(ctx); close(s.done) }()
	timer := time.NewTimer(opts.ReadyTimeout)
	defer timer.Stop()
	select {
	case <-dp.Ready():
	case <-timer.C:
		s.Close()
		return nil, fmt.Errorf("the data plane got no configuration over xDS within %s (last NACK: %q)", opts.ReadyTimeout, dp.LastNACK())
	case <-ctx.Done():
		s.Close()
		return nil, fmt.Errorf("waiting for the data plane: %w", ctx.Err())
	}
	s.Addr = dp.Addr()
	return s, nil
}

// Done is closed when the data plane has stopped.
func (s *Stack) Done() <-chan struct{} { return s.done }

// Close stops the data plane (its listener drains), then the control plane.
func (s *Stack) Close() {
	s.cancel()
	<-s.done
	s.CP.Shutdown()
}
