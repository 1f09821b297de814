package identity

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"

	"github.com/custos-dev/custos/config"
)

// Defaults of Options.
const (
	// DefaultRefetchInterval is the least time between two requests for an
	// issuer's key set (or discovery document): the rate limit on the
	// refetch an unknown kid causes.
	DefaultRefetchInterval = 10 * time.Second
	// DefaultKeyRefresh is how old a key set may get before it is fetched
	// again, so a key the issuer withdrew stops verifying.
	DefaultKeyRefresh = 15 * time.Minute
	// DefaultCacheSize is how many verified tokens are remembered.
	DefaultCacheSize = 10000
	// DefaultTimeout bounds one request to an issuer.
	DefaultTimeout = 10 * time.Second
)

// Options tune an OIDC verifier; the zero value is the defaults.
type Options struct {
	// Transport makes the requests to the issuers (default
	// http.DefaultTransport).
	Transport http.RoundTripper
	// Timeout bounds one request to an issuer (DefaultTimeout).
	Timeout time.Duration
	// Now is the clock (time.Now).
	Now func() time.Time
	// RefetchInterval is the least time between two requests to one
	// issuer (DefaultRefetchInterval).
	RefetchInterval time.Duration
	// KeyRefresh is the age at which a key set is fetched again
	// (DefaultKeyRefresh).
	KeyRefresh time.Duration
	// CacheSize is how many verified tokens are remembered
	// (DefaultCacheSize); negative disables the cache.
	CacheSize int
}

