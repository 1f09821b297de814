package identity_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/custos-dev/custos/config"
	"github.com/custos-dev/custos/filters/identity"
	"github.com/custos-dev/custos/filters/identity/identitytest"
)

// clock is a test clock the verifier and the issuers share.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *clock { return &clock{now: time.Now().Truncate(time.Second)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// newVerifier builds an OIDC verifier of issuers, as config would give
// them (defaults applied by config.Parse), on clock c.
func newVerifier(t testing.TB, c *clock, o identity.Options, issuers ...config.Issuer) *identity.OIDC {
	t.Helper()
	for i := range issuers {
		if issuers[i].ClockSkew == 0 {
			issuers[i].ClockSkew = config.DefaultClockSkew
		}
	}
	o.Now = c.Now
	v, err := identity.NewOIDC(config.Identity{Issuers: issuers}, o)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// checkOf verifies tok and returns the check that failed ("" when the
// token verified); a stage error fails the test.
func checkOf(t testing.TB, v identity.Verifier, tok string) string {
	t.Helper()
	_, err := v.Verify(context.Background(), identity.Credentials{Bearer: tok})
	if err == nil {
		return ""
	}
	var ie *identity.Error
	if !errors.As(err, &ie) {
		t.Fatalf("a plain error, want an *identity.Error: %v", err)
	}
	for _, part := range strings.Split(tok, ".") {
		if len(part) >= 16 && strings.Contains(err.Error(), part) {
			t.Fatalf("the error holds part of the token: %v", err)
		}
	}
	return ie.Check
}

func mustVerify(t testing.TB, v identity.Verifier, tok string) identity.Principal {
	t.Helper()
	p, err := v.Verify(context.Background(), identity.Credentials{Bearer: tok})
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	return p
}

// twoIssuers are two independent issuers on loopback: A (RSA and EC keys,
// default algorithms, two audiences) and B (EC only, ES256 only).
type twoIssuers struct {
	clock      *clock
	a, b       *identitytest.Issuer
	aRSA, aEC  *identitytest.Key
	bEC        *identitytest.Key
	v          *identity.OIDC
	cfgA, cfgB config.Issuer
}

func newTwoIssuers(t *testing.T) *twoIssuers {
	t.Helper()
	f := &twoIssuers{clock: newClock()}
	f.a = identitytest.New(t, "/a", identitytest.WithClock(f.clock.Now))
	f.b = identitytest.New(t, "/b", identitytest.WithClock(f.clock.Now))
	f.aRSA, f.aEC = f.a.AddKey(t, jose.RS256), f.a.AddKey(t, jose.ES256)
	f.bEC = f.b.AddKey(t, jose.ES256)
	f.cfgA = config.Issuer{Issuer: f.a.URL, Audiences: []string{identitytest.DefaultAudience, "api://other"}}
	f.cfgB = config.Issuer{Issuer: f.b.URL, Audiences: []string{"api://b"}, Algorithms: []string{"ES256"}}
	f.v = newVerifier(t, f.clock, identity.Options{}, f.cfgA, f.cfgB)
	return f
}

func TestTokensOfTwoIssuersVerify(t *testing.T) {
	f := newTwoIssuers(t)
	for _, tc := range []struct {
		name string
		tok  string
		iss  string
	}{
		{"A RS256", f.a.Token(t, f.aRSA, map[string]any{"sub": "etl"}), f.a.URL},
		{"A ES256", f.a.Token(t, f.aEC, map[string]any{"sub": "etl"}), f.a.URL},
		{"A second audience in a list", f.a.Token(t, f.aRSA, map[string]any{"sub": "etl", "aud": []string{"x", "api://other"}}), f.a.URL},
		{"B ES256", f.b.Token(t, f.bEC, map[string]any{"sub": "etl", "aud": "api://b"}), f.b.URL},
		{"exp past within the skew", f.a.Token(t, f.aRSA, map[string]any{"sub": "etl", "exp": f.clock.Now().Add(-30 * time.Second).Unix()}), f.a.URL},
		{"nbf ahead within the skew", f.a.Token(t, f.aRSA, map[string]any{"sub": "etl", "nbf": f.clock.Now().Add(30 * time.Second).Unix()}), f.a.URL},
		{"no nbf, no iat", f.a.Token(t, f.aRSA, map[string]any{"sub": "etl", "nbf": nil, "iat": nil}), f.a.URL},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := mustVerify(t, f.v, tc.tok)
			if p.Issuer != tc.iss || p.Subject != "etl" || p.Kind != identity.KindWorkload || p.ID() != tc.iss+"/etl" {
				t.Fatalf("principal %+v", p)
			}
		})
	}
	if n := f.a.DiscoveryHits(); n != 1 {
		t.Fatalf("issuer A discovered %d times, want once", n)
	}
}

