package devissuer_test

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/custos-dev/custos/config"
	"github.com/custos-dev/custos/devissuer"
	"github.com/custos-dev/custos/filters/identity"
	"github.com/custos-dev/custos/filters/identity/identitytest"
)

// start runs an issuer mounted at devissuer.Path on a loopback server, as
// the control plane mounts it.
func start(t *testing.T, dir string) (*devissuer.Issuer, *httptest.Server) {
	t.Helper()
	mux := http.NewServeMux()
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	is, err := devissuer.New(devissuer.Options{URL: srv.URL + devissuer.Path, Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	mux.Handle(devissuer.Path+"/", is)
	return is, srv
}

// verifier is Custos' identity stage trusting is, with no token cache so
// every Verify goes through the key set.
func verifier(t *testing.T, is *devissuer.Issuer) *identity.OIDC {
	t.Helper()
	v, err := identity.NewOIDC(config.Identity{Issuers: []config.Issuer{{Issuer: is.URL(), Audiences: []string{is.Audience()},
		ClockSkew: config.DefaultClockSkew}}}, identity.Options{CacheSize: -1, RefetchInterval: time.Millisecond, KeyRefresh: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func postForm(t *testing.T, u string, form url.Values, basic ...string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest("POST", u, strings.NewReader(form.Encode()))
	req.Header.Set("content-type", "application/x-www-form-urlencoded")
	if len(basic) == 2 {
		req.SetBasicAuth(url.QueryEscape(basic[0]), url.QueryEscape(basic[1]))
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
		t.Fatalf("%s: not JSON: %v", u, err)
	}
	if resp.Header.Get("cache-control") != "no-store" {
		t.Errorf("token endpoint answers without cache-control: no-store")
	}
	return resp.StatusCode, m
}

func TestClientCredentialsTokenVerifiesThroughDiscovery(t *testing.T) {
	is, _ := start(t, "")
	v := verifier(t, is)
	for _, basic := range []bool{false, true} {
		form := url.Values{"grant_type": {"client_credentials"}, "groups": {"etl-readers,payments"}, "roles": {"Pipeline.Read"}, "ttl": {"10m"}}
		var status int
		var m map[string]any
		if basic {
			status, m = postForm(t, is.URL()+devissuer.TokenPath, form, "nightly-etl", is.Secret())
		} else {
			form.Set("client_id", "nightly-etl")
			form.Set("client_secret", is.Secret())
			status, m = postForm(t, is.URL()+devissuer.TokenPath, form)
		}
		if status != 200 || m["token_type"] != "Bearer" || m["expires_in"] != float64(600) {
			t.Fatalf("basic=%v: %d %v", basic, status, m["error"])
		}
		p, err := v.Verify(context.Background(), identity.Credentials{Bearer: m["access_token"].(string)})
		if err != nil {
			t.Fatalf("Custos refuses the dev issuer's token: %v", err)
		}
		if p.Issuer != is.URL() || p.Subject != "nightly-etl" || p.Kind != identity.KindWorkload ||
			!reflect.DeepEqual(p.Groups, []string{"etl-readers", "payments"}) || !reflect.DeepEqual(p.Roles, []string{"Pipeline.Read"}) {
			t.Fatalf("principal %+v", p)
		}
	}
}

func TestTokenEndpointRefusals(t *testing.T) {
	is, _ := start(t, "")
	u := is.URL() + devissuer.TokenPath
	for name, tc := range map[string]struct {
		form   url.Values
		status int
		code   string
	}{
		"wrong secret":  {url.Values{"grant_type": {"client_credentials"}, "client_id": {"a"}, "client_secret": {"nope"}}, 401, "invalid_client"},
		"no client":     {url.Values{"grant_type": {"client_credentials"}, "client_secret": {is.Secret()}}, 401, "invalid_client"},
		"no grant":      {url.Values{"client_id": {"a"}}, 400, "invalid_request"},
		"other grant":   {url.Values{"grant_type": {"password"}}, 400, "unsupported_grant_type"},
		"bad ttl":       {url.Values{"grant_type": {"client_credentials"}, "client_id": {"a"}, "client_secret": {is.Secret()}, "ttl": {"forever"}}, 400, "invalid_request"},
		"ttl too long":  {url.Values{"grant_type": {"client_credentials"}, "client_id": {"a"}, "client_secret": {is.Secret()}, "ttl": {"48h"}}, 400, "invalid_request"},
		"markup name":   {url.Values{"grant_type": {"client_credentials"}, "client_id": {"<b>"}, "client_secret": {is.Secret()}}, 400, "invalid_request"},
		"markup group":  {url.Values{"grant_type": {"client_credentials"}, "client_id": {"a"}, "client_secret": {is.Secret()}, "groups": {"x,<y>"}}, 400, "invalid_request"},
		"repeated":      {url.Values{"grant_type": {"client_credentials", "client_credentials"}}, 400, "invalid_request"},
		"unknown code":  {url.Values{"grant_type": {"authorization_code"}, "code": {"nope"}}, 400, "invalid_grant"},
		"secret leaked": {url.Values{"grant_type": {"client_credentials"}, "client_id": {"a"}, "client_secret": {is.Secret() + "x"}}, 401, "invalid_client"},
	} {
		status, m := postForm(t, u, tc.form)
		if status != tc.status || m["error"] != tc.code {
			t.Errorf("%s: %d %v, want %d %s", name, status, m["error"], tc.status, tc.code)
		}
		if s, _ := m["error_description"].(string); strings.Contains(s, is.Secret()) {
			t.Errorf("%s: the error quotes the secret", name)
		}
	}
}

// The authorization-code flow with PKCE, as the approvals page will use
// it: sign in, get redirected with a code, exchange it with the verifier.
func TestAuthorizationCodeWithPKCE(t *testing.T) {
	is, _ := start(t, "")
	v := verifier(t, is)
	verifierStr := strings.Repeat("v", 50)
	sum := sha256.Sum256([]byte(verifierStr))
	challenge := base64.RawURLEncoding.EncodeToString(sum[:])
	redirect := "http://127.0.0.1:9090/approvals/callback"
	params := url.Values{"response_type": {"code"}, "client_id": {"custos-approvals"}, "redirect_uri": {redirect},
		"state": {"s-123"}, "code_challenge": {challenge}, "code_challenge_method": {"S256"}, "scope": {"openid"}}

	resp, err := http.Get(is.URL() + devissuer.AuthorizePath + "?" + params.Encode())
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(page), `name="secret"`) {
		t.Fatalf("sign-in page: %d", resp.StatusCode)
	}

	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	signIn := func(secret, user string) *http.Response {
		f := url.Values{}
		for k, vs := range params {
			f[k] = vs
		}
		f.Set("user", user)
		f.Set("groups", "approvers")
		f.Set("secret", secret)
		resp, err := noFollow.PostForm(is.URL()+devissuer.AuthorizePath, f)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	if r := signIn("wrong", "dana"); r.StatusCode != 401 {
		t.Fatalf("a wrong dev secret: %d", r.StatusCode)
	}
	if r := signIn(is.Secret(), "<script>"); r.StatusCode != 400 {
		t.Fatalf("markup as a user name: %d", r.StatusCode)
	}
	r := signIn(is.Secret(), "dana")
	if r.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign-in: %d", r.StatusCode)
	}
	loc, _ := url.Parse(r.Header.Get("location"))
	if !strings.HasPrefix(loc.String(), redirect+"?") || loc.Query().Get("state") != "s-123" || loc.Query().Get("iss") != is.URL() {
		t.Fatalf("redirect %s", loc.Redacted())
	}
	code := loc.Query().Get("code")
	exchange := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "client_id": {"custos-approvals"},
		"redirect_uri": {redirect}, "code_verifier": {strings.Repeat("w", 50)}}
	if status, m := postForm(t, is.URL()+devissuer.TokenPath, exchange); status != 400 || m["error"] != "invalid_grant" {
		t.Fatalf("a wrong verifier: %d %v", status, m["error"])
	}
	// The failed exchange used the code up: a code is good for one try.
	exchange.Set("code_verifier", verifierStr)
	if status, m := postForm(t, is.URL()+devissuer.TokenPath, exchange); status != 400 || m["error"] != "invalid_grant" {
		t.Fatalf("a code used twice: %d %v", status, m["error"])
	}

	code = func() string {
		r := signIn(is.Secret(), "dana")
		l, _ := url.Parse(r.Header.Get("location"))
		return l.Query().Get("code")
	}()
	exchange.Set("code", code)
	status, m := postForm(t, is.URL()+devissuer.TokenPath, exchange)
	if status != 200 || m["id_token"] == nil {
		t.Fatalf("exchange: %d %v", status, m["error"])
	}
	p, err := v.Verify(context.Background(), identity.Credentials{Bearer: m["access_token"].(string)})
	if err != nil {
		t.Fatal(err)
	}
	if p.Subject != "dana" || p.Kind != identity.KindHuman || !reflect.DeepEqual(p.Groups, []string{"approvers"}) {
		t.Fatalf("approver principal %+v", p)
	}
}

func TestAuthorizeRefusesBadRequestsWithoutRedirecting(t *testing.T) {
	is, _ := start(t, "")
	good := url.Values{"response_type": {"code"}, "client_id": {"c"}, "redirect_uri": {"http://127.0.0.1/cb"},
		"code_challenge": {strings.Repeat("a", 43)}, "code_challenge_method": {"S256"}}
	for name, change := range map[string][2]string{
		"no PKCE":         {"code_challenge", ""},
		"plain PKCE":      {"code_challenge_method", "plain"},
		"implicit":        {"response_type", "token"},
		"relative target": {"redirect_uri", "/cb"},
		"js target":       {"redirect_uri", "javascript:alert(1)"},
		"no client":       {"client_id", ""},
	} {
		q := url.Values{}
		for k, v := range good {
			q[k] = v
		}
		q.Set(change[0], change[1])
		resp, err := http.Get(is.URL() + devissuer.AuthorizePath + "?" + q.Encode())
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 400 || resp.Request.URL.Host != strings.TrimPrefix(strings.Split(is.URL(), "/dev")[0], "http://") {
			t.Errorf("%s: %d at %s", name, resp.StatusCode, resp.Request.URL.Host)
		}
	}
}

// Rotation: after the issuer rotates, new tokens verify under the new key
// and old ones still verify until their key leaves the key set (the next
// rotation).
func TestRotationKeepsThePreviousKeyOneRound(t *testing.T) {
	is, _ := start(t, "")
	v := verifier(t, is)
	mint := func() string {
		tok, _, err := is.Mint(devissuer.Claims{Subject: "w"})
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	verifies := func(tok string) error {
		_, err := v.Verify(context.Background(), identity.Credentials{Bearer: tok})
		return err
	}
	old := mint()
	if err := verifies(old); err != nil {
		t.Fatal(err)
	}
	if err := is.Rotate(); err != nil {
		t.Fatal(err)
	}
	newer := mint()
	if err := verifies(newer); err != nil {
		t.Fatalf("a token of the new key: %v", err)
	}
	if err := verifies(old); err != nil {
		t.Fatalf("a token of the previous key, still published: %v", err)
	}
	if err := is.Rotate(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Millisecond) // past the verifier's key refresh age
	err := verifies(old)
	var ie *identity.Error
	if !identity.IsUnauthenticated(err) || !asError(err, &ie) || ie.Check != identity.CheckSignature {
		t.Fatalf("a token whose key left the key set: %v", err)
	}
	if err := verifies(newer); err != nil {
		t.Fatalf("the previous key is still published: %v", err)
	}
}

func asError(err error, target **identity.Error) bool {
	e, ok := err.(*identity.Error)
	if ok {
		*target = e
	}
	return ok
}

// The keys and the secret survive a restart, readable by the owner only.
func TestStateIsKeptPrivateAcrossRestarts(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "issuer")
	is, _ := start(t, dir)
	tok, _, err := is.Mint(devissuer.Claims{Subject: "w"})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"keys.json", "secret"} {
		st, err := os.Stat(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Fatalf("%s has mode %v", f, st.Mode().Perm())
		}
	}
	if s, err := devissuer.ReadSecret(is.SecretFile()); err != nil || s != is.Secret() {
		t.Fatalf("secret file: %v", err)
	}
	again, _ := start(t, dir)
	if again.Secret() != is.Secret() || !reflect.DeepEqual(again.KeyIDs(), is.KeyIDs()) {
		t.Fatal("a restarted issuer made new state")
	}
	// The restarted issuer has another URL (another port), so its verifier
	// is for that URL; the token of the first still verifies with the
	// first's keys, served now by the second.
	if _, err := verifier(t, again).Verify(context.Background(), identity.Credentials{Bearer: tok}); !identity.IsUnauthenticated(err) {
		t.Fatalf("a token of another issuer URL: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "keys.json"), []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := devissuer.New(devissuer.Options{URL: "http://127.0.0.1:1/dev/oidc", Dir: dir}); err == nil {
		t.Fatal("a broken key file was accepted")
	}
}

func TestNewRefusesBadURLs(t *testing.T) {
	for _, u := range []string{"", "ftp://x/", "http:///x", "http://x/?a=b", "http://x/#f"} {
		if _, err := devissuer.New(devissuer.Options{URL: u}); err == nil {
			t.Errorf("URL %q accepted", u)
		}
	}
}

// Forgeries of the dev issuer's tokens, against its published keys: the
// same refusals as for any issuer (the identity stage's own tests cover an
// independent issuer).
func TestForgeriesOfDevTokensAreRefused(t *testing.T) {
	is, _ := start(t, "")
	v := verifier(t, is)
	tok, _, err := is.Mint(devissuer.Claims{Subject: "etl", Groups: []string{"readers"}})
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(tok, ".")
	var claims map[string]any
	raw, _ := base64.RawURLEncoding.DecodeString(parts[1])
	if err := json.Unmarshal(raw, &claims); err != nil {
		t.Fatal(err)
	}
	admin := map[string]any{}
	for k, v := range claims {
		admin[k] = v
	}
	admin["groups"] = []string{"admins"}
	adminPayload := strings.Split(identitytest.Unsigned(t, map[string]any{"alg": "RS256"}, admin), ".")[1]

	// The published key, as a forger fetches it.
	resp, err := http.Get(is.URL() + devissuer.KeysPath)
	if err != nil {
		t.Fatal(err)
	}
	var set jose.JSONWebKeySet
	if err := json.NewDecoder(resp.Body).Decode(&set); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	der, err := x509.MarshalPKIXPublicKey(set.Keys[0].Key)
	if err != nil {
		t.Fatal(err)
	}
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})

	other := identitytest.New(t, "/other")
	otherKey := other.AddKey(t, jose.RS256)
	for name, tc := range map[string]struct{ tok, check string }{
		"alg none": {identitytest.Unsigned(t, nil, admin), identity.CheckAlgorithm},
		"HS256 with the public key (key confusion)": {identitytest.SignWith(t, jose.SigningKey{Algorithm: jose.HS256, Key: pubPEM}, admin), identity.CheckAlgorithm},
		"payload altered":      {parts[0] + "." + adminPayload + "." + parts[2], identity.CheckSignature},
		"signature altered":    {parts[0] + "." + parts[1] + "." + flip(parts[2]), identity.CheckSignature},
		"another issuer's key": {identitytest.Sign(t, otherKey, admin), identity.CheckSignature},
		"broken base64":        {parts[0] + "." + parts[1][:5] + "*" + parts[1][6:] + "." + parts[2], identity.CheckMalformed},
	} {
		_, err := v.Verify(context.Background(), identity.Credentials{Bearer: tc.tok})
		var ie *identity.Error
		if !asError(err, &ie) || ie.Check != tc.check {
			t.Errorf("%s: %v, want check %s", name, err, tc.check)
		}
	}
}

func flip(s string) string {
	b := []byte(s)
	if b[len(b)/2] == 'A' {
		b[len(b)/2] = 'B'
	} else {
		b[len(b)/2] = 'A'
	}
	return string(b)
}
