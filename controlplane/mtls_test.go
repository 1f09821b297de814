package controlplane

import (
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/custos-dev/custos/config"
	"github.com/custos-dev/custos/mtls"
)

// With listen.tls, the gRPC services and ADS serve only a client with a
// certificate from the configured CA and an allowed identity: nobody else
// can ask for decisions, stream exchanges to record, or read the
// configuration.
func TestListenTLSRefusesEveryoneButTheAllowedDataPlane(t *testing.T) {
	dir := t.TempDir()
	pki, err := mtls.DevPKI(filepath.Join(dir, "pki"))
	if err != nil {
		t.Fatal(err)
	}
	other, err := mtls.DevPKI(filepath.Join(dir, "other"))
	if err != nil {
		t.Fatal(err)
	}
	intruder, err := pki.IssueClient(mtls.Files{CertFile: filepath.Join(dir, "i.crt"), KeyFile: filepath.Join(dir, "i.key")}, "spiffe://custos.local/intruder")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse([]byte(`listen:
  grpc: 127.0.0.1:0
  xds: 127.0.0.1:0
  http: 127.0.0.1:0
  dataplane: 127.0.0.1:0
  tls:
    cert_file: ` + pki.Server.CertFile + `
    key_file: ` + pki.Server.KeyFile + `
    client_ca_file: ` + pki.CAFile + `
    allowed_clients: [` + mtls.EnvoyIdentity + `]
audit:
  dir: ` + filepath.Join(dir, "audit") + `
`))
	if err != nil {
		t.Fatal(err)
	}
	cp, err := Start(context.Background(), cfg, "", slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cp.Shutdown)

	client := func(f mtls.Files) credentials.TransportCredentials {
		tc, err := mtls.Client(f, "127.0.0.1")
		if err != nil {
			t.Fatal(err)
		}
		return credentials.NewTLS(tc)
	}
	noCert, _ := mtls.Client(mtls.Files{CertFile: pki.Client.CertFile, KeyFile: pki.Client.KeyFile, CAFile: pki.CAFile}, "127.0.0.1")
	noCert.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &tls.Certificate{}, nil }
	for _, tc := range []struct {
		name  string
		creds credentials.TransportCredentials
		ok    bool
	}{
		{"the data plane", client(pki.Client), true},
		{"plain text", insecure.NewCredentials(), false},
		{"no certificate", credentials.NewTLS(noCert), false},
		{"another CA", client(mtls.Files{CertFile: other.Client.CertFile, KeyFile: other.Client.KeyFile, CAFile: pki.CAFile}), false},
		{"an identity not allowed", client(intruder), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, addr := range []string{cp.GRPCAddr, cp.XDSAddr} {
				conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(tc.creds))
				if err != nil {
					t.Fatal(err)
				}
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				if addr == cp.GRPCAddr {
					_, err = healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
				} else {
					var s discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesClient
					if s, err = discoveryv3.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx); err == nil {
						if err = s.Send(&discoveryv3.DiscoveryRequest{TypeUrl: "type.googleapis.com/envoy.config.cluster.v3.Cluster"}); err == nil {
							_, err = s.Recv()
						}
					}
				}
				cancel()
				conn.Close()
				if tc.ok && err != nil {
					t.Fatalf("%s refused: %v", addr, err)
				}
				if !tc.ok && err == nil {
					t.Fatalf("%s served", addr)
				}
			}
		})
	}
}
