// Package mtls is the trust between Envoy and Custos: mutual TLS on the
// gRPC services (ext_authz, ext_proc) and the ADS server, so that only a
// data plane holding a certificate from the configured CA, with an allowed
// identity, can ask for decisions, stream exchanges to record, or read the
// configuration.
//
// Certificates and the client CA come from files and are read again when
// the files change, so a rotated certificate takes effect without a restart.
// DevPKI makes a private CA and the certificates `custos dev` uses.
package mtls

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"
	"time"
)

// Files locate a certificate, its key and the CA that verifies the peer.
type Files struct {
	CertFile string
	KeyFile  string
	// CAFile holds the PEM certificates of the CA that issued the peer's.
	CAFile string
}

// reloader keeps a certificate and a CA pool read from files, and reads
// them again when a file's modification time or size changes.
type reloader struct {
	files Files
	mu    sync.Mutex
	stamp string
	cert  *tls.Certificate
	pool  *x509.CertPool
	// now is for tests.
	now func() time.Time
}

func newReloader(f Files) (*reloader, error) {
	r := &reloader{files: f, now: time.Now}
	if _, _, err := r.load(); err != nil {
		return nil, err
	}
	return r, nil
}

func stampOf(paths ...string) (string, error) {
	s := ""
	for _, p := range paths {
		if p == "" {
			continue
		}
		fi, err := os.Stat(p)
		if err != nil {
			return "", err
		}
		s += fmt.Sprintf("%s:%d:%d;", p, fi.ModTime().UnixNano(), fi.Size())
	}
	return s, nil
}

// load returns the current certificate and pool, reading the files again
// if they changed. A file that became unreadable or invalid keeps the last
// good pair in use and is reported.
func (r *reloader) load() (*tls.Certificate, *x509.CertPool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	stamp, err := stampOf(r.files.CertFile, r.files.KeyFile, r.files.CAFile)
	if err == nil && stamp == r.stamp && r.cert != nil {
		return r.cert, r.pool, nil
	}
	cert, pool, lerr := readFiles(r.files)
	if err == nil {
		err = lerr
	}
	if err != nil {
		if r.cert != nil {
			return r.cert, r.pool, nil // keep serving with the last good pair
		}
		return nil, nil, err
	}
	r.stamp, r.cert, r.pool = stamp, cert, pool
	return cert, pool, nil
}

func readFiles(f Files) (*tls.Certificate, *x509.CertPool, error) {
	if f.CertFile == "" || f.KeyFile == "" || f.CAFile == "" {
		return nil, nil, errors.New("mtls: a certificate, its key and a CA file are all required")
	}
	cert, err := tls.LoadX509KeyPair(f.CertFile, f.KeyFile)
	if err != nil {
		return nil, nil, fmt.Errorf("mtls: load %s and %s: %w", f.CertFile, f.KeyFile, err)
	}
	if cert.Leaf == nil && len(cert.Certificate) > 0 {
		cert.Leaf, _ = x509.ParseCertificate(cert.Certificate[0])
	}
	pem, err := os.ReadFile(f.CAFile)
	if err != nil {
		return nil, nil, fmt.Errorf("mtls: read %s: %w", f.CAFile, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, nil, fmt.Errorf("mtls: %s holds no PEM certificate", f.CAFile)
	}
	return &cert, pool, nil
}

// Server is the TLS configuration of a listener that requires a client
// certificate issued by f.CAFile whose identity is one of allowed (URI SANs
// such as spiffe://custos.local/envoy, or DNS SANs). An empty allowed list
// accepts any certificate the CA issued.
func Server(f Files, allowed []string) (*tls.Config, error) {
	r, err := newReloader(f)
	if err != nil {
		return nil, err
	}
	base := &tls.Config{MinVersion: tls.VersionTLS12}
	base.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
		cert, pool, err := r.load()
		if err != nil {
			return nil, err
		}
		return &tls.Config{
			MinVersion:   tls.VersionTLS12,
			Certificates: []tls.Certificate{*cert},
			ClientAuth:   tls.RequireAndVerifyClientCert,
			ClientCAs:    pool,
			NextProtos:   []string{"h2"},
			VerifyConnection: func(cs tls.ConnectionState) error {
				if len(cs.PeerCertificates) == 0 {
					return errors.New("mtls: no client certificate")
				}
				return allowedIdentity(cs.PeerCertificates[0], allowed)
			},
		}, nil
	}
	return base, nil
}

// Client is the TLS configuration of a client presenting f's certificate
// and trusting only f.CAFile's CA for the server, whose name must be
// serverName (a DNS SAN or an IP SAN of its certificate).
func Client(f Files, serverName string) (*tls.Config, error) {
	r, err := newReloader(f)
	if err != nil {
		return nil, err
	}
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		ServerName: serverName,
		NextProtos: []string{"h2"},
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			cert, _, err := r.load()
			return cert, err
		},
		// The CA pool is read again on change: verify by hand against it.
		InsecureSkipVerify: true, //nolint:gosec // VerifyConnection below verifies the chain and the name
		VerifyConnection: func(cs tls.ConnectionState) error {
			_, pool, err := r.load()
			if err != nil {
				return err
			}
			if len(cs.PeerCertificates) == 0 {
				return errors.New("mtls: the server sent no certificate")
			}
			inter := x509.NewCertPool()
			for _, c := range cs.PeerCertificates[1:] {
				inter.AddCert(c)
			}
			_, err = cs.PeerCertificates[0].Verify(x509.VerifyOptions{
				Roots: pool, Intermediates: inter, DNSName: serverName,
				KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
			})
			if err != nil {
				return fmt.Errorf("mtls: the server's certificate: %w", err)
			}
			return nil
		},
	}, nil
}

// allowedIdentity accepts c when one of its URI or DNS SANs is in allowed,
// or allowed is empty.
func allowedIdentity(c *x509.Certificate, allowed []string) error {
	if len(allowed) == 0 {
		return nil
	}
	var ids []string
	for _, u := range c.URIs {
		ids = append(ids, u.String())
	}
	ids = append(ids, c.DNSNames...)
	for _, id := range ids {
		if slices.Contains(allowed, id) {
			return nil
		}
	}
	return fmt.Errorf("mtls: client identity %v is not allowed", ids)
}
