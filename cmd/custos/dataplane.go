package main

import (
	"errors"

	"github.com/spf13/cobra"

	"github.com/custos-dev/custos/envoy/dataplane"
)

func newDataplaneCmd(g *globals) *cobra.Command {
	var xdsAddr, node string
	cmd := &cobra.Command{
		Use:   "dataplane --xds ADDR [--node ID]",
		Short: "Run the Go data plane alone, following an xDS server",
		Long: `Run the Go stand-in for Envoy: it follows the ADS server at --xds, serves the
listener it is given and calls ext_authz and ext_proc as Envoy does. It ACKs
what it applies and NACKs what it does not understand, keeping the last good
configuration.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if xdsAddr == "" {
				return usageError{errors.New("--xds ADDR is required")}
			}
			log, err := g.logger()
			if err != nil {
				return err
			}
			dp, err := dataplane.New(dataplane.Options{XDS: xdsAddr, NodeID: node, Logger: log})
			if err != nil {
				return err
			}
			return dp.Run(cmd.Context())
		},
	}
	cmd.Flags().StringVar(&xdsAddr, "xds", "", "host:port of the ADS server")
	cmd.Flags().StringVar(&node, "node", "custos-dataplane", "node id sent to the control plane")
	return cmd
}
