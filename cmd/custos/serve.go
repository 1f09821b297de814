package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/custos-dev/custos/config"
	"github.com/custos-dev/custos/controlplane"
)

func newServeCmd(g *globals) *cobra.Command {
	var path, grpcAdvertise string
	cmd := &cobra.Command{
		Use:   "serve --config FILE",
		Short: "Run the control plane for a real Envoy: gRPC services, xDS and HTTP",
		Long: `Run the control plane for a real Envoy (see envoy/bootstrap.yaml): the
ext_authz and ext_proc gRPC services and gRPC health on listen.grpc, ADS on
listen.xds, /healthz and /readyz on listen.http.

The configuration reloads when the file changes or on SIGHUP; a file with
errors is rejected with all of them and the running configuration stays.
A configuration with a dev: block is refused: a dev issuer must never run in
production.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if path == "" {
				return usageError{errors.New("--config FILE is required")}
			}
			log, err := g.logger()
			if err != nil {
				return err
			}
			cfg, err := config.Load(path)
			if err != nil {
				return reportConfigErrors(g, path, err)
			}
			if err := refuseDev(cfg); err != nil {
				return fmt.Errorf("%s: %w", path, err)
			}
			if err := requireTLSChoice(cfg); err != nil {
				return fmt.Errorf("%s: %w", path, err)
			}
			if err := requireAuditKey(cfg); err != nil {
				return fmt.Errorf("%s: %w", path, err)
			}
			if cfg.Listen.Insecure {
				log.Warn("listen.insecure: the gRPC services and ADS are plain text; any peer that reaches them can ask for decisions, make Custos record exchanges that never happened and read the configuration. Use listen.tls in production.")
			}
			ctx := cmd.Context()
			cp, err := controlplane.Start(ctx, cfg, grpcAdvertise, log)
			if err != nil {
				return err
			}
			defer cp.Shutdown()
			log.Info("custos serving", "grpc", cp.GRPCAddr, "xds", cp.XDSAddr, "http", cp.HTTPAddr, "connections", len(cfg.Connections))
			r := &controlplane.Reloader{Path: path, Check: func(c *config.Config) error {
				return errors.Join(refuseDev(c), requireTLSChoice(c), requireAuditKey(c))
			}, Apply: cp.Apply, Log: log}
			go func() {
				if err := r.Run(ctx); err != nil {
					log.Error("config reload stopped", "error", err)
				}
			}()
			select {
			case <-ctx.Done():
				log.Info("shutting down")
				return nil
			case err := <-cp.Errors():
				return err
			}
		},
	}
	cmd.Flags().StringVar(&path, "config", "", "configuration file (YAML)")
	cmd.Flags().StringVar(&grpcAdvertise, "grpc-address", "", "host:port Envoy uses to reach the gRPC services (default: the address bound for listen.grpc)")
	return cmd
}

// requireTLSChoice rejects a configuration that says neither listen.tls
// nor listen.insecure: plain text must be a choice.
func requireTLSChoice(cfg *config.Config) error {
	if cfg.Listen.TLS == nil && !cfg.Listen.Insecure {
		return errors.New("listen.tls is required: the gRPC services and ADS need mutual TLS with Envoy (cert_file, key_file, client_ca_file, allowed_clients); set listen.insecure: true to serve plain text, never in production")
	}
	return nil
}

// requireAuditKey rejects a configuration without audit.signing_key_file:
// in production every decision goes to the signed audit log before the
// upstream is reached (no evidence, no access).
func requireAuditKey(cfg *config.Config) error {
	if cfg.Audit.SigningKeyFile == "" {
		return errors.New("audit.signing_key_file is required: every decision is recorded in the signed audit log before the upstream is reached; make a key with `custos audit key --generate --key-file FILE` and keep it apart from audit.dir")
	}
	return nil
}

// refuseDev rejects a configuration meant for `custos dev`.
func refuseDev(cfg *config.Config) error {
	if cfg.Dev != nil {
		return errors.New("the configuration has a dev: block; `custos serve` refuses it (a dev issuer must never run in production); remove it or use `custos dev`")
	}
	return nil
}
