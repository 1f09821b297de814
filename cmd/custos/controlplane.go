package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"

	"github.com/custos-dev/custos/config"
	"github.com/custos-dev/custos/extproc"
	"github.com/custos-dev/custos/filters/record"
	"github.com/custos-dev/custos/xds"
)

// controlPlane is what `serve` runs and `dev` starts first: the gRPC services
// Envoy calls (listen.grpc), ADS (listen.xds) and the HTTP endpoints
// (listen.http).
type controlPlane struct {
	log     *slog.Logger
	listen  config.Listen
	svc     *extproc.Service
	xds     *xds.Server
	grpcSrv *grpc.Server
	xdsSrv  *grpc.Server
	httpSrv *http.Server
	// Addresses actually bound (a :0 port in the file becomes a real one).
	grpcAddr, xdsAddr, httpAddr string
	serving                     atomic.Bool
	errc                        chan error
}

// startControlPlane binds every listener first, so that a busy port is an
// error before anything runs, then serves.
func startControlPlane(ctx context.Context, cfg *config.Config, grpcAdvertise string, logger *slog.Logger) (*controlPlane, error) {
	cp := &controlPlane{log: logger, listen: cfg.Listen, errc: make(chan error, 3)}
	grpcLis, err := net.Listen("tcp", cfg.Listen.GRPC)
	if err != nil {
		return nil, fmt.Errorf("listen.grpc: %w", err)
	}
	xdsLis, err := net.Listen("tcp", cfg.Listen.XDS)
	if err != nil {
		grpcLis.Close()
		return nil, fmt.Errorf("listen.xds: %w", err)
	}
	httpLis, err := net.Listen("tcp", cfg.Listen.HTTP)
	if err != nil {
		grpcLis.Close()
		xdsLis.Close()
		return nil, fmt.Errorf("listen.http: %w", err)
	}
	cp.grpcAddr, cp.xdsAddr, cp.httpAddr = grpcLis.Addr().String(), xdsLis.Addr().String(), httpLis.Addr().String()
	if grpcAdvertise == "" {
		grpcAdvertise = cp.grpcAddr
	}

	cp.svc = extproc.New(cfg, record.Log{Logger: logger}, logger)
	cp.grpcSrv = grpc.NewServer()
	cp.svc.Register(cp.grpcSrv)

	cp.xds = xds.NewServer(ctx, logger, xds.Options{GRPCAddress: grpcAdvertise})
	cp.xdsSrv = grpc.NewServer()
	cp.xds.Register(cp.xdsSrv)
	if _, err := cp.xds.Update(ctx, cfg); err != nil {
		grpcLis.Close()
		xdsLis.Close()
		httpLis.Close()
		return nil, err
	}

	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("content-type", "text/plain")
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", cp.readyz)
	cp.httpSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}

	go func() { cp.errc <- serveErr("grpc", cp.grpcSrv.Serve(grpcLis)) }()
	go func() { cp.errc <- serveErr("xds", cp.xdsSrv.Serve(xdsLis)) }()
	go func() { cp.errc <- serveErr("http", cp.httpSrv.Serve(httpLis)) }()
	cp.serving.Store(true)
	return cp, nil
}

func serveErr(what string, err error) error {
	if err == nil || errors.Is(err, http.ErrServerClosed) || errors.Is(err, grpc.ErrServerStopped) {
		return nil
	}
	return fmt.Errorf("%s server: %w", what, err)
}

// readyz answers 200 once xDS holds a snapshot and the gRPC services serve.
func (cp *controlPlane) readyz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("content-type", "text/plain")
	if !cp.serving.Load() || cp.xds.Version() == "" {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintln(w, "not ready")
		return
	}
	fmt.Fprintln(w, "ready", cp.xds.Version())
}

// apply installs a reloaded configuration: the snapshot first (it validates
// everything Envoy will get), then the services' view of it. Listen
// addresses change only on restart.
func (cp *controlPlane) apply(ctx context.Context, cfg *config.Config) error {
	if cfg.Listen != cp.listen {
		return errors.New("listen addresses change only on restart")
	}
	if _, err := cp.xds.Update(ctx, cfg); err != nil {
		return err
	}
	cp.svc.SetConfig(cfg)
	return nil
}

// shutdown stops accepting, drains the gRPC streams and the HTTP server.
func (cp *controlPlane) shutdown() {
	cp.serving.Store(false)
	cp.svc.Shutdown()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = cp.httpSrv.Shutdown(ctx)
	stopped := make(chan struct{})
	go func() {
		cp.grpcSrv.GracefulStop()
		cp.xdsSrv.GracefulStop()
		close(stopped)
	}()
	select {
	case <-stopped:
	case <-ctx.Done():
		cp.grpcSrv.Stop()
		cp.xdsSrv.Stop()
	}
}
