package ui

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/custos-dev/custos/filters/identity"
)

// oauthCode is the shape of an OAuth error code (RFC 6749 section 4.1.2.1).
var oauthCode = regexp.MustCompile(`^[a-z_]{1,64}$`)

// provider is the issuer's OAuth configuration, found by discovery once it
// first succeeds.
type provider struct {
	mu  sync.Mutex
	cfg *oauth2.Config
}

// config returns the OAuth configuration, running discovery if it has not
// succeeded yet.
func (p *Page) config(ctx context.Context) (*oauth2.Config, error) {
	p.oidc.mu.Lock()
	defer p.oidc.mu.Unlock()
	if p.oidc.cfg != nil {
		return p.oidc.cfg, nil
	}
	if p.origin == "" {
		return nil, fmt.Errorf("the page's base URL %q is not an absolute URL", p.o.BaseURL)
	}
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	prov, err := oidc.NewProvider(oidc.ClientContext(ctx, p.o.HTTPClient), p.o.Issuer)
	if err != nil {
		return nil, fmt.Errorf("discover issuer %s: %w", p.o.Issuer, err)
	}
	ep := prov.Endpoint()
	if p.o.ClientSecret == "" {
		ep.AuthStyle = oauth2.AuthStyleInParams // a public client: client_id in the form
	} else {
		ep.AuthStyle = oauth2.AuthStyleInHeader
	}
	p.oidc.cfg = &oauth2.Config{ClientID: p.o.ClientID, ClientSecret: p.o.ClientSecret, Endpoint: ep,
		RedirectURL: p.o.BaseURL + CallbackPath, Scopes: p.o.Scopes}
	return p.oidc.cfg, nil
}

// login sends the browser to the issuer's sign-in with a fresh state and
// PKCE challenge; the verifier stays on the server.
func (p *Page) login(w http.ResponseWriter, r *http.Request) {
	cfg, err := p.config(r.Context())
	if err != nil {
		p.o.Logger.Error("approvals page: sign-in", "err", err)
		p.message(w, http.StatusServiceUnavailable, "Sign-in is unavailable", "The identity provider could not be reached. Try again in a moment.")
		return
	}
	state, verifier := randomString(32), oauth2.GenerateVerifier()
	ticket := p.seal(login{state: state, verifier: verifier, expires: p.o.Now().Add(loginTTL)})
	http.SetCookie(w, p.cookie(loginCookie, ticket, CallbackPath, http.SameSiteLaxMode, int(loginTTL.Seconds())))
	http.Redirect(w, r, cfg.AuthCodeURL(state, oauth2.S256ChallengeOption(verifier)), http.StatusSeeOther)
}

// callback ends a sign-in: the state must be the one this browser was
// given, the code is exchanged with the verifier, and the access token is
// verified before a session starts.
func (p *Page) callback(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	// The sign-in is over whatever happens: its cookie goes.
	http.SetCookie(w, p.cookie(loginCookie, "", CallbackPath, http.SameSiteLaxMode, -1))
	if e := q.Get("error"); e != "" {
		// Only the code: the description is anyone's text in a link.
		if !oauthCode.MatchString(e) {
			e = "an unknown error"
		}
		p.message(w, http.StatusBadRequest, "Sign-in failed", "The identity provider refused the sign-in ("+e+"). Sign in again.")
		return
	}
	c, err := r.Cookie(loginCookie)
	if err != nil {
		p.message(w, http.StatusBadRequest, "Sign-in failed", "This browser started no sign-in, or it took too long. Sign in again.")
		return
	}
	in, ok := p.unseal(c.Value)
	if !ok {
		p.message(w, http.StatusBadRequest, "Sign-in failed", "This sign-in is not one the page started, or it expired. Sign in again.")
		return
	}
	if subtle.ConstantTimeCompare([]byte(q.Get("state")), []byte(in.state)) != 1 {
		p.message(w, http.StatusBadRequest, "Sign-in failed", "The sign-in's state does not match the one this browser started. Sign in again.")
		return
	}
	// RFC 9207: an issuer that names itself must be the one asked.
	if iss := q.Get("iss"); iss != "" && iss != p.o.Issuer {
		p.message(w, http.StatusBadRequest, "Sign-in failed", "The answer came from another identity provider than the one asked. Sign in again.")
		return
	}
	code := q.Get("code")
	if code == "" {
		p.message(w, http.StatusBadRequest, "Sign-in failed", "The identity provider returned no code. Sign in again.")
		return
	}
	cfg, err := p.config(r.Context())
	if err != nil {
		p.o.Logger.Error("approvals page: sign-in", "err", err)
		p.message(w, http.StatusServiceUnavailable, "Sign-in is unavailable", "The identity provider could not be reached. Try again in a moment.")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 15*time.Second)
	defer cancel()
	tok, err := cfg.Exchange(context.WithValue(ctx, oauth2.HTTPClient, p.o.HTTPClient), code, oauth2.VerifierOption(in.verifier))
	if err != nil {
		p.o.Logger.Warn("approvals page: code exchange", "err", err)
		p.message(w, http.StatusBadGateway, "Sign-in failed", "The identity provider did not accept the sign-in's code. Sign in again.")
		return
	}
	pr, err := p.o.Authenticate(ctx, tok.AccessToken)
	if err != nil {
		var ie *identity.Error
		if errors.As(err, &ie) {
			p.message(w, http.StatusForbidden, "Sign-in refused", "Custos does not accept the identity provider's token ("+ie.Check+").")
			return
		}
		p.o.Logger.Error("approvals page: verify token", "err", err)
		p.message(w, http.StatusServiceUnavailable, "Sign-in is unavailable", "The token could not be verified now. Try again in a moment.")
		return
	}
	expires := p.o.Now().Add(p.o.SessionTTL)
	if !tok.Expiry.IsZero() && tok.Expiry.Before(expires) {
		expires = tok.Expiry
	}
	id, err := p.sessions.start(tok.AccessToken, pr, expires)
	if err != nil {
		p.message(w, http.StatusServiceUnavailable, "Sign-in is unavailable", err.Error())
		return
	}
	http.SetCookie(w, p.cookie(sessionCookie, id, Path, http.SameSiteStrictMode, int(expires.Sub(p.o.Now()).Seconds())))
	// A page, not a redirect: a redirect would still belong to the
	// navigation the issuer started on another site, on which the browser
	// withholds a SameSite=Strict cookie; this page's navigation is the
	// page's own.
	p.render(w, http.StatusOK, "continue", pageData{Title: "Signed in", Nonce: randomString(16), Refresh: true})
}

// logout ends the session (a POST with the session's CSRF token).
func (p *Page) logout(w http.ResponseWriter, r *http.Request) {
	id, se, ok := p.sessionOf(r)
	if ok && !p.checkPost(w, r, se) {
		return
	}
	if ok {
		p.sessions.end(id)
	}
	http.SetCookie(w, p.cookie(sessionCookie, "", Path, http.SameSiteStrictMode, -1))
	p.message(w, http.StatusOK, "Signed out", "You are signed out of the approvals page.")
}
