package ui

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/custos-dev/custos/approvals"
	"github.com/custos-dev/custos/config"
	"github.com/custos-dev/custos/devissuer"
	"github.com/custos-dev/custos/filters/approval"
	"github.com/custos-dev/custos/filters/identity"
)

// env is the page, the dev issuer and the identity stage trusting it on
// one loopback server, as the control plane mounts them on listen.http.
type env struct {
	srv  *httptest.Server
	is   *devissuer.Issuer
	svc  *approvals.Service
	page *Page
}

func newEnv(t *testing.T) *env {
	t.Helper()
	mux := http.NewServeMux()
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	is, err := devissuer.New(devissuer.Options{URL: srv.URL + devissuer.Path})
	if err != nil {
		t.Fatal(err)
	}
	mux.Handle(devissuer.Path+"/", is)
	v, err := identity.NewOIDC(config.Identity{Issuers: []config.Issuer{{Issuer: is.URL(), Audiences: []string{is.Audience()},
		ClockSkew: config.DefaultClockSkew}}}, identity.Options{})
	if err != nil {
		t.Fatal(err)
	}
	store, err := approvals.OpenFile(filepath.Join(t.TempDir(), "approvals.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	svc, err := approvals.New(approvals.Options{Store: store, SweepEvery: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { svc.Close() })
	page := New(Options{Service: svc, Issuer: is.URL(), BaseURL: srv.URL,
		Authenticate: func(ctx context.Context, bearer string) (identity.Principal, error) {
			return v.Verify(ctx, identity.Credentials{Bearer: bearer})
		}})
	mux.Handle(Path, page)
	return &env{srv: srv, is: is, svc: svc, page: page}
}

// request opens a pending approval for a DELETE asked by requester.
func (e *env) request(t *testing.T, requester identity.Principal) string {
	t.Helper()
	p, err := e.svc.Request(context.Background(), approval.Request{
		Requester: requester, Connection: "customers", Summary: "DELETE /customers/1",
		Details: "DELETE FROM customers WHERE id = 1", Fingerprint: "fp-" + requester.Subject, Rule: "destructive",
		Reasons: []string{"destructive requests need an approver"}, Approvers: []string{"custos-approvers"},
		MinApprovals: 1, Scope: approval.ScopeRequest, Risk: "destructive", TTL: 30 * time.Minute,
		Method: "DELETE", Path: "/1",
	})
	if err != nil {
		t.Fatal(err)
	}
	return p.ID
}

func (e *env) state(t *testing.T, id string) string {
	t.Helper()
	a, err := e.svc.Get(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return a.State
}

// browser is a client that keeps cookies and shows redirects instead of
// following them.
func browser(t *testing.T) *http.Client {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

func get(t *testing.T, c *http.Client, u string) (*http.Response, string) {
	t.Helper()
	resp, err := c.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// post sends form to u with headers (an Origin header unless headers say
// otherwise).
func post(t *testing.T, c *http.Client, u string, form url.Values, headers map[string]string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest("POST", u, strings.NewReader(form.Encode()))
	req.Header.Set("content-type", "application/x-www-form-urlencoded")
	for k, v := range headers {
		if v != "" {
			req.Header.Set(k, v)
		}
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// authorize starts a sign-in with c and signs in at the dev issuer as user
// in groups; it returns the callback URL the issuer redirects to.
func (e *env) authorize(t *testing.T, c *http.Client, user, groups string) *url.URL {
	t.Helper()
	resp, _ := get(t, c, e.srv.URL+LoginPath)
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("login: %d", resp.StatusCode)
	}
	at, err := url.Parse(resp.Header.Get("location"))
	if err != nil {
		t.Fatal(err)
	}
	resp, body := post(t, c, at.String(), url.Values{"user": {user}, "groups": {groups}, "secret": {e.is.Secret()}}, nil)
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("the dev issuer's sign-in: %d %s", resp.StatusCode, body)
	}
	back, err := url.Parse(resp.Header.Get("location"))
	if err != nil {
		t.Fatal(err)
	}
	return back
}

// signIn signs user in with a new browser.
func (e *env) signIn(t *testing.T, user, groups string) *http.Client {
	t.Helper()
	c := browser(t)
	resp, body := get(t, c, e.authorize(t, c, user, groups).String())
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, `http-equiv="refresh"`) {
		t.Fatalf("callback: %d %s", resp.StatusCode, body)
	}
	return c
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// csrf is the CSRF token on c's approvals page.
func (e *env) csrf(t *testing.T, c *http.Client) string {
	t.Helper()
	_, body := get(t, c, e.srv.URL+ApprovalsPath)
	m := csrfField.FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no CSRF token on the page:\n%s", body)
	}
	return m[1]
}

func agent(is *devissuer.Issuer) identity.Principal {
	return identity.Principal{Issuer: is.URL(), Subject: "nightly-etl", Kind: identity.KindWorkload, Groups: []string{"customers-writers"}}
}

// A visitor who is not signed in is sent to sign in; the JSON says 401 and
// a vote is refused.
func TestNotSignedIn(t *testing.T) {
	e := newEnv(t)
	id := e.request(t, agent(e.is))
	c := browser(t)
	resp, _ := get(t, c, e.srv.URL+ApprovalsPath)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("location") != LoginPath {
		t.Fatalf("the page without a session: %d %q", resp.StatusCode, resp.Header.Get("location"))
	}
	if resp, _ = get(t, c, e.srv.URL+"/ui/"); resp.StatusCode != http.StatusSeeOther || resp.Header.Get("location") != ApprovalsPath {
		t.Fatalf("/ui/: %d %q", resp.StatusCode, resp.Header.Get("location"))
	}
	if resp, _ = get(t, c, e.srv.URL+ListPath); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("the list without a session: %d", resp.StatusCode)
	}
	c.Jar.SetCookies(mustURL(t, e.srv.URL+Path), []*http.Cookie{{Name: sessionCookie, Value: "forged"}})
	resp, _ = post(t, c, e.srv.URL+"/ui/approvals/"+id+"/vote", url.Values{"decision": {"approve"}}, map[string]string{"origin": e.srv.URL})
	if resp.StatusCode != http.StatusForbidden || e.state(t, id) != approvals.StatePending {
		t.Fatalf("a vote without a session: %d, %s", resp.StatusCode, e.state(t, id))
	}
}

func mustURL(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// /ui/login sends the browser to the issuer with a state and an S256 PKCE
// challenge, and marks the browser with a Lax, HttpOnly sign-in cookie.
func TestLoginRedirect(t *testing.T) {
	e := newEnv(t)
	resp, _ := get(t, browser(t), e.srv.URL+LoginPath)
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("login: %d", resp.StatusCode)
	}
	at := mustURL(t, resp.Header.Get("location"))
	q := at.Query()
	if at.Scheme+"://"+at.Host+at.Path != e.is.URL()+devissuer.AuthorizePath {
		t.Errorf("authorization endpoint %s", at)
	}
	want := map[string]string{"response_type": "code", "client_id": DefaultClientID,
		"redirect_uri": e.srv.URL + CallbackPath, "code_challenge_method": "S256"}
	for k, v := range want {
		if q.Get(k) != v {
			t.Errorf("%s = %q, want %q", k, q.Get(k), v)
		}
	}
	if len(q.Get("state")) < 32 || len(q.Get("code_challenge")) != 43 {
		t.Errorf("state %q, code_challenge %q", q.Get("state"), q.Get("code_challenge"))
	}
	var login *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == loginCookie {
			login = c
		}
	}
	if login == nil || !login.HttpOnly || login.SameSite != http.SameSiteLaxMode || login.Path != CallbackPath || login.Secure {
		t.Fatalf("sign-in cookie %+v", login)
	}
}

// The callback refuses a state other than the one the browser was given,
// a browser that started no sign-in, and a sign-in used twice.
func TestCallbackRefusals(t *testing.T) {
	e := newEnv(t)
	c := browser(t)
	back := e.authorize(t, c, "dana", "custos-approvers")
	q := back.Query()
	q.Set("state", "not-the-state")
	bad := *back
	bad.RawQuery = q.Encode()
	resp, body := get(t, c, bad.String())
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "state does not match") {
		t.Fatalf("state mismatch: %d %s", resp.StatusCode, body)
	}
	if hasSession(resp) {
		t.Fatal("a session started despite the state mismatch")
	}
	// The sign-in is spent: the right state does not revive it.
	if resp, _ = get(t, c, back.String()); resp.StatusCode != http.StatusBadRequest || hasSession(resp) {
		t.Fatalf("a spent sign-in: %d", resp.StatusCode)
	}
	// A callback in a browser that did not start the sign-in.
	other := browser(t)
	back = e.authorize(t, browser(t), "dana", "custos-approvers")
	if resp, _ = get(t, other, back.String()); resp.StatusCode != http.StatusBadRequest || hasSession(resp) {
		t.Fatalf("another browser's callback: %d", resp.StatusCode)
	}
	// A sign-in cookie the browser made up, with a state to match.
	c = browser(t)
	back = e.authorize(t, c, "dana", "custos-approvers")
	forged := "forged-state.forged-verifier-forged-verifier-forged-verifier-xx.9999999999.c2lnbmF0dXJl"
	c.Jar.SetCookies(mustURL(t, e.srv.URL+CallbackPath), []*http.Cookie{{Name: loginCookie, Value: forged, Path: CallbackPath}})
	q = back.Query()
	q.Set("state", "forged-state")
	back.RawQuery = q.Encode()
	if resp, body = get(t, c, back.String()); resp.StatusCode != http.StatusBadRequest || hasSession(resp) || !strings.Contains(body, "not one the page started") {
		t.Fatalf("a forged sign-in cookie: %d %s", resp.StatusCode, body)
	}
	// An issuer that names another issuer (RFC 9207).
	c = browser(t)
	back = e.authorize(t, c, "dana", "custos-approvers")
	q = back.Query()
	q.Set("iss", "https://elsewhere.test")
	back.RawQuery = q.Encode()
	if resp, _ = get(t, c, back.String()); resp.StatusCode != http.StatusBadRequest || hasSession(resp) {
		t.Fatalf("another issuer: %d", resp.StatusCode)
	}
	if resp, body = get(t, browser(t), e.srv.URL+CallbackPath+"?error=access_denied&error_description=call+555"); resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "access_denied") || strings.Contains(body, "555") {
		t.Fatalf("an issuer's error: %d %s", resp.StatusCode, body)
	}
}

