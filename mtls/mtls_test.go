package mtls

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// serve accepts TLS connections with cfg and writes "ok" on each.
func serve(t *testing.T, cfg *tls.Config) string {
	t.Helper()
	lis, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lis.Close() })
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				if err := c.(*tls.Conn).Handshake(); err == nil {
					_, _ = io.WriteString(c, "ok")
				}
			}()
		}
	}()
	return lis.Addr().String()
}

// dial handshakes with cfg and reads the server's greeting.
func dial(addr string, cfg *tls.Config) error {
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	b, err := io.ReadAll(c)
	if err != nil {
		return err
	}
	if string(b) != "ok" {
		return errors.New("refused after the handshake")
	}
	return nil
}

func TestMutualTLSRefusesEveryoneButTheAllowedClient(t *testing.T) {
	pki, err := DevPKI(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	other, err := DevPKI(t.TempDir()) // another CA
	if err != nil {
		t.Fatal(err)
	}
	srv, err := Server(pki.Server, []string{EnvoyIdentity})
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, srv)
	good, err := Client(pki.Client, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	if err := dial(addr, good); err != nil {
		t.Fatalf("the allowed client was refused: %v", err)
	}

	pool := x509.NewCertPool()
	caPEM, _ := os.ReadFile(pki.CAFile)
	pool.AppendCertsFromPEM(caPEM)
	noCert := &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", NextProtos: []string{"h2"}}
	if err := dial(addr, noCert); err == nil {
		t.Fatal("a client without a certificate was served")
	}
	otherCA, _ := Client(Files{CertFile: other.Client.CertFile, KeyFile: other.Client.KeyFile, CAFile: pki.CAFile}, "127.0.0.1")
	if err := dial(addr, otherCA); err == nil {
		t.Fatal("a client certificate from another CA was accepted")
	}
	// The right CA, an identity that is not allowed.
	dir := t.TempDir()
	intruder, err := pki.IssueClient(Files{CertFile: filepath.Join(dir, "i.crt"), KeyFile: filepath.Join(dir, "i.key")}, "spiffe://custos.local/intruder")
	if err != nil {
		t.Fatal(err)
	}
	wrongID, _ := Client(intruder, "127.0.0.1")
	if err := dial(addr, wrongID); err == nil {
		t.Fatal("a client identity that is not allowed was accepted")
	}
	if open, _ := Server(pki.Server, nil); dial(serve(t, open), wrongID) != nil {
		t.Fatal("with no allowed list, a certificate from the CA was refused")
	}
	// The client refuses a server from another CA.
	impostor, _ := Server(other.Server, nil)
	if err := dial(serve(t, impostor), good); err == nil {
		t.Fatal("the client accepted a server certificate from another CA")
	}
	// And a server certificate for another name.
	if c, _ := Client(pki.Client, "custos.elsewhere"); dial(addr, c) == nil {
		t.Fatal("the client accepted a server certificate for another name")
	}
}

func TestCertificatesAreReadAgainWhenTheirFilesChange(t *testing.T) {
	dir := t.TempDir()
	pki, err := DevPKI(dir)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := Server(pki.Server, nil)
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, srv)
	client, _ := Client(pki.Client, "127.0.0.1")
	if err := dial(addr, client); err != nil {
		t.Fatal(err)
	}
	// A new CA and certificates in the same files: the running server and
	// client take them without a restart.
	for _, f := range []string{"ca.crt", "ca.key", "custos.crt", "envoy.crt"} {
		if err := os.Remove(filepath.Join(dir, f)); err != nil {
			t.Fatal(err)
		}
	}
	before, _ := os.ReadFile(pki.Server.CertFile)
	// Stamps are modification times: make sure the new files look new.
	time.Sleep(10 * time.Millisecond)
	rotated, err := DevPKI(dir)
	if err != nil {
		t.Fatal(err)
	}
	if after, _ := os.ReadFile(rotated.Server.CertFile); string(after) == string(before) {
		t.Fatal("no new certificate was made")
	}
	// A client that knows only the new CA: served only if the running
	// server took the new certificate.
	fresh, err := Client(rotated.Client, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	if err := dial(addr, fresh); err != nil {
		t.Fatalf("after rotation the server still presents the old certificate: %v", err)
	}
	if err := dial(addr, client); err != nil {
		t.Fatalf("after rotation the running client did not take the new files: %v", err)
	}
	if _, err := Server(Files{CertFile: rotated.Server.CertFile, KeyFile: rotated.Server.KeyFile, CAFile: filepath.Join(dir, "missing.crt")}, nil); err == nil {
		t.Fatal("a missing CA file was accepted")
	}
}

func TestDevPKIIsReusedAndKeysArePrivate(t *testing.T) {
	dir := t.TempDir()
	a, err := DevPKI(dir)
	if err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(a.CAFile)
	b, err := DevPKI(dir)
	if err != nil {
		t.Fatal(err)
	}
	after, _ := os.ReadFile(b.CAFile)
	if string(before) != string(after) {
		t.Fatal("a valid dev CA was made again")
	}
	for _, k := range []string{a.Server.KeyFile, a.Client.KeyFile} {
		fi, err := os.Stat(k)
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v %v, want 0600", k, fi.Mode(), err)
		}
	}
}