// TestForgeriesAndFailuresAreRefused is the list: each token is
// refused with 401 and the check that failed.
func TestForgeriesAndFailuresAreRefused(t *testing.T) {
	f := newTwoIssuers(t)
	c := identitytest.New(t, "/c") // a real issuer nobody configured
	kc := c.AddKey(t, jose.RS256)
	now := f.clock.Now()
	valid := f.a.Token(t, f.aRSA, nil)
	mustVerify(t, f.v, valid)
	mustVerify(t, f.v, f.b.Token(t, f.bEC, map[string]any{"aud": "api://b"}))
	parts := strings.Split(valid, ".")

	// Payload altered after signing: the claims say admin, the signature
	// is the original's.
	altered := f.a.Claims()
	altered["sub"] = "admin"
	forgedPayload := strings.Split(identitytest.Unsigned(t, map[string]any{"alg": "RS256"}, altered), ".")[1]
	// Signature altered: one character in the middle changed.
	sig := []byte(parts[2])
	if sig[len(sig)/2] == 'A' {
		sig[len(sig)/2] = 'B'
	} else {
		sig[len(sig)/2] = 'A'
	}
	unpublished := f.a.NewKey(t, jose.RS256)
	big := strings.Repeat("a", identity.MaxTokenSize+1)

	for _, tc := range []struct {
		name, tok, check string
	}{
		{"no token", "", identity.CheckMissing},
		{"alg none", identitytest.Unsigned(t, nil, f.a.Claims()), identity.CheckAlgorithm},
		{"alg none with a kid", identitytest.Unsigned(t, map[string]any{"alg": "none", "kid": f.aRSA.ID}, f.a.Claims()), identity.CheckAlgorithm},
		{"HS256 signed with the RSA public key (key confusion)", identitytest.SignWith(t,
			jose.SigningKey{Algorithm: jose.HS256, Key: jose.JSONWebKey{Key: f.aRSA.PublicPEM(t), KeyID: f.aRSA.ID}}, f.a.Claims()), identity.CheckAlgorithm},
		{"RS256 for an issuer that allows only ES256", identitytest.Sign(t, f.aRSA, map[string]any{"iss": f.b.URL, "aud": "api://b", "exp": now.Add(time.Hour).Unix()}), identity.CheckAlgorithm},
		{"expired", f.a.Token(t, f.aRSA, map[string]any{"iat": now.Add(-2 * time.Hour).Unix(), "nbf": now.Add(-2 * time.Hour).Unix(), "exp": now.Add(-61 * time.Second).Unix()}), identity.CheckExpired},
		{"not yet valid (nbf)", f.a.Token(t, f.aRSA, map[string]any{"nbf": now.Add(5 * time.Minute).Unix()}), identity.CheckNotYetValid},
		{"issued in the future (iat)", f.a.Token(t, f.aRSA, map[string]any{"iat": now.Add(5 * time.Minute).Unix()}), identity.CheckNotYetValid},
		{"wrong issuer (no exact match)", f.a.Token(t, f.aRSA, map[string]any{"iss": strings.TrimSuffix(f.a.URL, "/")}), identity.CheckIssuer},
		{"issuer not configured", c.Token(t, kc, nil), identity.CheckIssuer},
		{"no iss", f.a.Token(t, f.aRSA, map[string]any{"iss": nil}), identity.CheckIssuer},
		{"wrong audience", f.a.Token(t, f.aRSA, map[string]any{"aud": "api://someone-else"}), identity.CheckAudience},
		{"audience of the other issuer", f.a.Token(t, f.aRSA, map[string]any{"aud": "api://b"}), identity.CheckAudience},
		{"no audience", f.a.Token(t, f.aRSA, map[string]any{"aud": nil}), identity.CheckAudience},
		{"unknown kid", f.a.Token(t, unpublished, nil), identity.CheckSignature},
		{"payload altered after signing", parts[0] + "." + forgedPayload + "." + parts[2], identity.CheckSignature},
		{"signature altered", parts[0] + "." + parts[1] + "." + string(sig), identity.CheckSignature},
		{"signature cut off", parts[0] + "." + parts[1] + ".", identity.CheckSignature},
		{"a valid token of A presented with B's iss", identitytest.Sign(t, f.aEC, map[string]any{"iss": f.b.URL, "aud": "api://b", "exp": now.Add(time.Hour).Unix()}), identity.CheckSignature},
		{"broken base64 in the claims", parts[0] + "." + parts[1][:10] + "!" + parts[1][11:] + "." + parts[2], identity.CheckMalformed},
		{"broken base64 in the header", "*" + valid[1:], identity.CheckMalformed},
		{"padded base64", parts[0] + "=." + parts[1] + "." + parts[2], identity.CheckMalformed},
		{"two parts", parts[0] + "." + parts[1], identity.CheckMalformed},
		{"four parts", valid + ".x", identity.CheckMalformed},
		{"an encrypted token (JWE)", "a.b.c.d.e", identity.CheckMalformed},
		{"not a JWT", "opaque-access-token", identity.CheckMalformed},
		{"header not JSON", "bm90IGpzb24." + parts[1] + "." + parts[2], identity.CheckMalformed},
		{"claims a JSON array", parts[0] + ".WzFd." + parts[2], identity.CheckMalformed},
		{"iss not a string", identitytest.Sign(t, f.aRSA, map[string]any{"iss": 7}), identity.CheckMalformed},
		{"no exp", f.a.Token(t, f.aRSA, map[string]any{"exp": nil}), identity.CheckMalformed},
		{"exp not a number", f.a.Token(t, f.aRSA, map[string]any{"exp": "tomorrow"}), identity.CheckMalformed},
		{"larger than the limit", big, identity.CheckMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Each case may refetch A's keys: let the rate limit allow it.
			f.clock.Advance(11 * time.Second)
			if got := checkOf(t, f.v, tc.tok); got != tc.check {
				t.Fatalf("check %q, want %q", got, tc.check)
			}
		})
	}
	// The valid tokens still verify.
	mustVerify(t, f.v, f.a.Token(t, f.aRSA, nil))
}