func hasSession(resp *http.Response) bool {
	for _, c := range resp.Cookies() {
		if c.Name == sessionCookie && c.Value != "" {
			return true
		}
	}
	return false
}

// An approver signs in, sees the pending request in full, approves it with
// a comment and sees the result; the list the page polls changes with it.
func TestSignInAndApprove(t *testing.T) {
	e := newEnv(t)
	id := e.request(t, agent(e.is))
	c := browser(t)
	resp, _ := get(t, c, e.authorize(t, c, "dana", "custos-approvers").String())
	var sess *http.Cookie
	for _, k := range resp.Cookies() {
		if k.Name == sessionCookie {
			sess = k
		}
	}
	if sess == nil || !sess.HttpOnly || sess.SameSite != http.SameSiteStrictMode || sess.Path != Path || sess.Secure {
		t.Fatalf("session cookie %+v", sess)
	}

	resp, body := get(t, c, e.srv.URL+ApprovalsPath)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("page: %d", resp.StatusCode)
	}
	for _, want := range []string{id, "DELETE FROM customers WHERE id = 1", "destructive requests need an approver",
		"nightly-etl", "customers", "custos-approvers", `value="approve"`, `value="deny"`, "Signed in as dana"} {
		if !strings.Contains(body, want) {
			t.Errorf("the page lacks %q", want)
		}
	}
	csp := resp.Header.Get("content-security-policy")
	nonce := regexp.MustCompile(`script-src 'nonce-([^']+)'`).FindStringSubmatch(csp)
	if nonce == nil || !strings.Contains(csp, "default-src 'none'") || !strings.Contains(body, `<script nonce="`+nonce[1]+`">`) {
		t.Fatalf("CSP %q does not allow exactly the page's script", csp)
	}

	v1 := listVersion(t, e, c, id, true)
	tok := csrfField.FindStringSubmatch(body)[1]
	resp, _ = post(t, c, e.srv.URL+"/ui/approvals/"+id+"/vote", url.Values{"csrf": {tok}, "decision": {"approve"},
		"comment": {"ok for the cleanup"}}, map[string]string{"origin": e.srv.URL})
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("location") != ApprovalsPath {
		t.Fatalf("vote: %d", resp.StatusCode)
	}
	if st := e.state(t, id); st != approvals.StateApproved {
		t.Fatalf("after the vote: %s", st)
	}
	a, _ := e.svc.Get(context.Background(), id)
	if len(a.Votes) != 1 || a.Votes[0].Comment != "ok for the cleanup" || a.Votes[0].Voter.Subject != "dana" {
		t.Fatalf("votes %+v", a.Votes)
	}
	_, body = get(t, c, e.srv.URL+ApprovalsPath)
	if !strings.Contains(body, `id="flash"`) || !strings.Contains(body, "Approved "+id) {
		t.Fatalf("no result on the page:\n%s", body)
	}
	if _, body = get(t, c, e.srv.URL+ApprovalsPath); strings.Contains(body, `id="flash"`) {
		t.Fatal("the result is shown twice")
	}
	if v2 := listVersion(t, e, c, id, false); v2 == v1 {
		t.Fatal("the list's version did not change")
	}
}

