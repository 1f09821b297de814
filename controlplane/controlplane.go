// Package controlplane assembles what `custos serve` runs and `custos dev`
// starts first: the gRPC services Envoy calls (listen.grpc), the ADS server
// (listen.xds) and the HTTP endpoints (listen.http), with graceful shutdown
// and configuration reload.
package controlplane

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
	"google.golang.org/grpc/credentials"

	"github.com/custos-dev/custos/approvals"
	"github.com/custos-dev/custos/audit"
	"github.com/custos-dev/custos/audit/ship"
	"github.com/custos-dev/custos/config"
	"github.com/custos-dev/custos/devissuer"
	"github.com/custos-dev/custos/extproc"
	"github.com/custos-dev/custos/filters/approval"
	"github.com/custos-dev/custos/metrics"
	"github.com/custos-dev/custos/mtls"
	"github.com/custos-dev/custos/xds"
)

// ControlPlane is one running control plane.
type ControlPlane struct {
	log    *slog.Logger
	listen config.Listen
	// Services are the ext_authz and ext_proc services.
	Services *extproc.Service
	// XDS is the ADS server and its snapshot cache.
	XDS     *xds.Server
	grpcSrv *grpc.Server
	xdsSrv  *grpc.Server
	httpSrv *http.Server
	// GRPCAddr, XDSAddr and HTTPAddr are the addresses actually bound (a :0
	// port in the file becomes a real one).
	GRPCAddr, XDSAddr, HTTPAddr string
	// DevIssuer is the dev OIDC issuer on listen.http when dev.issuer is
	// set (nil otherwise); every pipeline trusts it.
	DevIssuer *devissuer.Issuer
	// Audit is the audit log when audit.signing_key_file is set (nil
	// otherwise); every pipeline records to it.
	Audit    *audit.Log
	auditKey *audit.SigningKey
	// Shipper copies the audit log to Kafka when audit.kafka is set.
	Shipper *ship.Shipper
	// Metrics are served on listen.http at /metrics.
	Metrics *metrics.Registry
	// Approvals holds approval requests and grants and takes votes; every
	// pipeline asks it for grants.
	Approvals     *approvals.Service
	approvalStore approvals.Store
	approvalsCfg  config.Approvals
	serving       atomic.Bool
	stages        StagesFunc
	errc          chan error
}

// pipeline builds the stages and the pipeline for cfg.
func (cp *ControlPlane) pipeline(cfg *config.Config) (*extproc.Pipeline, error) {
	cfg = cp.withDevIssuer(cfg)
	st, err := cp.stages(cfg, cp.log)
	if err != nil {
		return nil, fmt.Errorf("build stages: %w", err)
	}
	if cp.Audit != nil {
		st.Record = &auditRecorder{log: cp.Audit, next: st.Record, cfg: cfg, logger: cp.logger()}
	}
	if _, none := st.Grants.(approval.None); none && cp.Approvals != nil {
		// The approvals service replaces the stand-in; stages built with a
		// grants stage of their own (tests) keep it.
		st.Grants = cp.Approvals
	}
	p, err := extproc.NewPipeline(cfg, st, cp.log)
	if err != nil {
		st.Close()
		return nil, err
	}
	if cp.HTTPAddr != "" {
		p.SetAPIBase(HTTPBase(cp.HTTPAddr))
	}
	return p, nil
}

// StagesFunc builds the per-request stages for a configuration; the
// default is extproc.DefaultStages.
type StagesFunc func(*config.Config, *slog.Logger) (extproc.Stages, error)

// Start binds every listener first, so that a busy port is an error before
// anything runs, then serves until Shutdown. grpcAdvertise is where Envoy
// reaches the gRPC services ("" for the bound listen.grpc address).
func Start(ctx context.Context, cfg *config.Config, grpcAdvertise string, logger *slog.Logger) (*ControlPlane, error) {
	return StartWith(ctx, cfg, grpcAdvertise, logger, nil)
}

