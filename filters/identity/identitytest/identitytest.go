// Package identitytest runs OpenID Connect issuers on loopback for tests:
// a discovery document and a JSON Web Key Set served by an httptest server
// the test starts (and t.Cleanup stops), RSA and EC signing keys, key
// rotation, an issuer that goes down, and tokens signed, or forged, as a
// test needs them. Tokens are signed with github.com/go-jose/go-jose/v4.
package identitytest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// DefaultAudience is the aud of Token unless the claims name another.
const DefaultAudience = "api://custos"

// Issuer is an OpenID Connect issuer on loopback.
type Issuer struct {
	// URL is the issuer (the iss of its tokens and of its discovery
	// document).
	URL string
	// DiscoveryURL is where its discovery document is served.
	DiscoveryURL string
	// KeysURL is its jwks_uri.
	KeysURL string

	srv       *httptest.Server
	mu        sync.Mutex
	published []*Key
	down      atomic.Bool
	keysDown  atomic.Bool
	keyHits   atomic.Int64
	discHits  atomic.Int64
	serial    atomic.Int64
	now       func() time.Time
	issuerDoc string
}

// Key is a signing key of an issuer.
type Key struct {
	// ID is the kid.
	ID string
	// Alg is the signature algorithm (RS256, ES256, ...).
	Alg     jose.SignatureAlgorithm
	private crypto.Signer
}

// Option changes how New starts an issuer.
type Option func(*Issuer)

// WithIssuer makes the issuer claim iss (such as Entra ID's
// https://sts.windows.net/TENANT/) instead of its own loopback URL; its
// discovery document stays on loopback, at DiscoveryURL.
func WithIssuer(iss string) Option { return func(is *Issuer) { is.issuerDoc = iss } }

// WithClock sets the clock Token reads for iat, nbf and exp.
func WithClock(now func() time.Time) Option { return func(is *Issuer) { is.now = now } }

// New starts an issuer on loopback under path (such as "/tenant-a") with no
// keys published; AddKey publishes one.
func New(t testing.TB, path string, opts ...Option) *Issuer {
	t.Helper()
	is := &Issuer{now: time.Now}
	for _, o := range opts {
		o(is)
	}
	path = "/" + strings.Trim(path, "/")
	if path == "/" {
		path = ""
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+path+"/.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		is.discHits.Add(1)
		if is.down.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{
			"issuer":                                is.URL,
			"jwks_uri":                              is.KeysURL,
			"authorization_endpoint":                is.srv.URL + path + "/authorize",
			"token_endpoint":                        is.srv.URL + path + "/token",
			"id_token_signing_alg_values_supported": []string{"RS256", "ES256"},
			"response_types_supported":              []string{"code"},
			"subject_types_supported":               []string{"public"},
		})
	})
	mux.HandleFunc("GET "+path+"/keys", func(w http.ResponseWriter, r *http.Request) {
		is.keyHits.Add(1)
		if is.down.Load() || is.keysDown.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(is.JWKS())
	})
	is.srv = httptest.NewServer(mux)
	t.Cleanup(is.srv.Close)
	is.URL = is.srv.URL + path + "/"
	if is.issuerDoc != "" {
		is.URL = is.issuerDoc
	}
	is.DiscoveryURL = is.srv.URL + path + "/.well-known/openid-configuration"
	is.KeysURL = is.srv.URL + path + "/keys"
	return is
}

// NewKey makes a key without publishing it: RSA 2048 for RS*/PS*, P-256
// for ES256, P-384 for ES384.
func (is *Issuer) NewKey(t testing.TB, alg jose.SignatureAlgorithm) *Key {
	t.Helper()
	var priv crypto.Signer
	var err error
	switch alg {
	case jose.ES256:
		priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case jose.ES384:
		priv, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	default:
		priv, err = rsa.GenerateKey(rand.Reader, 2048)
	}
	if err != nil {
		t.Fatal(err)
	}
	return &Key{ID: fmt.Sprintf("%s-%d", strings.ToLower(string(alg)), is.serial.Add(1)), Alg: alg, private: priv}
}