// listVersion reads the JSON the page polls and checks whether id is in it.
func listVersion(t *testing.T, e *env, c *http.Client, id string, in bool) string {
	t.Helper()
	resp, body := get(t, c, e.srv.URL+ListPath)
	var l listJSON
	if resp.StatusCode != http.StatusOK || json.Unmarshal([]byte(body), &l) != nil {
		t.Fatalf("list: %d %s", resp.StatusCode, body)
	}
	if strings.Contains(l.HTML, id) != in || (l.Count == 1) != in {
		t.Fatalf("list (want %s in it: %t): %+v", id, in, l)
	}
	return l.Version
}

// A vote is refused without the session's CSRF token, with another, or
// from another origin; nothing is recorded.
func TestCSRF(t *testing.T) {
	e := newEnv(t)
	id := e.request(t, agent(e.is))
	c := e.signIn(t, "dana", "custos-approvers")
	tok := e.csrf(t, c)
	u := e.srv.URL + "/ui/approvals/" + id + "/vote"
	cases := map[string]struct {
		form    url.Values
		headers map[string]string
	}{
		"no token":                   {url.Values{"decision": {"approve"}}, map[string]string{"origin": e.srv.URL}},
		"another token":              {url.Values{"csrf": {tok + "x"}, "decision": {"approve"}}, map[string]string{"origin": e.srv.URL}},
		"another origin":             {url.Values{"csrf": {tok}, "decision": {"approve"}}, map[string]string{"origin": "https://evil.test"}},
		"null origin":                {url.Values{"csrf": {tok}, "decision": {"approve"}}, map[string]string{"origin": "null"}},
		"another site's referer":     {url.Values{"csrf": {tok}, "decision": {"approve"}}, map[string]string{"referer": "https://evil.test/ui/approvals"}},
		"neither origin nor referer": {url.Values{"csrf": {tok}, "decision": {"approve"}}, nil},
	}
	for name, tc := range cases {
		resp, _ := post(t, c, u, tc.form, tc.headers)
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("%s: %d", name, resp.StatusCode)
		}
	}
	if st := e.state(t, id); st != approvals.StatePending {
		t.Fatalf("a refused form voted: %s", st)
	}
	// The page's own Referer, without Origin, is accepted.
	resp, _ := post(t, c, u, url.Values{"csrf": {tok}, "decision": {"deny"}, "comment": {"not now"}},
		map[string]string{"referer": e.srv.URL + ApprovalsPath})
	if resp.StatusCode != http.StatusSeeOther || e.state(t, id) != approvals.StateDenied {
		t.Fatalf("a same-origin deny: %d %s", resp.StatusCode, e.state(t, id))
	}
	// Logging out needs the token too.
	if resp, _ = post(t, c, e.srv.URL+LogoutPath, nil, map[string]string{"origin": e.srv.URL}); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("logout without the token: %d", resp.StatusCode)
	}
	if resp, _ = post(t, c, e.srv.URL+LogoutPath, url.Values{"csrf": {tok}}, map[string]string{"origin": e.srv.URL}); resp.StatusCode != http.StatusOK {
		t.Fatalf("logout: %d", resp.StatusCode)
	}
	if resp, _ = get(t, c, e.srv.URL+ApprovalsPath); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("the page after logout: %d", resp.StatusCode)
	}
}

