package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/custos-dev/custos/mtls"
)

func newCertsCmd(g *globals) *cobra.Command {
	var dir string
	cmd := &cobra.Command{
		Use:   "certs --dir DIR",
		Short: "Make a private CA and the certificates for mutual TLS between Envoy and Custos",
		Long: `Make, in DIR, a private CA (ca.crt, ca.key), Custos' server certificate
(custos.crt, custos.key: DNS localhost and custos, IP 127.0.0.1 and ::1) and
the data plane's client certificate (envoy.crt, envoy.key: URI SAN
` + mtls.EnvoyIdentity + `). Keys are written 0600. Certificates already there
and valid for more than a week are kept.

For a first deployment and for tests: in production, issue the certificates
from your own CA. Point listen.tls at custos.crt, custos.key and ca.crt, with
allowed_clients: [` + mtls.EnvoyIdentity + `]; envoy/bootstrap.yaml reads
tls/envoy.crt, tls/envoy.key and tls/ca.crt from Envoy's working directory.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if dir == "" {
				return usageError{errors.New("--dir DIR is required")}
			}
			p, err := mtls.DevPKI(dir)
			if err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "CA                 %s\n", p.CAFile)
			fmt.Fprintf(g.stdout, "custos (server)    %s %s\n", p.Server.CertFile, p.Server.KeyFile)
			fmt.Fprintf(g.stdout, "envoy (client)     %s %s  identity %s\n", p.Client.CertFile, p.Client.KeyFile, mtls.EnvoyIdentity)
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "directory for the CA and certificates (made if missing)")
	return cmd
}
