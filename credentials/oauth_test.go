package credentials_test

import (
	"encoding/base64"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/custos-dev/custos/credentials"
	"github.com/custos-dev/custos/devissuer"
)

// clock is a settable clock shared by the dev issuer and the injector, so
// that a test moves both through a token's lifetime at once.
type clock struct{ off atomic.Int64 }

func (c *clock) now() time.Time          { return time.Now().Add(time.Duration(c.off.Load())) }
func (c *clock) advance(d time.Duration) { c.off.Add(int64(d)) }

// tokenEndpoint is the dev issuer (the real client_credentials grant) on
// loopback, with a count of token requests, a gate that holds them, and
// an outage switch.
type tokenEndpoint struct {
	is       *devissuer.Issuer
	srv      *httptest.Server
	requests atomic.Int64
	down     atomic.Bool
	gate     atomic.Pointer[chan struct{}] // when set, token requests wait for it to close
}

func startTokenEndpoint(t *testing.T, c *clock) *tokenEndpoint {
	t.Helper()
	te := &tokenEndpoint{}
	mux := http.NewServeMux()
	te.srv = httptest.NewServer(mux)
	t.Cleanup(te.srv.Close)
	is, err := devissuer.New(devissuer.Options{URL: te.srv.URL + "/oidc", Now: c.now, Audience: "https://storage.azure.com/"})
	if err != nil {
		t.Fatal(err)
	}
	te.is = is
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/oidc"+devissuer.TokenPath {
			te.requests.Add(1)
			if g := te.gate.Load(); g != nil {
				<-*g
			}
			if te.down.Load() {
				// An endpoint that echoes what it was sent: the injector
				// must not pass the secret on into its errors.
				_ = r.ParseForm()
				w.Header().Set("content-type", "application/json")
				w.WriteHeader(http.StatusServiceUnavailable)
				json.NewEncoder(w).Encode(map[string]string{"error": "temporarily_unavailable",
					"error_description": "try later; you sent " + r.PostForm.Get("client_secret")})
				return
			}
		}
		is.ServeHTTP(w, r)
	})
	return te
}

func (te *tokenEndpoint) hold() (release func()) {
	ch := make(chan struct{})
	te.gate.Store(&ch)
	return func() { te.gate.Store(nil); close(ch) }
}

func oauthInjector(t *testing.T, te *tokenEndpoint, c *clock, log *slog.Logger) credentials.Injector {
	t.Helper()
	return mustNew(t, credentials.Spec{OAuthClientCredentials: &credentials.OAuthClientCredentials{
		TokenURL:         te.srv.URL + "/oidc" + devissuer.TokenPath,
		ClientID:         "custos",
		ClientSecretFile: writeFile(t, "client.secret", te.is.Secret()+"\n"),
		Scope:            "https://storage.azure.com/.default",
	}}, credentials.Options{Now: c.now, Logger: log, RetryAfter: time.Minute})
}

func authz(t *testing.T, inj credentials.Injector) (string, error) {
	t.Helper()
	m, err := inj.Inject(t.Context(), credentials.Outgoing{Method: "GET", Scheme: "https", Host: "acct.blob.core.windows.net", Path: "/c", Headers: map[string]string{}})
	if err != nil {
		return "", err
	}
	v, ok := header(m, "authorization")
	if !ok || !strings.HasPrefix(v, "Bearer ") {
		t.Fatalf("no bearer token set: %v", m)
	}
	return v, nil
}

// claims decodes a JWT's payload (the dev issuer signed it; here only the
// subject and audience matter).
func claims(t *testing.T, authorization string) map[string]any {
	t.Helper()
	parts := strings.Split(strings.TrimPrefix(authorization, "Bearer "), ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT")
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var c map[string]any
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatal(err)
	}
	return c
}

