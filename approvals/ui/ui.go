// Package ui is the approvers' page, /ui/approvals: the pending approvals a
// signed-in approver may see, each with its requester, connection, action in
// full, policy reasons, approvers and time left, and approve / deny buttons
// with a comment. It is server-rendered HTML (html/template) with a little
// inline JavaScript that polls a JSON endpoint to keep the list current.
//
// Approvers sign in with the OpenID Connect authorization-code flow with
// PKCE (S256) against the configured issuer, found by discovery; the access
// token the issuer returns is verified by the same authenticator as the
// approvals API's bearer tokens, so a vote through the page is a vote by a
// verified principal and the rules of package approvals apply unchanged.
// A sign-in in progress travels in a signed cookie (state, PKCE verifier,
// expiry); sessions live in memory (a restart signs everyone out) and
// their cookie holds only a random id. Every form carries a per-session CSRF token and every
// POST must come from the page's own origin. No asset is fetched from
// anywhere: CSS and JavaScript are inline, allowed by a per-response nonce
// in a strict Content-Security-Policy.
//
// browser_test.go drives the page in headless Chromium against a whole
// stack: an approver signs in through the dev issuer, sees a held request
// appear and releases it with a click.
package ui

import (
	"crypto/rand"
	"encoding/base64"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/custos-dev/custos/approvals"
)

// Paths the Page serves below Path.
const (
	// Path is where the Page is mounted; it serves everything below it.
	Path = "/ui/"
	// ApprovalsPath is the page itself.
	ApprovalsPath = "/ui/approvals"
	// ListPath is the JSON the page polls.
	ListPath = "/ui/approvals.json"
	// LoginPath starts a sign-in, CallbackPath ends it, LogoutPath (POST)
	// ends the session.
	LoginPath    = "/ui/login"
	CallbackPath = "/ui/callback"
	LogoutPath   = "/ui/logout"
)

// Defaults of Options.
const (
	// DefaultSessionTTL bounds a session; the access token's expiry ends
	// it sooner.
	DefaultSessionTTL = 8 * time.Hour
	// DefaultClientID is the client id the page presents to the issuer.
	DefaultClientID = "custos-ui"
	// PollEvery is how often the page asks for the list again.
	PollEvery = 3 * time.Second
	// maxForm bounds a vote's form body.
	maxForm = 16 << 10
	// maxSessions bounds the memory sessions take.
	maxSessions = 10000
	// loginTTL is how long a sign-in may take at the issuer.
	loginTTL = 10 * time.Minute
)

// Options configure a Page.
type Options struct {
	// Service holds the approvals.
	Service *approvals.Service
	// Authenticate verifies the access token a sign-in returns, as the
	// approvals API verifies bearer tokens.
	Authenticate approvals.Authenticator
	// Issuer is the OIDC issuer URL; its endpoints come from discovery
	// (ISSUER/.well-known/openid-configuration) at the first sign-in.
	Issuer string
	// ClientID is the page's client id at the issuer (DefaultClientID
	// when "").
	ClientID string
	// ClientSecret is presented (HTTP Basic) when the issuer registers
	// the page as a confidential client; "" for a public client.
	ClientSecret string
	// Scopes are asked for at sign-in (openid and profile when nil).
	Scopes []string
	// BaseURL is the page's own origin as the browser reaches it, such as
	// http://127.0.0.1:9090: the redirect URL is BaseURL + CallbackPath,
	// POSTs must come from this origin, and cookies are Secure when it is
	// https.
	BaseURL string
	// SessionTTL bounds a session (DefaultSessionTTL when 0).
	SessionTTL time.Duration
	// HTTPClient calls the issuer (a client with a 15s timeout when nil).
	HTTPClient *http.Client
	// Logger logs what the approver is not told (discovery and exchange
	// failures); never a token.
	Logger *slog.Logger
	// Now is the clock (time.Now when nil).
	Now func() time.Time
}

// Page serves the approvers' page and its sign-in below Path.
type Page struct {
	o        Options
	origin   string
	secure   bool
	mux      *http.ServeMux
	sessions *sessions
	// key signs the sign-in cookie.
	key  []byte
	oidc *provider
}

// New is the page over o. Nothing is fetched yet: discovery happens at the
// first sign-in, so New works before the server the issuer runs on is up.
func New(o Options) *Page {
	if o.ClientID == "" {
		o.ClientID = DefaultClientID
	}
	if o.Scopes == nil {
		o.Scopes = []string{"openid", "profile"}
	}
	if o.SessionTTL <= 0 {
		o.SessionTTL = DefaultSessionTTL
	}
	if o.HTTPClient == nil {
		o.HTTPClient = &http.Client{Timeout: 15 * time.Second}
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	o.BaseURL = strings.TrimSuffix(o.BaseURL, "/")
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	p := &Page{o: o, sessions: newSessions(o.Now), key: key, oidc: &provider{}}
	if u, err := url.Parse(o.BaseURL); err == nil && u.Host != "" {
		p.origin = u.Scheme + "://" + u.Host
		p.secure = u.Scheme == "https"
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ui/{$}", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, ApprovalsPath, http.StatusSeeOther)
	})
	mux.HandleFunc("GET "+LoginPath, p.login)
	mux.HandleFunc("GET "+CallbackPath, p.callback)
	mux.HandleFunc("POST "+LogoutPath, p.logout)
	mux.HandleFunc("GET "+ApprovalsPath, p.page)
	mux.HandleFunc("GET "+ListPath, p.list)
	mux.HandleFunc("POST /ui/approvals/{id}/vote", p.vote)
	p.mux = mux
	return p
}

// ServeHTTP serves one request below Path, with the headers every answer
// carries: nothing cached, framed or sniffed, and no referrer leaving the
// origin.
func (p *Page) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("cache-control", "no-store")
	h.Set("x-content-type-options", "nosniff")
	h.Set("x-frame-options", "DENY")
	h.Set("referrer-policy", "same-origin")
	p.mux.ServeHTTP(w, r)
}

// randomString is n random bytes, base64url without padding.
func randomString(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}
