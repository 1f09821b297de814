package devissuer

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"html/template"
	"net/http"
	"net/url"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// Endpoint paths below the issuer URL.
const (
	DiscoveryPath = "/.well-known/openid-configuration"
	KeysPath      = "/keys"
	TokenPath     = "/token"
	AuthorizePath = "/authorize"
)

// allowed are the methods of each endpoint.
var allowed = map[string]string{DiscoveryPath: "GET", KeysPath: "GET", TokenPath: "POST", AuthorizePath: "GET, POST"}

// maxForm bounds a token or sign-in request body.
const maxForm = 16 << 10

// ServeHTTP serves discovery, the key set, the token endpoint and the
// sign-in page below the issuer URL's path.
func (is *Issuer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	base := ""
	if u, err := url.Parse(is.url); err == nil {
		base = u.Path
	}
	p, ok := strings.CutPrefix(r.URL.Path, base)
	if !ok {
		http.NotFound(w, r)
		return
	}
	switch {
	case p == DiscoveryPath && r.Method == http.MethodGet:
		is.discovery(w)
	case p == KeysPath && r.Method == http.MethodGet:
		is.jwks(w)
	case p == TokenPath && r.Method == http.MethodPost:
		is.token(w, r)
	case p == AuthorizePath && (r.Method == http.MethodGet || r.Method == http.MethodPost):
		is.authorize(w, r)
	case allowed[p] != "":
		w.Header().Set("allow", allowed[p])
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	default:
		http.NotFound(w, r)
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("content-type", "application/json")
	w.Header().Set("cache-control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func (is *Issuer) discovery(w http.ResponseWriter) {
	writeJSON(w, 200, map[string]any{
		"issuer":                                is.url,
		"jwks_uri":                              is.url + KeysPath,
		"token_endpoint":                        is.url + TokenPath,
		"authorization_endpoint":                is.url + AuthorizePath,
		"response_types_supported":              []string{"code"},
		"subject_types_supported":               []string{"public"},
		"id_token_signing_alg_values_supported": []string{"RS256"},
		"grant_types_supported":                 []string{"client_credentials", "authorization_code"},
		"code_challenge_methods_supported":      []string{"S256"},
		"token_endpoint_auth_methods_supported": []string{"client_secret_basic", "client_secret_post", "none"},
		"scopes_supported":                      []string{"openid", "profile"},
		"claims_supported":                      []string{"iss", "sub", "aud", "exp", "iat", "nbf", "oid", "azp", "groups", "roles", "idtyp", "scp", "preferred_username", "nonce"},
	})
}

func (is *Issuer) jwks(w http.ResponseWriter) {
	is.mu.Lock()
	var set jose.JSONWebKeySet
	for _, k := range is.keys {
		set.Keys = append(set.Keys, jose.JSONWebKey{Key: k.Key.Public(), KeyID: k.ID, Algorithm: string(jose.RS256), Use: "sig"})
	}
	is.mu.Unlock()
	writeJSON(w, 200, set)
}

// oauthError answers as RFC 6749 section 5.2 says.
func oauthError(w http.ResponseWriter, status int, code, desc string) {
	if status == http.StatusUnauthorized {
		w.Header().Set("www-authenticate", `Basic realm="custos dev issuer"`)
	}
	writeJSON(w, status, map[string]string{"error": code, "error_description": desc})
}

func (is *Issuer) token(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxForm)
	if err := r.ParseForm(); err != nil {
		oauthError(w, 400, "invalid_request", "the body must be a form of at most 16 KiB")
		return
	}
	for k, v := range r.PostForm {
		if len(v) > 1 {
			oauthError(w, 400, "invalid_request", "parameter "+k+" is repeated")
			return
		}
	}
	switch r.PostForm.Get("grant_type") {
	case "client_credentials":
		is.clientCredentials(w, r)
	case "authorization_code":
		is.exchangeCode(w, r)
	case "":
		oauthError(w, 400, "invalid_request", "grant_type is missing")
	default:
		oauthError(w, 400, "unsupported_grant_type", "grant_type must be client_credentials or authorization_code")
	}
}

// client reads the client's id and secret from HTTP Basic (RFC 6749
// section 2.3.1, form-encoded) or the form.
func client(r *http.Request) (id, secret string, ok bool) {
	if u, p, basic := r.BasicAuth(); basic {
		id, err1 := url.QueryUnescape(u)
		secret, err2 := url.QueryUnescape(p)
		return id, secret, err1 == nil && err2 == nil && r.PostForm.Get("client_secret") == ""
	}
	return r.PostForm.Get("client_id"), r.PostForm.Get("client_secret"), true
}

// clientCredentials issues a workload token. The client id is the
// workload's name; groups, roles and ttl are the dev issuer's own
// parameters (a real IdP takes them from its directory).
func (is *Issuer) clientCredentials(w http.ResponseWriter, r *http.Request) {
	id, secret, ok := client(r)
	if !ok || id == "" || !is.checkSecret(secret) {
		oauthError(w, 401, "invalid_client", "client authentication failed: present the dev secret as client_secret")
		return
	}
	c := Claims{Subject: id, Groups: splitList(r.PostForm.Get("groups")), Roles: splitList(r.PostForm.Get("roles"))}
	if s := r.PostForm.Get("ttl"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			oauthError(w, 400, "invalid_request", "ttl must be a positive Go duration such as 30m")
			return
		}
		c.TTL = d
	}
	tok, ttl, err := is.Mint(c)
	if err != nil {
		oauthError(w, 400, "invalid_request", err.Error())
		return
	}
	writeJSON(w, 200, map[string]any{"access_token": tok, "token_type": "Bearer", "expires_in": int(ttl.Seconds())})
}