func TestUnknownKidRefetchesOnceAndIsRateLimited(t *testing.T) {
	f := newTwoIssuers(t)
	mustVerify(t, f.v, f.a.Token(t, f.aRSA, nil))
	if n := f.a.KeyHits(); n != 1 {
		t.Fatalf("%d key set requests, want 1", n)
	}
	f.clock.Advance(11 * time.Second)
	if got := checkOf(t, f.v, f.a.Token(t, f.a.NewKey(t, jose.ES256), nil)); got != identity.CheckSignature {
		t.Fatalf("unknown kid: check %q", got)
	}
	if n := f.a.KeyHits(); n != 2 {
		t.Fatalf("%d key set requests after an unknown kid, want 2 (one refetch)", n)
	}
	// A flood of unknown kids (and of bad signatures, which make go-oidc
	// refetch too) within the interval reaches the issuer no more.
	stranger := f.a.NewKey(t, jose.ES256)
	for i := range 50 {
		tok := f.a.Token(t, stranger, map[string]any{"jti": fmt.Sprint(i)})
		if got := checkOf(t, f.v, tok); got != identity.CheckSignature {
			t.Fatalf("check %q", got)
		}
	}
	if n := f.a.KeyHits(); n != 2 {
		t.Fatalf("%d key set requests after a flood, want still 2", n)
	}
	f.clock.Advance(identity.DefaultRefetchInterval)
	checkOf(t, f.v, f.a.Token(t, stranger, nil))
	if n := f.a.KeyHits(); n != 3 {
		t.Fatalf("%d key set requests once the interval passed, want 3", n)
	}
	if n := f.b.KeyHits(); n != 0 {
		t.Fatalf("issuer B was asked %d times for A's tokens", n)
	}
}

