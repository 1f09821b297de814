package mtls

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"time"
)

// EnvoyIdentity is the SPIFFE id DevPKI gives the data plane's client
// certificate, and the identity `custos dev` allows.
const EnvoyIdentity = "spiffe://custos.local/envoy"

// PKI is a private CA with a server certificate for Custos and a client
// certificate for the data plane, as files.
type PKI struct {
	// CAFile is the CA certificate both sides trust.
	CAFile string
	// Server is Custos' certificate (DNS localhost and custos, IP 127.0.0.1
	// and ::1) with the CA.
	Server Files
	// Client is the data plane's certificate (URI SAN EnvoyIdentity) with
	// the CA.
	Client Files

	caKeyFile string
}

// DevPKI returns the private CA and certificates in dir, making them on
// first use (and again when they are unreadable or within a week of
// expiry). Keys are written 0600. For development only: production
// certificates come from the operator's own CA.
func DevPKI(dir string) (PKI, error) {
	p := PKI{
		CAFile:    filepath.Join(dir, "ca.crt"),
		caKeyFile: filepath.Join(dir, "ca.key"),
		Server:    Files{CertFile: filepath.Join(dir, "custos.crt"), KeyFile: filepath.Join(dir, "custos.key")},
		Client:    Files{CertFile: filepath.Join(dir, "envoy.crt"), KeyFile: filepath.Join(dir, "envoy.key")},
	}
	p.Server.CAFile, p.Client.CAFile = p.CAFile, p.CAFile
	if p.valid() {
		return p, nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return PKI{}, fmt.Errorf("dev pki: %w", err)
	}
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return PKI{}, err
	}
	now := time.Now()
	ca := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "custos dev CA", Organization: []string{"custos dev"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(5 * 365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		return PKI{}, err
	}
	caCert, _ := x509.ParseCertificate(caDER)
	caKeyDER, err := x509.MarshalPKCS8PrivateKey(caKey)
	if err != nil {
		return PKI{}, err
	}
	if err := writePEM(p.caKeyFile, "PRIVATE KEY", caKeyDER, 0o600); err != nil {
		return PKI{}, err
	}
	if err := writePEM(p.CAFile, "CERTIFICATE", caDER, 0o644); err != nil {
		return PKI{}, err
	}
	spiffe, _ := url.Parse(EnvoyIdentity)
	for _, leaf := range []struct {
		files Files
		tmpl  *x509.Certificate
	}{
		{p.Server, &x509.Certificate{
			Subject:     pkix.Name{CommonName: "custos"},
			DNSNames:    []string{"localhost", "custos"},
			IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		}},
		{p.Client, &x509.Certificate{
			Subject:     pkix.Name{CommonName: "envoy"},
			URIs:        []*url.URL{spiffe},
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		}},
	} {
		if err := issue(leaf.files, leaf.tmpl, caCert, caKey, now); err != nil {
			return PKI{}, err
		}
	}
	return p, nil
}

// IssueClient writes to f a client certificate from p's CA with the given
// URI SAN (f.CAFile is set to p's CA), for another data plane or, in tests,
// an identity that is not allowed.
func (p PKI) IssueClient(f Files, uri string) (Files, error) {
	ca, key, err := p.ca()
	if err != nil {
		return Files{}, err
	}
	u, err := url.Parse(uri)
	if err != nil {
		return Files{}, fmt.Errorf("dev pki: %q: %w", uri, err)
	}
	f.CAFile = p.CAFile
	return f, issue(f, &x509.Certificate{Subject: pkix.Name{CommonName: uri}, URIs: []*url.URL{u},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}, ca, key, time.Now())
}

func (p PKI) ca() (*x509.Certificate, *ecdsa.PrivateKey, error) {
	cb, err := os.ReadFile(p.CAFile)
	if err != nil {
		return nil, nil, err
	}
	kb, err := os.ReadFile(p.caKeyFile)
	if err != nil {
		return nil, nil, err
	}
	cblock, _ := pem.Decode(cb)
	kblock, _ := pem.Decode(kb)
	if cblock == nil || kblock == nil {
		return nil, nil, errors.New("dev pki: the CA files hold no PEM")
	}
	ca, err := x509.ParseCertificate(cblock.Bytes)
	if err != nil {
		return nil, nil, err
	}
	k, err := x509.ParsePKCS8PrivateKey(kblock.Bytes)
	if err != nil {
		return nil, nil, err
	}
	key, ok := k.(*ecdsa.PrivateKey)
	if !ok {
		return nil, nil, errors.New("dev pki: the CA key is not ECDSA")
	}
	return ca, key, nil
}

// issue writes a certificate for tmpl, signed by ca, to f.
func issue(f Files, tmpl *x509.Certificate, ca *x509.Certificate, caKey *ecdsa.PrivateKey, now time.Time) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	tmpl.SerialNumber = serial()
	tmpl.NotBefore = now.Add(-time.Hour)
	tmpl.NotAfter = now.Add(365 * 24 * time.Hour)
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return err
	}
	kb, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	if err := writePEM(f.KeyFile, "PRIVATE KEY", kb, 0o600); err != nil {
		return err
	}
	return writePEM(f.CertFile, "CERTIFICATE", der, 0o644)
}

func (p PKI) valid() bool {
	if _, _, err := p.ca(); err != nil {
		return false
	}
	for _, f := range []Files{p.Server, p.Client} {
		cert, _, err := readFiles(f)
		if err != nil || cert.Leaf == nil || time.Until(cert.Leaf.NotAfter) < 7*24*time.Hour {
			return false
		}
	}
	return true
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	return n
}

// writePEM writes one PEM block to path through a temporary file renamed
// over it, so a reader never sees half a file.
func writePEM(path, typ string, der []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".pem-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if err := pem.Encode(tmp, &pem.Block{Type: typ, Bytes: der}); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return errors.Join(fmt.Errorf("write %s", path), err)
	}
	return nil
}