func splitList(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' })
}

// exchangeCode turns a sign-in's code into tokens after checking PKCE.
func (is *Issuer) exchangeCode(w http.ResponseWriter, r *http.Request) {
	f := r.PostForm
	code := f.Get("code")
	is.mu.Lock()
	ac, found := is.codes[code]
	delete(is.codes, code) // one use, whatever happens next
	is.mu.Unlock()
	if !found || is.now().After(ac.expires) {
		oauthError(w, 400, "invalid_grant", "the code is unknown, used or expired")
		return
	}
	id := f.Get("client_id")
	if u, _, basic := r.BasicAuth(); basic {
		id, _ = url.QueryUnescape(u)
	}
	if id != ac.clientID || f.Get("redirect_uri") != ac.redirect {
		oauthError(w, 400, "invalid_grant", "client_id and redirect_uri must be those of the authorization request")
		return
	}
	sum := sha256.Sum256([]byte(f.Get("code_verifier")))
	if v := f.Get("code_verifier"); len(v) < 43 || len(v) > 128 || base64.RawURLEncoding.EncodeToString(sum[:]) != ac.challenge {
		oauthError(w, 400, "invalid_grant", "code_verifier does not match the code_challenge")
		return
	}
	tok, ttl, err := is.Mint(Claims{Subject: ac.subject, Name: ac.name, Groups: ac.groups, Human: true, ClientID: ac.clientID})
	if err != nil {
		oauthError(w, 400, "invalid_request", err.Error())
		return
	}
	now := is.now()
	idClaims := map[string]any{"iss": is.url, "aud": ac.clientID, "sub": ac.subject, "iat": now.Unix(),
		"exp": now.Add(ttl).Unix(), "preferred_username": ac.name}
	idTok, err := is.sign(idClaims)
	if err != nil {
		oauthError(w, 500, "server_error", "signing failed")
		return
	}
	writeJSON(w, 200, map[string]any{"access_token": tok, "id_token": idTok, "token_type": "Bearer", "expires_in": int(ttl.Seconds())})
}