func TestKeyRotation(t *testing.T) {
	f := newTwoIssuers(t)
	old := f.aRSA
	t1 := f.a.Token(t, old, map[string]any{"jti": "t1"})
	mustVerify(t, f.v, t1)

	// The issuer publishes a new key beside the old one and signs with it.
	f.clock.Advance(time.Minute)
	next := f.a.AddKey(t, jose.RS256)
	t2 := f.a.Token(t, next, map[string]any{"jti": "t2"})
	mustVerify(t, f.v, t2)
	mustVerify(t, f.v, t1)
	mustVerify(t, f.v, f.a.Token(t, old, map[string]any{"jti": "t1b"}))

	// The old key leaves the key set: once Custos refreshes its keys,
	// tokens of the old key no longer verify, even one it had cached.
	f.a.Publish(next, f.aEC)
	f.clock.Advance(identity.DefaultKeyRefresh)
	mustVerify(t, f.v, t2)
	if got := checkOf(t, f.v, t1); got != identity.CheckSignature {
		t.Fatalf("a cached token of a withdrawn key: check %q", got)
	}
	if got := checkOf(t, f.v, f.a.Token(t, old, map[string]any{"jti": "t1c"})); got != identity.CheckSignature {
		t.Fatalf("a new token of a withdrawn key: check %q", got)
	}
	mustVerify(t, f.v, f.a.Token(t, next, map[string]any{"jti": "t3"}))
}

func TestIssuerDown(t *testing.T) {
	t.Run("warm: verified tokens and known keys still verify", func(t *testing.T) {
		f := newTwoIssuers(t)
		t1 := f.a.Token(t, f.aRSA, nil)
		mustVerify(t, f.v, t1)
		f.a.SetDown(true)
		f.clock.Advance(identity.DefaultKeyRefresh) // a refresh is due, and fails
		mustVerify(t, f.v, t1)
		mustVerify(t, f.v, f.a.Token(t, f.aRSA, map[string]any{"jti": "new"}))
		// A kid it does not know cannot be looked up; the keys it knows do
		// not verify the token: refused.
		if got := checkOf(t, f.v, f.a.Token(t, f.a.NewKey(t, jose.RS256), nil)); got != identity.CheckSignature {
			t.Fatalf("check %q", got)
		}
	})
	t.Run("cold: the stage cannot decide", func(t *testing.T) {
		f := newTwoIssuers(t)
		f.a.SetDown(true)
		tok := f.a.Token(t, f.aRSA, nil)
		_, err := f.v.Verify(context.Background(), identity.Credentials{Bearer: tok})
		if err == nil || identity.IsUnauthenticated(err) {
			t.Fatalf("issuer down, no keys known: %v, want a plain error (503)", err)
		}
		if strings.Contains(err.Error(), strings.Split(tok, ".")[2]) {
			t.Fatal("the error holds the token")
		}
		// Discovery is not retried within the interval.
		hits := f.a.DiscoveryHits()
		_, _ = f.v.Verify(context.Background(), identity.Credentials{Bearer: tok})
		if f.a.DiscoveryHits() != hits {
			t.Fatal("discovery retried within the interval")
		}
		f.a.SetDown(false)
		f.clock.Advance(identity.DefaultRefetchInterval)
		mustVerify(t, f.v, tok)
	})
	t.Run("cold: discovered, but the key set cannot be fetched", func(t *testing.T) {
		f := newTwoIssuers(t)
		f.a.SetKeysDown(true)
		tok := f.a.Token(t, f.aRSA, nil)
		_, err := f.v.Verify(context.Background(), identity.Credentials{Bearer: tok})
		if err == nil || identity.IsUnauthenticated(err) {
			t.Fatalf("key set unreachable, no keys known: %v, want a plain error (503)", err)
		}
		f.a.SetKeysDown(false)
		f.clock.Advance(identity.DefaultRefetchInterval)
		mustVerify(t, f.v, tok)
	})
}