// TestOAuthTokenLifecycle: one fetch for many requests; from the refresh
// point one background fetch, while every request is served the cached
// token without waiting; a failed refresh keeps the cached token and is
// retried RetryAfter later; once the token has expired and the endpoint
// is down, requests fail closed with an error that holds no secret.
func TestOAuthTokenLifecycle(t *testing.T) {
	c := &clock{}
	te := startTokenEndpoint(t, c)
	var (
		mu     sync.Mutex
		tokens []string
	)
	log, logged := newSecretLog(t, func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string{te.is.Secret()}, tokens...)
	})
	inj := oauthInjector(t, te, c, log)
	// failuresRecorded waits until the injector has recorded n failed
	// refreshes (it logs each once its retry time is set): the clock
	// moves on only after that, or the retry would be timed from the
	// moved clock.
	failuresRecorded := func(n int) {
		t.Helper()
		waitFor(t, func() bool { return strings.Count(logged.String(), "upstream token refresh failed") == n })
	}
	seen := func(tok string) {
		mu.Lock()
		tokens = append(tokens, strings.TrimPrefix(tok, "Bearer "))
		mu.Unlock()
	}

	// Cold start: concurrent first requests share one fetch.
	var wg sync.WaitGroup
	first := make([]string, 32)
	for i := range first {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v, err := authz(t, inj)
			if err != nil {
				t.Error(err)
			}
			first[i] = v
		}()
	}
	wg.Wait()
	if n := te.requests.Load(); n != 1 {
		t.Fatalf("%d token requests for the first 32 concurrent requests, want 1", n)
	}
	tok1 := first[0]
	seen(tok1)
	for _, v := range first {
		if v != tok1 {
			t.Fatal("concurrent first requests got different tokens")
		}
	}
	if cl := claims(t, tok1); cl["sub"] != "custos" || cl["aud"] != "https://storage.azure.com/" {
		t.Errorf("token claims %v", cl)
	}
	for range 1000 {
		if v, err := authz(t, inj); err != nil || v != tok1 {
			t.Fatalf("cache hit: %v", err)
		}
	}
	if n := te.requests.Load(); n != 1 {
		t.Fatalf("%d token requests, want 1 (cached)", n)
	}

	// Into the refresh window (the dev issuer's tokens live 1h; the
	// refresh starts 5m before expiry). The endpoint is held: requests
	// under concurrent load must all be served the cached token meanwhile.
	c.advance(56 * time.Minute)
	release := te.hold()
	var failed atomic.Int64
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 500 {
				v, err := authz(t, inj)
				if err != nil || v != tok1 {
					failed.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	if failed.Load() != 0 {
		t.Fatalf("%d requests failed or were not served the cached token during the refresh", failed.Load())
	}
	waitFor(t, func() bool { return te.requests.Load() >= 2 })
	if n := te.requests.Load(); n != 2 {
		t.Fatalf("%d token requests during the refresh, want 2 (single flight)", n)
	}
	release()
	tok2 := waitForNewToken(t, inj, tok1)
	seen(tok2)
	if n := te.requests.Load(); n != 2 {
		t.Fatalf("%d token requests after the refresh, want 2", n)
	}

	// A failed refresh: the cached token stays in use, one attempt per
	// RetryAfter (1m), then the endpoint recovers.
	c.advance(56 * time.Minute)
	te.down.Store(true)
	for range 200 {
		if v, err := authz(t, inj); err != nil || v != tok2 {
			t.Fatalf("during an outage with a valid token: %v", err)
		}
	}
	waitFor(t, func() bool { return te.requests.Load() == 3 })
	failuresRecorded(1)
	for range 200 {
		if _, err := authz(t, inj); err != nil {
			t.Fatal(err)
		}
	}
	if n := te.requests.Load(); n != 3 {
		t.Fatalf("%d token requests before RetryAfter, want 3", n)
	}
	c.advance(time.Minute)
	if _, err := authz(t, inj); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return te.requests.Load() == 4 })
	failuresRecorded(2)
	te.down.Store(false)
	c.advance(time.Minute)
	tok3 := waitForNewToken(t, inj, tok2)
	seen(tok3)

	// Expired with the endpoint down: fail closed, no secret in the error.
	te.down.Store(true)
	c.advance(2 * time.Hour)
	_, err := authz(t, inj)
	if err == nil {
		t.Fatal("a request was served with no valid token")
	}
	if !strings.Contains(err.Error(), "503") {
		t.Errorf("error %q does not say what the endpoint answered", err)
	}
	assertNoSecret(t, "error", err.Error(), te.is.Secret())
}

// waitForNewToken polls Inject until it presents a token other than old.
func waitForNewToken(t *testing.T, inj credentials.Injector, old string) string {
	t.Helper()
	var v string
	waitFor(t, func() bool {
		var err error
		v, err = authz(t, inj)
		if err != nil {
			t.Fatal(err)
		}
		return v != old
	})
	return v
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestOAuthWrongSecret: the endpoint refuses the client; the error says
// so without the secret.
func TestOAuthWrongSecret(t *testing.T) {
	c := &clock{}
	te := startTokenEndpoint(t, c)
	const wrong = "wrong-secret-value-0123456789"
	inj := mustNew(t, credentials.Spec{OAuthClientCredentials: &credentials.OAuthClientCredentials{
		TokenURL: te.srv.URL + "/oidc" + devissuer.TokenPath, ClientID: "custos",
		ClientSecretFile: writeFile(t, "s", wrong), Scope: "https://storage.azure.com/.default",
	}}, credentials.Options{Logger: newLog(t, func() []string { return []string{wrong} })})
	_, err := authz(t, inj)
	if err == nil || !strings.Contains(err.Error(), "invalid_client") {
		t.Fatalf("wrong secret: %v", err)
	}
	assertNoSecret(t, "error", err.Error(), wrong)
}