var signIn = template.Must(template.New("signin").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Custos dev sign-in</title></head>
<body>
<h1>Custos dev sign-in</h1>
<p>This is the development issuer of <code>custos dev</code>. Sign in as any approver with the dev secret it printed.</p>
{{if .Error}}<p role="alert"><strong>{{.Error}}</strong></p>{{end}}
<form method="post">
<label>User <input name="user" value="{{.User}}" autocomplete="username" required></label><br>
<label>Groups (comma-separated) <input name="groups" value="{{.Groups}}"></label><br>
<label>Dev secret <input name="secret" type="password" required></label><br>
{{range $k, $v := .Hidden}}<input type="hidden" name="{{$k}}" value="{{$v}}">{{end}}
<button type="submit">Sign in</button>
</form>
</body></html>
`))

// authorize shows the sign-in page (GET) and, on a correct dev secret,
// redirects back with a code (POST).
func (is *Issuer) authorize(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxForm)
	if err := r.ParseForm(); err != nil {
		http.Error(w, "the request must be a form of at most 16 KiB", 400)
		return
	}
	q := r.Form
	hidden := map[string]string{}
	for _, k := range []string{"response_type", "client_id", "redirect_uri", "state", "nonce", "code_challenge", "code_challenge_method", "scope"} {
		hidden[k] = q.Get(k)
	}
	redirect, err := url.Parse(hidden["redirect_uri"])
	// Errors before the redirect is known good are shown, never redirected
	// (RFC 6749 section 4.1.2.1).
	switch {
	case err != nil || (redirect.Scheme != "http" && redirect.Scheme != "https") || redirect.Host == "" || redirect.Fragment != "":
		http.Error(w, "redirect_uri must be an absolute http(s) URL without a fragment", 400)
		return
	case !validName(hidden["client_id"]):
		http.Error(w, "client_id is missing or not a plain name", 400)
		return
	case hidden["response_type"] != "code":
		http.Error(w, "response_type must be code", 400)
		return
	case hidden["code_challenge_method"] != "S256" || len(hidden["code_challenge"]) != 43:
		http.Error(w, "PKCE is required: code_challenge (43 characters) with code_challenge_method S256", 400)
		return
	}
	page := struct {
		Error, User, Groups string
		Hidden              map[string]string
	}{User: q.Get("user"), Groups: q.Get("groups"), Hidden: hidden}
	if r.Method == http.MethodGet {
		w.Header().Set("content-type", "text/html; charset=utf-8")
		_ = signIn.Execute(w, page)
		return
	}
	groups := splitList(page.Groups)
	bad := !validName(page.User)
	for _, g := range groups {
		bad = bad || !validName(g)
	}
	status := 0
	switch {
	case !is.checkSecret(r.PostForm.Get("secret")):
		page.Error, status = "The dev secret is wrong.", http.StatusUnauthorized
	case bad:
		page.Error, status = "User and groups must be letters, digits and . _ : @ - (at most 128 each).", http.StatusBadRequest
	}
	if status != 0 {
		w.Header().Set("content-type", "text/html; charset=utf-8")
		w.WriteHeader(status)
		_ = signIn.Execute(w, page)
		return
	}
	code := randomID()
	is.mu.Lock()
	now := is.now()
	for c, ac := range is.codes {
		if now.After(ac.expires) {
			delete(is.codes, c)
		}
	}
	is.codes[code] = authCode{clientID: hidden["client_id"], redirect: hidden["redirect_uri"], challenge: hidden["code_challenge"],
		subject: page.User, name: page.User, groups: groups, expires: now.Add(codeTTL)}
	is.mu.Unlock()
	v := redirect.Query()
	v.Set("code", code)
	if s := hidden["state"]; s != "" {
		v.Set("state", s)
	}
	v.Set("iss", is.url) // RFC 9207
	redirect.RawQuery = v.Encode()
	http.Redirect(w, r, redirect.String(), http.StatusSeeOther)
}