func (o Options) withDefaults() Options {
	if o.Transport == nil {
		o.Transport = http.DefaultTransport
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.RefetchInterval <= 0 {
		o.RefetchInterval = DefaultRefetchInterval
	}
	if o.KeyRefresh <= 0 {
		o.KeyRefresh = DefaultKeyRefresh
	}
	if o.CacheSize == 0 {
		o.CacheSize = DefaultCacheSize
	}
	return o
}

// OIDC verifies the bearer tokens of the configured issuers. The token's
// iss, read before anything is verified, only picks the issuer (exact
// match); that issuer's keys (OpenID Connect discovery and JWKS through
// go-oidc) must then verify the signature with one of its allowed
// algorithms, and exp, nbf, iat (with the issuer's clock skew) and the
// audience list are checked here. A verified token is remembered until
// its exp. An issuer is discovered at its first token, not at start-up, so
// an unreachable issuer delays nothing but its own tokens.
type OIDC struct {
	issuers map[string]*issuer
	cache   *tokenCache
	o       Options
}

// issuer is one configured issuer and, once discovered, its verifier.
type issuer struct {
	cfg config.Issuer
	o   Options

	v    atomic.Pointer[oidc.IDTokenVerifier]
	keys *keySet // set with v

	mu      sync.Mutex // discovery
	discAt  time.Time
	discErr error
}

// NewOIDC returns a verifier of the issuers of id (validated by config).
func NewOIDC(id config.Identity, o Options) (*OIDC, error) {
	o = o.withDefaults()
	v := &OIDC{issuers: map[string]*issuer{}, cache: newTokenCache(o.CacheSize), o: o}
	for _, c := range id.Issuers {
		if _, dup := v.issuers[c.Issuer]; dup {
			return nil, fmt.Errorf("identity: issuer %s configured twice", c.Issuer)
		}
		if len(c.Audiences) == 0 {
			return nil, fmt.Errorf("identity: issuer %s has no audiences", c.Issuer)
		}
		if len(c.Algorithms) == 0 {
			c.Algorithms = config.DefaultAlgorithms
		}
		for _, a := range c.Algorithms {
			if !slices.Contains(config.Algorithms, a) {
				return nil, fmt.Errorf("identity: issuer %s: algorithm %q is not accepted", c.Issuer, a)
			}
		}
		if c.Claims.Groups == "" {
			c.Claims.Groups = config.DefaultGroupsClaim
		}
		if c.Claims.Roles == "" {
			c.Claims.Roles = config.DefaultRolesClaim
		}
		v.issuers[c.Issuer] = &issuer{cfg: c, o: o}
	}
	if len(v.issuers) == 0 {
		return nil, errors.New("identity: no issuers")
	}
	return v, nil
}

// Verify verifies the bearer token of c. A token that fails a check is an
// *Error naming it; an issuer that cannot be reached while none of its keys
// are known is a plain error (the stage cannot decide). Neither ever holds
// the token. The Principal's slices and map are shared with the cache:
// read them, never change them.
func (v *OIDC) Verify(ctx context.Context, c Credentials) (Principal, error) {
	tok := c.Bearer
	if tok == "" {
		return Principal{}, &Error{Check: CheckMissing, Err: errors.New("no Authorization: Bearer token")}
	}
	if len(tok) > MaxTokenSize {
		return Principal{}, malformed("larger than %d bytes", MaxTokenSize)
	}
	key := sha256.Sum256([]byte(tok))
	now := v.o.Now()
	if p, ok := v.cache.get(key, now); ok {
		return p, nil
	}
	e, err := v.verify(ctx, tok, now)
	if err != nil {
		var ie *Error
		if errors.As(err, &ie) {
			ie.Claimed = claimed(tok)
		}
		return Principal{}, err
	}
	e.key = key
	v.cache.put(e)
	return e.p, nil
}

// verify checks tok in full: issuer, algorithm, signature, times, audience.
func (v *OIDC) verify(ctx context.Context, tok string, now time.Time) (*cached, error) {
	u, err := peek(tok)
	if err != nil {
		return nil, err
	}
	if u.iss == "" {
		return nil, &Error{Check: CheckIssuer, Err: errors.New("no iss claim")}
	}
	is := v.issuers[u.iss]
	if is == nil {
		return nil, &Error{Check: CheckIssuer, Err: fmt.Errorf("iss %s is not a configured issuer", cut(u.iss))}
	}
	if !slices.Contains(is.cfg.Algorithms, u.alg) {
		return nil, &Error{Check: CheckAlgorithm, Err: fmt.Errorf("alg %s is not one %s allows (%s)", cut(u.alg), is.cfg.Issuer, strings.Join(is.cfg.Algorithms, ", "))}
	}
	ver, err := is.verifier(ctx)
	if err != nil {
		return nil, err
	}
	gen := is.keys.f.gen.Load()
	pr := &probe{}
	idt, err := ver.Verify(context.WithValue(ctx, probeKey{}, pr), tok)
	switch {
	case err == nil:
	case !pr.reached:
		return nil, malformed("%v", err)
	case pr.err != nil && !is.keys.f.loaded():
		return nil, fmt.Errorf("identity: issuer %s: no signing keys known: %w", is.cfg.Issuer, pr.err)
	case pr.err != nil:
		return nil, &Error{Check: CheckSignature, Err: fmt.Errorf("no key of %s verifies the signature (kid %s)", is.cfg.Issuer, cut(u.kid))}
	default:
		return nil, malformed("%v", err)
	}
	var c map[string]any
	if err := idt.Claims(&c); err != nil {
		return nil, malformed("claims: %v", err)
	}
	t, err := tokenTimes(c)
	if err != nil {
		return nil, err
	}
	if err := t.check(now, is.cfg.ClockSkew); err != nil {
		return nil, err
	}
	if err := checkAudience(c, is.cfg.Audiences); err != nil {
		return nil, err
	}
	return &cached{p: is.principal(c), exp: t.exp, iss: is, gen: gen}, nil
}

// verifier returns the issuer's verifier, discovering the issuer first if
// needed; a failed discovery is tried again at most once per
// RefetchInterval.
func (is *issuer) verifier(ctx context.Context) (*oidc.IDTokenVerifier, error) {
	if v := is.v.Load(); v != nil {
		return v, nil
	}
	is.mu.Lock()
	defer is.mu.Unlock()
	if v := is.v.Load(); v != nil {
		return v, nil
	}
	now := is.o.Now()
	if !is.discAt.IsZero() && now.Sub(is.discAt) < is.o.RefetchInterval {
		return nil, is.discErr
	}
	is.discAt = now
	keys, err := is.discover(context.WithoutCancel(ctx))
	if err != nil {
		// go-oidc's message may quote the issuer's whole answer.
		msg := err.Error()
		if len(msg) > 200 {
			msg = msg[:200] + "…"
		}
		is.discErr = fmt.Errorf("identity: discover issuer %s: %s", is.cfg.Issuer, msg)
		return nil, is.discErr
	}
	v := oidc.NewVerifier(is.cfg.Issuer, keys, &oidc.Config{
		SupportedSigningAlgs: is.cfg.Algorithms,
		// The audience list, exp, nbf and iat are checked by OIDC.verify:
		// go-oidc takes one client id and has fixed time leeways.
		SkipClientIDCheck: true,
		SkipExpiryCheck:   true,
	})
	is.keys = keys
	is.v.Store(v)
	return v, nil
}

// discover reads the issuer's discovery document (at discovery_url when
// configured) and returns its key set. The document's issuer must be the
// configured issuer exactly.
func (is *issuer) discover(ctx context.Context) (*keySet, error) {
	client := &http.Client{Transport: limitBody{is.o.Transport}, Timeout: is.o.Timeout}
	ctx = oidc.ClientContext(ctx, client)
	base := is.cfg.Issuer
	if is.cfg.DiscoveryURL != "" {
		base = strings.TrimSuffix(is.cfg.DiscoveryURL, config.DiscoveryPath)
		// go-oidc then takes the document's issuer without comparing it;
		// it is compared below.
		ctx = oidc.InsecureIssuerURLContext(ctx, is.cfg.Issuer)
	}
	p, err := oidc.NewProvider(ctx, base)
	if err != nil {
		return nil, err
	}
	var doc struct {
		Issuer  string `json:"issuer"`
		JWKSURI string `json:"jwks_uri"`
	}
	if err := p.Claims(&doc); err != nil {
		return nil, err
	}
	if doc.Issuer != is.cfg.Issuer {
		return nil, fmt.Errorf("the discovery document is of issuer %s, not %s", cut(doc.Issuer), is.cfg.Issuer)
	}
	if problem := checkKeysURL(doc.JWKSURI); problem != "" {
		return nil, fmt.Errorf("the discovery document's jwks_uri %s", problem)
	}
	return newKeySet(doc.JWKSURI, is.o.Transport, is.o), nil
}

// checkKeysURL returns what is wrong with a jwks_uri: it must be https, or
// http on loopback (as issuers may be).
func checkKeysURL(s string) string {
	u, err := url.Parse(s)
	switch {
	case s == "":
		return "is missing"
	case err != nil || u.Host == "":
		return "is not a URL"
	case u.Scheme == "https":
		return ""
	case u.Scheme == "http":
		h := u.Hostname()
		if ip := net.ParseIP(h); h == "localhost" || ip != nil && ip.IsLoopback() {
			return ""
		}
	}
	return "must be https (http only on loopback)"
}
