package identity

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/custos-dev/custos/config"
	"github.com/custos-dev/custos/filters/identity/identitytest"
)

var fuzzIssuer struct {
	once sync.Once
	is   *identitytest.Issuer
	key  *identitytest.Key
	v    *OIDC
}

// FuzzPeek feeds the parser that reads a token before it is verified (and
// the verifier behind it) with mutations of real and forged tokens: it
// never panics, a token it refuses is malformed, and no answer is a plain
// error or quotes the token.
//
//	go test -run '^$' -fuzz FuzzPeek ./filters/identity/
func FuzzPeek(f *testing.F) {
	fuzzIssuer.once.Do(func() {
		fuzzIssuer.is = identitytest.New(f, "/fuzz")
		fuzzIssuer.key = fuzzIssuer.is.AddKey(f, jose.ES256)
		var err error
		fuzzIssuer.v, err = NewOIDC(config.Identity{Issuers: []config.Issuer{{Issuer: fuzzIssuer.is.URL,
			Audiences: []string{identitytest.DefaultAudience}, ClockSkew: config.DefaultClockSkew}}}, Options{})
		if err != nil {
			f.Fatal(err)
		}
	})
	is, k := fuzzIssuer.is, fuzzIssuer.key
	valid := is.Token(f, k, nil)
	for _, seed := range []string{
		valid,
		identitytest.Unsigned(f, nil, is.Claims()),
		identitytest.SignWith(f, jose.SigningKey{Algorithm: jose.HS256, Key: []byte("0123456789abcdef0123456789abcdef")}, is.Claims()),
		is.Token(f, k, map[string]any{"iss": []string{"a"}, "act": map[string]any{"sub": "x"}}),
		"a.b.c", "..", "a.b.c.d.e", "e30.e30.", "eyJhbGciOiJSUzI1NiJ9.e30.", strings.Repeat(".", 5), "",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, tok string) {
		u, err := peek(tok)
		if err != nil {
			var ie *Error
			if !errors.As(err, &ie) || ie.Check != CheckMalformed {
				t.Fatalf("peek: %v", err)
			}
		} else if u.alg == "" {
			t.Fatal("peek accepted a token without alg")
		}
		_, err = fuzzIssuer.v.Verify(context.Background(), Credentials{Bearer: tok})
		if err == nil {
			return
		}
		if !IsUnauthenticated(err) {
			t.Fatalf("a plain error for a token of a reachable issuer: %v", err)
		}
		if len(tok) >= 24 && strings.Contains(err.Error(), tok) {
			t.Fatalf("the error quotes the token: %v", err)
		}
	})
}