// AddKey makes a key and publishes it beside the others.
func (is *Issuer) AddKey(t testing.TB, alg jose.SignatureAlgorithm) *Key {
	t.Helper()
	k := is.NewKey(t, alg)
	is.mu.Lock()
	is.published = append(is.published, k)
	is.mu.Unlock()
	return k
}

// Publish replaces the published keys (a rotation retires a key by
// leaving it out).
func (is *Issuer) Publish(keys ...*Key) {
	is.mu.Lock()
	defer is.mu.Unlock()
	is.published = append([]*Key(nil), keys...)
}

// JWKS is the published key set.
func (is *Issuer) JWKS() jose.JSONWebKeySet {
	is.mu.Lock()
	defer is.mu.Unlock()
	var s jose.JSONWebKeySet
	for _, k := range is.published {
		s.Keys = append(s.Keys, jose.JSONWebKey{Key: k.private.Public(), KeyID: k.ID, Algorithm: string(k.Alg), Use: "sig"})
	}
	if s.Keys == nil {
		s.Keys = []jose.JSONWebKey{}
	}
	return s
}

// SetDown makes the issuer answer 503 to everything (true) or serve again.
func (is *Issuer) SetDown(down bool) { is.down.Store(down) }

// SetKeysDown makes only the key set answer 503 (true) or serve again.
func (is *Issuer) SetKeysDown(down bool) { is.keysDown.Store(down) }

// KeyHits and DiscoveryHits count the requests for the key set and the
// discovery document.
func (is *Issuer) KeyHits() int64       { return is.keyHits.Load() }
func (is *Issuer) DiscoveryHits() int64 { return is.discHits.Load() }

// Claims are the claims Token puts in every token, before the test's own:
// iss, aud DefaultAudience, sub, iat and nbf now, exp in an hour.
func (is *Issuer) Claims() map[string]any {
	now := is.now().Unix()
	return map[string]any{"iss": is.URL, "aud": DefaultAudience, "sub": "agent", "iat": now, "nbf": now, "exp": now + 3600}
}

// Token signs Claims() overlaid with claims (a nil value removes a claim)
// with k.
func (is *Issuer) Token(t testing.TB, k *Key, claims map[string]any) string {
	t.Helper()
	c := is.Claims()
	for name, v := range claims {
		if v == nil {
			delete(c, name)
			continue
		}
		c[name] = v
	}
	return Sign(t, k, c)
}

// Sign signs claims exactly as given with k, its kid in the header.
func Sign(t testing.TB, k *Key, claims map[string]any) string {
	t.Helper()
	return SignWith(t, jose.SigningKey{Algorithm: k.Alg, Key: jose.JSONWebKey{Key: k.private, KeyID: k.ID}}, claims)
}

// SignWith signs claims with any go-jose signing key (an HS256 forgery, say).
func SignWith(t testing.TB, sk jose.SigningKey, claims map[string]any) string {
	t.Helper()
	payload, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	s, err := jose.NewSigner(sk, (&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		t.Fatal(err)
	}
	jws, err := s.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := jws.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// Unsigned is a token with header and claims as given and an empty
// signature (alg "none" when header is nil).
func Unsigned(t testing.TB, header, claims map[string]any) string {
	t.Helper()
	if header == nil {
		header = map[string]any{"alg": "none", "typ": "JWT"}
	}
	h, err := json.Marshal(header)
	if err != nil {
		t.Fatal(err)
	}
	c, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(h) + "." + base64.RawURLEncoding.EncodeToString(c) + "."
}

// PublicPEM is k's public key as PEM, the bytes a key-confusion forgery
// uses as an HMAC secret.
func (k *Key) PublicPEM(t testing.TB) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(k.private.Public())
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}
