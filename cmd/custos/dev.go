package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/custos-dev/custos/audit"
	"github.com/custos-dev/custos/config"
	"github.com/custos-dev/custos/controlplane"
	"github.com/custos-dev/custos/envoy/launch"
	"github.com/custos-dev/custos/examples"
	"github.com/custos-dev/custos/examples/demo"
	"github.com/custos-dev/custos/examples/warehouse"
	"github.com/custos-dev/custos/extproc"
	"github.com/custos-dev/custos/filters/inspect"
	"github.com/custos-dev/custos/mtls"
	"github.com/custos-dev/custos/stack"
)

func newDevCmd(g *globals) *cobra.Command {
	var path, envoyPath string
	cmd := &cobra.Command{
		Use:   "dev [--config FILE] [--envoy[=PATH]]",
		Short: "Run everything on one machine: control plane, data plane and demo upstream",
		Long: `Run Custos on one machine: the control plane, a data plane following it over
xDS on loopback, the dev OIDC issuer when dev.issuer is set (agents get
tokens from it with ` + "`custos token`" + `), and the demo upstream when
dev.demo_upstream is set. Without
--config it runs the built-in example (examples/dev.yaml).

The data plane is the embedded Go one unless --envoy is given: then it is real
Envoy 1.40, found as ` + "`make envoy`" + ` finds it (CUSTOS_ENVOY, an envoy 1.40 on
PATH, or the project's .venv-envoy), or the binary at --envoy=PATH.

It prints each address and a ready curl line. Ctrl-C stops everything.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := g.logger()
			if err != nil {
				return err
			}
			var cfg *config.Config
			if path == "" {
				cfg, err = config.Parse(examples.DevConfig)
				if err != nil {
					return fmt.Errorf("built-in example: %w", err)
				}
			} else if cfg, err = config.Load(path); err != nil {
				return reportConfigErrors(g, path, err)
			}
			ctx, cancel := context.WithCancel(cmd.Context())
			defer cancel()

			var demoSrv *http.Server
			if cfg.Dev != nil && cfg.Dev.DemoUpstream != "" {
				lis, err := net.Listen("tcp", cfg.Dev.DemoUpstream)
				if err != nil {
					return fmt.Errorf("dev.demo_upstream: %w", err)
				}
				demoSrv = &http.Server{Handler: demo.Handler(), ReadHeaderTimeout: 10 * time.Second}
				go func() { _ = demoSrv.Serve(lis) }()
				defer demoSrv.Close()
			}
			if cfg.Dev != nil && cfg.Dev.DemoWarehouse != "" {
				lis, err := net.Listen("tcp", cfg.Dev.DemoWarehouse)
				if err != nil {
					return fmt.Errorf("dev.demo_warehouse: %w", err)
				}
				wh := warehouse.Handler()
				defer wh.Close()
				whSrv := &http.Server{Handler: wh, ReadHeaderTimeout: 10 * time.Second}
				go func() { _ = whSrv.Serve(lis) }()
				defer whSrv.Close()
			}

			// Dev keeps evidence like production: the audit log's signing
			// key is made on first run beside the audit directory (never in
			// it: whoever can rewrite the log must not hold the key).
			if cfg.Audit.SigningKeyFile == "" {
				cfg.Audit.SigningKeyFile = filepath.Join(filepath.Dir(cfg.Audit.Dir), "keys", "audit.key")
			}
			if _, err := audit.LoadSigningKey(cfg.Audit.SigningKeyFile); errors.Is(err, fs.ErrNotExist) {
				_, err = audit.LoadOrCreateSigningKey(cfg.Audit.SigningKeyFile, controlplane.DefaultLogID(), true)
				if err != nil {
					return err
				}
			} else if err != nil {
				return err
			}

			// listen.agent_tls files that do not exist yet are made on first
			// run, from a private CA beside them (localhost and 127.0.0.1).
			if t := cfg.Listen.AgentTLS; t != nil {
				if err := devAgentTLS(t); err != nil {
					return fmt.Errorf("listen.agent_tls: %w", err)
				}
			}

			// Without listen.tls or listen.insecure, dev makes a private CA
			// and certificates beside the audit directory, once, and runs
			// the stack with mutual TLS between the data plane and Custos.
			opts := stack.Options{Config: cfg, Logger: log, TLSDir: filepath.Join(filepath.Dir(cfg.Audit.Dir), "tls")}
			if cfg.Dev != nil && cfg.Dev.DemoWarehouse != "" {
				// The SQLite inspector compiles statements against the demo
				// warehouse's schema: names resolve exactly as there.
				opts.Stages = func(c *config.Config, l *slog.Logger) (extproc.Stages, error) {
					st, err := extproc.DefaultStages(c, l)
					st.Inspect = inspect.NewByKind(inspect.WithSQLiteSchema(warehouse.Schema))
					return st, err
				}
			}
			if cmd.Flags().Changed("envoy") {
				opts.DataPlane = stack.Envoy
				if envoyPath != "auto" {
					opts.EnvoyPath = envoyPath
				} else if opts.EnvoyPath, err = launch.Find(); err != nil {
					return fmt.Errorf("--envoy: %w; run `make envoy` or pass --envoy=/path/to/envoy", err)
				}
			}
			st, err := stack.Start(ctx, opts)
			if err != nil {
				if ctx.Err() != nil {
					return nil // interrupted while starting
				}
				return err
			}
			defer st.Close()
			cp := st.CP
			if path != "" {
				r := &controlplane.Reloader{Path: path, Apply: st.Apply, Log: log}
				go func() {
					if err := r.Run(ctx); err != nil {
						log.Error("config reload stopped", "error", err)
					}
				}()
			}
			printDevBanner(g, cfg, st, path)
			select {
			case <-ctx.Done():
			case err := <-cp.Errors():
				if err != nil {
					return err
				}
			}
			log.Info("shutting down")
			return nil
		},
	}
	cmd.Flags().StringVar(&path, "config", "", "configuration file (YAML); default: the built-in example")
	cmd.Flags().StringVar(&envoyPath, "envoy", "", "run real Envoy 1.40 as the data plane (the binary at PATH, or found as `make envoy` finds it)")
	cmd.Flags().Lookup("envoy").NoOptDefVal = "auto"
	return cmd
}

func printDevBanner(g *globals, cfg *config.Config, st *stack.Stack, path string) {
	w, cp, dpAddr := g.stdout, st.CP, st.Addr
	scheme := "http"
	if cfg.Listen.AgentTLS != nil {
		scheme = "https"
	}
	fmt.Fprintln(w, "custos dev is running")
	fmt.Fprintf(w, "  data plane (agents)  %s://%s\n", scheme, dpAddr)
	switch {
	case st.PKI != nil:
		fmt.Fprintf(w, "  data plane ↔ custos  mutual TLS, private CA %s\n", st.PKI.CAFile)
	case cfg.Listen.TLS != nil:
		fmt.Fprintln(w, "  data plane ↔ custos  mutual TLS (listen.tls)")
	default:
		fmt.Fprintln(w, "  data plane ↔ custos  plain text (listen.insecure)")
	}
	if st.Envoy != nil {
		fmt.Fprintf(w, "  data plane           real Envoy, admin %s\n", st.Envoy.AdminURL())
	} else {
		fmt.Fprintln(w, "  data plane           the embedded Go data plane (--envoy runs real Envoy)")
	}
	fmt.Fprintf(w, "  gRPC services        %s (ext_authz, ext_proc, health)\n", cp.GRPCAddr)
	fmt.Fprintf(w, "  xDS (ADS)            %s\n", cp.XDSAddr)
	fmt.Fprintf(w, "  health               http://%s/healthz  http://%s/readyz\n", cp.HTTPAddr, cp.HTTPAddr)
	fmt.Fprintf(w, "  metrics              http://%s/metrics (Prometheus)\n", cp.HTTPAddr)
	if cfg.Dev != nil && cfg.Dev.DemoUpstream != "" {
		fmt.Fprintf(w, "  demo upstream        http://%s\n", cfg.Dev.DemoUpstream)
	}
	if cfg.Dev != nil && cfg.Dev.DemoWarehouse != "" {
		fmt.Fprintf(w, "  demo warehouse       http://%s (SQLite, POST /query)\n", cfg.Dev.DemoWarehouse)
	}
	for _, c := range cfg.Connections {
		fmt.Fprintf(w, "  connection %-9s /%s/ -> %s\n", c.Name, c.Name, c.Upstream)
	}
	if cp.Audit != nil {
		fmt.Fprintf(w, "  audit log            %s (log %s, key %s; `custos audit key` prints the verifier key)\n", cfg.Audit.Dir, cp.Audit.ID(), cfg.Audit.SigningKeyFile)
	}
	if cp.DevIssuer != nil && cp.Approvals != nil {
		fmt.Fprintf(w, "  approvals page       %s/ui/approvals (sign in as anyone in custos-approvers with the dev secret)\n", controlplane.HTTPBase(cp.HTTPAddr))
	}
	if is := cp.DevIssuer; is != nil {
		fmt.Fprintf(w, "  dev OIDC issuer      %s (audience %s; dev secret in %s)\n", is.URL(), is.Audience(), is.SecretFile())
	}
	if len(cfg.Connections) > 0 {
		fmt.Fprintln(w, "Try:")
		url := fmt.Sprintf("%s://%s/%s/1", scheme, dpAddr, cfg.Connections[0].Name)
		if cp.DevIssuer == nil {
			fmt.Fprintf(w, "  curl -si %s\n", url)
		} else {
			token := "custos token --sub nightly-etl"
			if cfg.Policy.Bundle == config.BuiltinBundle {
				token += " --groups customers-readers" // the default bundle's readers
			}
			if path != "" {
				token += " --config " + path
			}
			fmt.Fprintf(w, "  TOKEN=$(%s)   # from a checkout: go run ./cmd/custos token ...\n", token)
			fmt.Fprintf(w, "  curl -si -H \"authorization: Bearer $TOKEN\" %s\n", url)
		}
	}
	fmt.Fprintln(w, "Ctrl-C stops everything.")
}

// devAgentTLS makes the listener's certificate and key (and the client CA
// file, when named) from a private CA in the certificate's directory, when
// they do not exist yet. Existing files are never replaced.
func devAgentTLS(t *config.AgentTLS) error {
	missing := func(p string) bool {
		_, err := os.Stat(p)
		return p != "" && errors.Is(err, fs.ErrNotExist)
	}
	if !missing(t.CertFile) && !missing(t.KeyFile) && !missing(t.ClientCAFile) {
		return nil
	}
	pki, err := mtls.DevPKI(filepath.Join(filepath.Dir(t.CertFile), "agent-ca"))
	if err != nil {
		return err
	}
	for _, f := range [][2]string{{pki.Server.CertFile, t.CertFile}, {pki.Server.KeyFile, t.KeyFile}, {pki.CAFile, t.ClientCAFile}} {
		if !missing(f[1]) {
			continue
		}
		b, err := os.ReadFile(f[0])
		if err != nil {
			return err
		}
		if err := os.WriteFile(f[1], b, 0o600); err != nil {
			return err
		}
	}
	return nil
}