// A requester who is also an approver sees their own request without
// buttons and a forced vote is refused in words; someone who is no
// approver sees nothing and learns nothing.
func TestRefusalsAreReadable(t *testing.T) {
	e := newEnv(t)
	dana := identity.Principal{Issuer: e.is.URL(), Subject: "dana", Kind: identity.KindHuman, Groups: []string{"custos-approvers"}}
	id := e.request(t, dana)
	c := e.signIn(t, "dana", "custos-approvers")
	_, body := get(t, c, e.srv.URL+ApprovalsPath)
	if !strings.Contains(body, id) || strings.Contains(body, `value="approve"`) || !strings.Contains(body, "You asked for this") {
		t.Fatalf("the requester's page:\n%s", body)
	}
	tok := csrfField.FindStringSubmatch(body)[1]
	post(t, c, e.srv.URL+"/ui/approvals/"+id+"/vote", url.Values{"csrf": {tok}, "decision": {"approve"}}, map[string]string{"origin": e.srv.URL})
	if _, body = get(t, c, e.srv.URL+ApprovalsPath); !strings.Contains(body, "You cannot approve or deny your own request. (self_approval)") {
		t.Fatalf("no readable refusal:\n%s", body)
	}

	erin := e.signIn(t, "erin", "sales")
	_, body = get(t, erin, e.srv.URL+ApprovalsPath)
	if strings.Contains(body, id) || !strings.Contains(body, "No pending request") {
		t.Fatalf("a non-approver's page:\n%s", body)
	}
	tok = csrfField.FindStringSubmatch(body)[1]
	post(t, erin, e.srv.URL+"/ui/approvals/"+id+"/vote", url.Values{"csrf": {tok}, "decision": {"approve"}}, map[string]string{"origin": e.srv.URL})
	if _, body = get(t, erin, e.srv.URL+ApprovalsPath); !strings.Contains(body, "There is no approval "+id+" that you may see.") {
		t.Fatalf("no readable refusal:\n%s", body)
	}
	if st := e.state(t, id); st != approvals.StatePending {
		t.Fatalf("a refused vote counted: %s", st)
	}
}

