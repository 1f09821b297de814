package main

import (
	"errors"

	"github.com/spf13/cobra"

	"github.com/custos-dev/custos/envoy/dataplane"
	"github.com/custos-dev/custos/names"
)

func newDataplaneCmd(g *globals) *cobra.Command {
	var xdsAddr, node, cert, key, ca string
	var insecure bool
	cmd := &cobra.Command{
		Use:   "dataplane --xds ADDR (--cert FILE --key FILE --ca FILE | --insecure) [--node ID]",
		Short: "Run the Go data plane alone, following an xDS server",
		Long: `Run the Go stand-in for Envoy: it follows the ADS server at --xds, serves the
listener it is given and calls ext_authz and ext_proc as Envoy does. It ACKs
what it applies and NACKs what it does not understand, keeping the last good
configuration.

It reaches Custos over mutual TLS with the client certificate --cert and
--key, verifying Custos against --ca (as envoy/bootstrap.yaml's secrets do
for Envoy), or in plain text with --insecure, for a Custos whose
configuration says listen.insecure.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if xdsAddr == "" {
				return usageError{errors.New("--xds ADDR is required")}
			}
			files := cert != "" || key != "" || ca != ""
			if files == insecure || (files && (cert == "" || key == "" || ca == "")) {
				return usageError{errors.New("give --cert, --key and --ca for mutual TLS with Custos, or --insecure for plain text")}
			}
			log, err := g.logger()
			if err != nil {
				return err
			}
			opts := dataplane.Options{XDS: xdsAddr, NodeID: node, Logger: log, MaxDownstreamConnections: names.MaxDownstreamConnections}
			if files {
				opts.XDSTLS = &dataplane.Secret{CertFile: cert, KeyFile: key, CAFile: ca}
				opts.Secrets = map[string]dataplane.Secret{
					names.ClientCertSecret: {CertFile: cert, KeyFile: key},
					names.CustosCASecret:   {CAFile: ca},
				}
			}
			dp, err := dataplane.New(opts)
			if err != nil {
				return err
			}
			return dp.Run(cmd.Context())
		},
	}
	cmd.Flags().StringVar(&xdsAddr, "xds", "", "host:port of the ADS server")
	cmd.Flags().StringVar(&node, "node", "custos-dataplane", "node id sent to the control plane")
	cmd.Flags().StringVar(&cert, "cert", "", "client certificate presented to Custos (PEM)")
	cmd.Flags().StringVar(&key, "key", "", "its private key (PEM)")
	cmd.Flags().StringVar(&ca, "ca", "", "CA that verifies Custos' certificate (PEM)")
	cmd.Flags().BoolVar(&insecure, "insecure", false, "reach Custos in plain text (listen.insecure)")
	return cmd
}