// StartWith is Start with the stages built by stages (nil: the defaults).
func StartWith(ctx context.Context, cfg *config.Config, grpcAdvertise string, logger *slog.Logger, stages StagesFunc) (*ControlPlane, error) {
	if stages == nil {
		stages = extproc.DefaultStages
	}
	cp := &ControlPlane{log: logger, listen: cfg.Listen, stages: stages, errc: make(chan error, 3)}
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
	cp.GRPCAddr, cp.XDSAddr, cp.HTTPAddr = grpcLis.Addr().String(), xdsLis.Addr().String(), httpLis.Addr().String()
	if grpcAdvertise == "" {
		grpcAdvertise = cp.GRPCAddr
	}
	closeAll := func() {
		grpcLis.Close()
		xdsLis.Close()
		httpLis.Close()
	}
	mux := http.NewServeMux()
	if err := cp.startDevIssuer(cfg, mux); err != nil {
		closeAll()
		return nil, err
	}
	if err := cp.openAudit(cfg); err != nil {
		closeAll()
		return nil, err
	}
	if err := cp.openApprovals(ctx, cfg, mux); err != nil {
		closeAll()
		if cp.Shipper != nil {
			_ = cp.Shipper.Close()
		}
		if cp.Audit != nil {
			cp.Audit.Close()
		}
		return nil, err
	}
	closeAll = func() {
		grpcLis.Close()
		xdsLis.Close()
		httpLis.Close()
		cp.closeApprovals()
		if cp.Shipper != nil {
			_ = cp.Shipper.Close()
		}
		if cp.Audit != nil {
			cp.Audit.Close()
		}
	}
	pipeline, err := cp.pipeline(cfg)
	if err != nil {
		closeAll()
		return nil, err
	}

	cp.Services = extproc.New(pipeline, logger)
	closeAudit := closeAll
	closeAll = func() {
		pipeline.Close()
		closeAudit()
	}
	var opts []grpc.ServerOption
	if t := cfg.Listen.TLS; t != nil {
		tc, err := mtls.Server(mtls.Files{CertFile: t.CertFile, KeyFile: t.KeyFile, CAFile: t.ClientCAFile}, t.AllowedClients)
		if err != nil {
			closeAll()
			return nil, fmt.Errorf("listen.tls: %w", err)
		}
		opts = append(opts, grpc.Creds(credentials.NewTLS(tc)))
	}
	cp.grpcSrv = grpc.NewServer(opts...)
	cp.Services.Register(cp.grpcSrv)

	cp.XDS = xds.NewServer(ctx, logger, xds.Options{GRPCAddress: grpcAdvertise})
	cp.xdsSrv = grpc.NewServer(opts...)
	cp.XDS.Register(cp.xdsSrv)
	if _, err := cp.XDS.Update(ctx, cfg); err != nil {
		closeAll()
		return nil, err
	}

	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("content-type", "text/plain")
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", cp.readyz)
	cp.Metrics = metrics.NewRegistry()
	cp.registerMetrics(cp.Metrics)
	mux.Handle("GET "+MetricsPath, cp.Metrics.Handler())
	mux.HandleFunc("GET "+ProofPath, cp.proof)
	cp.httpSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}

	cp.recordConfig(pipeline, "loaded")
	if t := cfg.Listen.AgentTLS; t != nil {
		go cp.watchAgentTLS(ctx, t)
	}
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
func (cp *ControlPlane) readyz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("content-type", "text/plain")
	if cp.Audit != nil {
		if err := cp.Audit.Err(); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, "not ready: the audit log stopped acknowledging")
			return
		}
	}
	if !cp.serving.Load() || cp.XDS.Version() == "" {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintln(w, "not ready")
		return
	}
	fmt.Fprintln(w, "ready", cp.XDS.Version())
}

// Apply installs a reloaded configuration: the new pipeline is built first
// (a stage that cannot compile the file refuses it), then the snapshot (it
// validates everything Envoy will get), then the pipeline is swapped in
// whole. Listen addresses change only on restart.
func (cp *ControlPlane) Apply(ctx context.Context, cfg *config.Config) error {
	if !cfg.Listen.Equal(cp.listen) {
		return errors.New("listen addresses change only on restart")
	}
	if on := cfg.Dev != nil && cfg.Dev.Issuer; on != (cp.DevIssuer != nil) {
		return errors.New("dev.issuer changes only on restart")
	}
	if err := cp.sameApprovalsSetup(cfg); err != nil {
		return err
	}
	p, err := cp.pipeline(cfg)
	if err != nil {
		return err
	}
	if _, err := cp.XDS.Update(ctx, cfg); err != nil {
		p.Close()
		return err
	}
	old := cp.Services.Pipeline()
	cp.Services.SetPipeline(p)
	old.Close()
	cp.recordConfig(p, "reloaded")
	return nil
}

// Errors delivers an error when a server stops unexpectedly.
func (cp *ControlPlane) Errors() <-chan error { return cp.errc }

// StopGRPC stops the gRPC services abruptly, as a crash would; tests use it
// to see the data plane fail closed.
func (cp *ControlPlane) StopGRPC() { cp.grpcSrv.Stop() }

// Shutdown stops accepting, drains the gRPC streams and the HTTP server.
func (cp *ControlPlane) Shutdown() {
	cp.serving.Store(false)
	cp.Services.Shutdown()
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
	cp.Services.Pipeline().Close()
	cp.closeApprovals()
	if cp.Shipper != nil {
		_ = cp.Shipper.Close()
	}
	if cp.Audit != nil {
		if err := cp.Audit.Close(); err != nil {
			cp.logger().Error("close the audit log", "error", err)
		}
	}
}

// recordConfig records a config_changed event; a failure is logged (the
// configuration is in force either way).
func (cp *ControlPlane) recordConfig(p *extproc.Pipeline, what string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.RecordConfig(ctx, what); err != nil {
		cp.logger().Error("record config_changed", "error", err)
	}
}

func (cp *ControlPlane) logger() *slog.Logger {
	if cp.log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return cp.log
}