// Every refusal code has words of its own.
func TestRefusalWords(t *testing.T) {
	for _, ref := range []*approvals.Refusal{approvals.ErrSelfApproval, approvals.ErrNotEligible,
		approvals.ErrAlreadyResolved, approvals.ErrAlreadyVoted} {
		if s := refusal(ref); s == ref.Message || s == "" {
			t.Errorf("%s: %q", ref.Code, s)
		}
	}
}

// Cookies are Secure when the page is served over https.
func TestSecureCookies(t *testing.T) {
	p := New(Options{BaseURL: "https://custos.example:9090/"})
	if c := p.cookie(sessionCookie, "x", Path, http.SameSiteStrictMode, 60); !c.Secure || p.origin != "https://custos.example:9090" {
		t.Fatalf("cookie %+v, origin %q", c, p.origin)
	}
}

func TestTimeLeft(t *testing.T) {
	for d, want := range map[time.Duration]string{-time.Second: "expired", 0: "expired", 42 * time.Second: "42s left",
		2*time.Minute + 5*time.Second: "2m 05s left", 23*time.Hour + 59*time.Minute + 59*time.Second: "23h 59m left"} {
		if got := timeLeft(d); got != want {
			t.Errorf("timeLeft(%v) = %q, want %q", d, got, want)
		}
	}
}