func TestDiscovery(t *testing.T) {
	c := newClock()
	t.Run("the document of another issuer is refused", func(t *testing.T) {
		is := identitytest.New(t, "/x", identitytest.WithIssuer("https://login.example/other/"))
		k := is.AddKey(t, jose.RS256)
		v := newVerifier(t, c, identity.Options{}, config.Issuer{Issuer: "https://login.example/tenant/",
			DiscoveryURL: is.DiscoveryURL, Audiences: []string{identitytest.DefaultAudience}})
		tok := identitytest.Sign(t, k, map[string]any{"iss": "https://login.example/tenant/", "aud": identitytest.DefaultAudience, "exp": c.Now().Add(time.Hour).Unix()})
		_, err := v.Verify(context.Background(), identity.Credentials{Bearer: tok})
		if err == nil || identity.IsUnauthenticated(err) || !strings.Contains(err.Error(), "not https://login.example/tenant/") {
			t.Fatalf("%v", err)
		}
	})
	t.Run("an issuer whose own URL has no discovery document", func(t *testing.T) {
		is := identitytest.New(t, "/y")
		k := is.AddKey(t, jose.RS256)
		v := newVerifier(t, c, identity.Options{}, config.Issuer{Issuer: is.URL + "elsewhere/", Audiences: []string{identitytest.DefaultAudience}})
		tok := identitytest.Sign(t, k, map[string]any{"iss": is.URL + "elsewhere/", "aud": identitytest.DefaultAudience, "exp": c.Now().Add(time.Hour).Unix()})
		if _, err := v.Verify(context.Background(), identity.Credentials{Bearer: tok}); err == nil || identity.IsUnauthenticated(err) {
			t.Fatalf("%v", err)
		}
	})
}

func TestCacheNeverOutlivesExp(t *testing.T) {
	c := newClock()
	is := identitytest.New(t, "/z", identitytest.WithClock(c.Now))
	k := is.AddKey(t, jose.ES256)
	v := newVerifier(t, c, identity.Options{}, config.Issuer{Issuer: is.URL, Audiences: []string{identitytest.DefaultAudience}, ClockSkew: time.Nanosecond})
	tok := is.Token(t, k, map[string]any{"exp": c.Now().Add(10 * time.Second).Unix()})
	mustVerify(t, v, tok)
	mustVerify(t, v, tok)
	c.Advance(10*time.Second + time.Nanosecond) // exp, plus the skew
	if got := checkOf(t, v, tok); got != identity.CheckExpired {
		t.Fatalf("check %q at exp", got)
	}
}

func TestNewOIDCRefusesWhatConfigWould(t *testing.T) {
	for _, ids := range [][]config.Issuer{
		nil,
		{{Issuer: "https://a.example/"}},
		{{Issuer: "https://a.example/", Audiences: []string{"x"}, Algorithms: []string{"HS256"}}},
		{{Issuer: "https://a.example/", Audiences: []string{"x"}}, {Issuer: "https://a.example/", Audiences: []string{"y"}}},
	} {
		if _, err := identity.NewOIDC(config.Identity{Issuers: ids}, identity.Options{}); err == nil {
			t.Errorf("%+v accepted", ids)
		}
	}
}
