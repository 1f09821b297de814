package main

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/custos-dev/custos/config"
	"github.com/custos-dev/custos/devissuer"
	"github.com/custos-dev/custos/filters/record"
	"github.com/custos-dev/custos/mtls"
	"github.com/custos-dev/custos/stack"
	"github.com/custos-dev/custos/stack/stacktest"
)

// TLS for agents through both data planes: the listener serves TLS with
// the files of listen.agent_tls; an agent with a token reaches a
// connection as before; on a connection that takes client certificates, a
// verified SPIFFE identity with no token is a workload principal; one that
// requires them refuses an agent without one; plain text gets nothing.
func TestAgentTLSAndClientCertificatesThroughBothDataPlanes(t *testing.T) {
	stacktest.ForEachDataPlane(t, func(t *testing.T, dp stack.DataPlane) {
		// Each data plane gets its own files: the renewal below replaces them.
		dir := t.TempDir()
		pki, err := mtls.DevPKI(dir)
		if err != nil {
			t.Fatal(err)
		}
		const agentID = "spiffe://bank.example/agent/nightly-etl"
		agent, err := pki.IssueClient(mtls.Files{CertFile: filepath.Join(dir, "agent.crt"), KeyFile: filepath.Join(dir, "agent.key")}, agentID)
		if err != nil {
			t.Fatal(err)
		}
		caPEM, err := os.ReadFile(pki.CAFile)
		if err != nil {
			t.Fatal(err)
		}
		roots := x509.NewCertPool()
		roots.AppendCertsFromPEM(caPEM)
		cert, err := tls.LoadX509KeyPair(agent.CertFile, agent.KeyFile)
		if err != nil {
			t.Fatal(err)
		}
		client := func(withCert bool) *http.Client {
			tc := &tls.Config{RootCAs: roots, ServerName: "localhost"}
			if withCert {
				tc.Certificates = []tls.Certificate{cert}
			}
			return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: tc}}
		}
		s := stacktest.Start(t, dp, stacktest.Options{Config: func(u string) (*config.Config, error) {
			return config.Parse([]byte(`listen:
  grpc: 127.0.0.1:0
  xds: 127.0.0.1:0
  http: 127.0.0.1:0
  dataplane: 127.0.0.1:0
  agent_tls:
    cert_file: ` + pki.Server.CertFile + `
    key_file: ` + pki.Server.KeyFile + `
    client_ca_file: ` + pki.CAFile + `
connections:
  - name: customers
    upstream: ` + u + `
    client_cert: optional
  - name: strict
    upstream: ` + u + `
    client_cert: required
dev:
  issuer: true
`))
		}})
		tok, _, err := s.CP.DevIssuer.Mint(devissuer.Claims{Subject: "etl"})
		if err != nil {
			t.Fatal(err)
		}
		base := "https://" + s.Addr
		call := func(c *http.Client, path, auth string) (int, string) {
			t.Helper()
			req, _ := http.NewRequest("GET", base+path, nil)
			if auth != "" {
				req.Header.Set("authorization", auth)
			}
			resp, err := c.Do(req)
			if err != nil {
				t.Fatalf("%s: %v", path, err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			return resp.StatusCode, resp.Header.Get("x-custos-request-id") + "|" + string(b)
		}
		id := func(s string) string { return s[:36] }

		if st, body := call(client(false), "/customers/1", "Bearer "+tok); st != 200 {
			t.Fatalf("a token over TLS: %d %s", st, body)
		}
		st, body := call(client(true), "/customers/1", "")
		if st != 200 {
			t.Fatalf("a client certificate, no token: %d %s", st, body)
		}
		if d := s.Events.Of(record.Decided, id(body)); len(d) != 1 || d[0].Principal != "x509/"+agentID || d[0].PrincipalKind != "workload" {
			t.Fatalf("the certificate's principal: %+v", d)
		}
		if st, body := call(client(false), "/strict/1", "Bearer "+tok); st != 401 {
			t.Fatalf("a required certificate missing: %d %s", st, body)
		}
		if st, body := call(client(true), "/strict/1", ""); st != 200 {
			t.Fatalf("a required certificate given: %d %s", st, body)
		}
		if resp, err := http.Get("http://" + s.Addr + "/customers/1"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				t.Fatal("plain text was served on the TLS listener")
			}
		}

		// A renewed certificate is served without a restart.
		renewed, err := pki.IssueClient(mtls.Files{CertFile: filepath.Join(t.TempDir(), "new.crt"), KeyFile: filepath.Join(t.TempDir(), "new.key")}, "spiffe://custos.local/listener-renewed")
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range [][2]string{{renewed.KeyFile, pki.Server.KeyFile}, {renewed.CertFile, pki.Server.CertFile}} {
			b, err := os.ReadFile(f[0])
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(f[1]+".tmp", b, 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(f[1]+".tmp", f[1]); err != nil {
				t.Fatal(err)
			}
		}
		deadline := time.Now().Add(30 * time.Second)
		for {
			c, err := tls.Dial("tcp", s.Addr, &tls.Config{InsecureSkipVerify: true})
			if err == nil {
				served := c.ConnectionState().PeerCertificates[0]
				c.Close()
				if len(served.URIs) == 1 && served.URIs[0].String() == "spiffe://custos.local/listener-renewed" {
					break
				}
			}
			if time.Now().After(deadline) {
				t.Fatal("the renewed certificate was not served")
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
}
