// Package devissuer is the OpenID Connect provider `custos dev` runs on
// loopback so that agents and approvers get real tokens without a cloud
// tenant: discovery, a JSON Web Key Set with signing-key rotation, the
// client_credentials grant (an agent gets its token the way a workload
// does) and the authorization-code flow with PKCE (an approver signs in to
// the approvals page). Tokens are RS256 JWTs that Custos' identity stage
// verifies exactly as it verifies Entra ID's: through discovery and the
// key set, never through a shortcut.
//
// It is a development tool. Every client shares one dev secret (a random
// file, 0600, in the issuer's directory) and any client id names the
// workload it asks a token for; the sign-in page asks for the same secret.
// It is never on outside `custos dev` unless dev.issuer is configured.
package devissuer

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// Defaults.
const (
	// DefaultAudience is the aud of every token, the App ID URI form that
	// Custos' examples accept.
	DefaultAudience = "api://custos"
	// DefaultTTL is a token's lifetime unless the client asks for less.
	DefaultTTL = time.Hour
	// MaxTTL caps what a client may ask for.
	MaxTTL = 24 * time.Hour
	// Path is where `custos dev` mounts the issuer on listen.http.
	Path = "/dev/oidc"
	// codeTTL is how long an authorization code can be exchanged.
	codeTTL = time.Minute
	keyBits = 2048
)

// Options configure an Issuer.
type Options struct {
	// URL is the issuer identifier (the iss of its tokens), an http(s) URL
	// whose path is where Handler is mounted.
	URL string
	// Dir keeps the signing keys and the dev secret across restarts, so
	// tokens outlive a restart of `custos dev`; "" keeps them in memory.
	Dir string
	// Audience is the aud of every token (default DefaultAudience).
	Audience string
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Issuer is one dev OIDC provider.
type Issuer struct {
	url, aud, dir string
	now           func() time.Time
	secret        string

	mu    sync.Mutex
	keys  []signingKey // keys[0] signs; the rest are still published
	codes map[string]authCode
}

type signingKey struct {
	ID  string          `json:"kid"`
	Key *rsa.PrivateKey `json:"-"`
}

type authCode struct {
	clientID, redirect, challenge string
	subject, name                 string
	groups                        []string
	expires                       time.Time
}

// New loads (or makes, once) the issuer's key and secret.
func New(o Options) (*Issuer, error) {
	u, err := url.Parse(o.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("dev issuer: URL %q must be an http(s) URL without query or fragment", o.URL)
	}
	is := &Issuer{url: strings.TrimSuffix(o.URL, "/"), aud: o.Audience, dir: o.Dir, now: o.Now, codes: map[string]authCode{}}
	if is.aud == "" {
		is.aud = DefaultAudience
	}
	if is.now == nil {
		is.now = time.Now
	}
	if err := is.load(); err != nil {
		return nil, fmt.Errorf("dev issuer: %w", err)
	}
	return is, nil
}

// URL is the issuer identifier.
func (is *Issuer) URL() string { return is.url }

// Audience is the aud of its tokens.
func (is *Issuer) Audience() string { return is.aud }

// Secret is the dev secret every client and the sign-in page present.
func (is *Issuer) Secret() string { return is.secret }

// SecretFile is where the dev secret is kept for `custos token` ("" when
// the issuer keeps its state in memory).
func (is *Issuer) SecretFile() string {
	if is.dir == "" {
		return ""
	}
	return SecretPath(is.dir)
}

// Rotate makes a new signing key. The previous key stays in the key set,
// so tokens it signed verify until the next rotation removes it.
func (is *Issuer) Rotate() error {
	k, err := newKey()
	if err != nil {
		return err
	}
	is.mu.Lock()
	defer is.mu.Unlock()
	keys := []signingKey{k, is.keys[0]}
	if err := is.save(keys); err != nil {
		return err
	}
	is.keys = keys
	return nil
}

// KeyIDs are the published key ids, the signing one first.
func (is *Issuer) KeyIDs() []string {
	is.mu.Lock()
	defer is.mu.Unlock()
	ids := make([]string, len(is.keys))
	for i, k := range is.keys {
		ids[i] = k.ID
	}
	return ids
}

// Claims say who a token is for.
type Claims struct {
	// Subject is the workload or user name (sub and oid).
	Subject string
	// Groups and Roles become the groups and roles claims.
	Groups, Roles []string
	// Human makes a delegated (user) token: idtyp user and an scp claim.
	Human bool
	// Name is a human's display name (preferred_username).
	Name string
	// ClientID is the azp/appid (default: Subject for a workload).
	ClientID string
	// TTL is the lifetime (default DefaultTTL, at most MaxTTL).
	TTL time.Duration
}

// Mint signs an access token for c.
func (is *Issuer) Mint(c Claims) (string, time.Duration, error) {
	if !validName(c.Subject) {
		return "", 0, errors.New("the subject must be 1 to 128 characters of letters, digits and . _ : @ -")
	}
	for _, g := range append(append([]string(nil), c.Groups...), c.Roles...) {
		if !validName(g) {
			return "", 0, errors.New("a group or role must be 1 to 128 characters of letters, digits and . _ : @ -")
		}
	}
	ttl := c.TTL
	if ttl <= 0 {
		ttl = DefaultTTL
	}
	if ttl > MaxTTL {
		return "", 0, fmt.Errorf("ttl %s is over the dev issuer's maximum of %s", ttl, MaxTTL)
	}
	now := is.now()
	client := c.ClientID
	if client == "" {
		client = c.Subject
	}
	claims := map[string]any{
		"iss": is.url, "aud": is.aud, "sub": c.Subject, "oid": c.Subject,
		"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(ttl).Unix(),
		"jti": randomID(), "azp": client, "appid": client, "ver": "2.0",
	}
	if len(c.Groups) > 0 {
		claims["groups"] = c.Groups
	}
	if len(c.Roles) > 0 {
		claims["roles"] = c.Roles
	}
	if c.Human {
		claims["idtyp"] = "user"
		claims["scp"] = "approvals"
		if c.Name != "" {
			claims["preferred_username"] = c.Name
		}
	} else {
		claims["idtyp"] = "app"
	}
	tok, err := is.sign(claims)
	return tok, ttl, err
}

func (is *Issuer) sign(claims map[string]any) (string, error) {
	is.mu.Lock()
	k := is.keys[0]
	is.mu.Unlock()
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: k.Key},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", k.ID))
	if err != nil {
		return "", err
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", err
	}
	jws, err := signer.Sign(payload)
	if err != nil {
		return "", err
	}
	return jws.CompactSerialize()
}

// validName is the dev issuer's rule for subjects, groups and roles: short
// and plain, so they can be typed and never hold markup.
func validName(s string) bool {
	if len(s) == 0 || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("._:@-", c) >= 0) {
			return false
		}
	}
	return true
}

func randomID() string {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand never fails on supported platforms
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

func newKey() (signingKey, error) {
	k, err := rsa.GenerateKey(rand.Reader, keyBits)
	if err != nil {
		return signingKey{}, err
	}
	return signingKey{ID: "dev-" + randomID()[:12], Key: k}, nil
}

// checkSecret compares a presented secret in constant time.
func (is *Issuer) checkSecret(s string) bool {
	return subtle.ConstantTimeCompare([]byte(s), []byte(is.secret)) == 1
}

// ReadSecret reads the dev secret from the file SecretFile names.
func ReadSecret(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return "", fmt.Errorf("%s is empty", path)
	}
	return s, nil
}

// handler serves the provider's endpoints under the issuer's path.
var _ http.Handler = (*Issuer)(nil)
