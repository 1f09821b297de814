package controlplane

import (
	"net"
	"net/http"
	"path/filepath"

	"github.com/custos-dev/custos/config"
	"github.com/custos-dev/custos/devissuer"
)

// DevIssuerDir is where the dev issuer of cfg keeps its keys and secret:
// beside the audit directory, as `custos dev` keeps its private CA.
func DevIssuerDir(cfg *config.Config) string {
	return filepath.Join(filepath.Dir(cfg.Audit.Dir), "dev-issuer")
}

// DevIssuerURL is the dev issuer's URL on the bound listen.http address
// httpAddr.
func DevIssuerURL(httpAddr string) string { return HTTPBase(httpAddr) + devissuer.Path }

// HTTPBase is the base URL of listen.http at the bound address httpAddr
// (an unspecified host becomes loopback, where it is reached).
func HTTPBase(httpAddr string) string {
	host, port, err := net.SplitHostPort(httpAddr)
	if err != nil {
		return "http://" + httpAddr
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, port)
}

// startDevIssuer mounts the dev OIDC issuer on mux when dev.issuer is set.
func (cp *ControlPlane) startDevIssuer(cfg *config.Config, mux *http.ServeMux) error {
	if cfg.Dev == nil || !cfg.Dev.Issuer {
		return nil
	}
	is, err := devissuer.New(devissuer.Options{URL: DevIssuerURL(cp.HTTPAddr), Dir: DevIssuerDir(cfg)})
	if err != nil {
		return err
	}
	cp.DevIssuer = is
	mux.Handle(devissuer.Path+"/", is)
	return nil
}

// withDevIssuer is cfg trusting the running dev issuer (when there is one
// and dev.issuer is still set), without changing cfg itself.
func (cp *ControlPlane) withDevIssuer(cfg *config.Config) *config.Config {
	if cp.DevIssuer == nil || cfg.Dev == nil || !cfg.Dev.Issuer {
		return cfg
	}
	c := *cfg
	c.Identity.Issuers = append([]config.Issuer{{
		Issuer:     cp.DevIssuer.URL(),
		Audiences:  []string{cp.DevIssuer.Audience()},
		Algorithms: []string{"RS256"},
		ClockSkew:  config.DefaultClockSkew,
		Claims:     config.ClaimNames{Groups: config.DefaultGroupsClaim, Roles: config.DefaultRolesClaim},
	}}, cfg.Identity.Issuers...)
	return &c
}
