package credentials

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// oauth presents a token of Custos' own identity, got with the
// client-credentials grant. The token is cached; from its refresh point
// (RefreshBefore ahead of expiry, at most half its lifetime) the next
// request starts one fetch in the background and is served the cached
// token, as is every request until the new one arrives. A failed refresh
// keeps the cached token in use while it is valid and is retried
// RetryAfter later. Only a request that finds no valid token waits, for
// the one fetch in flight (single-flight).
type oauth struct {
	spec          OAuthClientCredentials
	secret        *secret[string]
	client        *http.Client
	now           func() time.Time
	refreshBefore time.Duration
	retryAfter    time.Duration
	log           *slog.Logger

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	cur atomic.Pointer[token]

	mu       sync.Mutex
	inflight chan struct{} // closed when the fetch in flight ends
	lastErr  error
	retryAt  time.Time
}

// token is one access token and when to stop using it.
type token struct {
	authorization string    // "Bearer …"
	refreshAt     time.Time // start a background refresh from here
	usableUntil   time.Time // never present it after this (a margin before expiry)
}

func newOAuth(spec OAuthClientCredentials, o Options) (*oauth, error) {
	sec, err := fileSecret("oauth_client_credentials.client_secret_file", spec.ClientSecretFile, o, func(b []byte) (string, error) {
		s := strings.TrimSpace(string(b))
		if s == "" {
			return "", errEmpty
		}
		return s, nil
	})
	if err != nil {
		return nil, err
	}
	if _, err := url.Parse(spec.TokenURL); err != nil {
		return nil, fmt.Errorf("oauth_client_credentials.token_url: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &oauth{
		spec: spec, secret: sec, client: o.HTTPClient, now: o.Now,
		refreshBefore: o.RefreshBefore, retryAfter: o.RetryAfter, log: o.Logger,
		ctx: ctx, cancel: cancel,
	}, nil
}

// Kind is KindOAuthClientCredentials.
func (o *oauth) Kind() Kind { return KindOAuthClientCredentials }

// String names the client, the scope and where the secret comes from.
func (o *oauth) String() string { return Spec{OAuthClientCredentials: &o.spec}.String() }

// GoString is String.
func (o *oauth) GoString() string { return o.String() }

// Close cancels a fetch in flight and waits for it to end.
func (o *oauth) Close() error {
	o.cancel()
	o.wg.Wait()
	return nil
}

// Inject sets Authorization to a valid token of Custos' identity.
func (o *oauth) Inject(ctx context.Context, req Outgoing) (Mutation, error) {
	now := o.now()
	t := o.cur.Load()
	if t != nil && now.Before(t.refreshAt) {
		return bearerMutation(req, t.authorization)
	}
	if t != nil && now.Before(t.usableUntil) {
		o.refresh(now, false)
		return bearerMutation(req, t.authorization)
	}
	done, err := o.refresh(now, true)
	if err != nil {
		return Mutation{}, err
	}
	select {
	case <-done:
	case <-ctx.Done():
		return Mutation{}, fmt.Errorf("oauth_client_credentials: waiting for a token: %w", ctx.Err())
	}
	if t := o.cur.Load(); t != nil && o.now().Before(t.usableUntil) {
		return bearerMutation(req, t.authorization)
	}
	o.mu.Lock()
	err = o.lastErr
	o.mu.Unlock()
	if err == nil {
		err = errors.New("oauth_client_credentials: no token")
	}
	return Mutation{}, err
}

// refresh starts a fetch unless one is in flight or the last one failed
// less than RetryAfter ago, and returns the channel closed when the fetch
// in flight ends. For a caller that needs a token (wait), a recent failure
// is returned as an error rather than hammering the endpoint.
func (o *oauth) refresh(now time.Time, wait bool) (<-chan struct{}, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.inflight != nil {
		return o.inflight, nil
	}
	if o.lastErr != nil && now.Before(o.retryAt) {
		if wait {
			return nil, o.lastErr
		}
		return nil, nil
	}
	if o.ctx.Err() != nil {
		return nil, errors.New("oauth_client_credentials: closed")
	}
	ch := make(chan struct{})
	o.inflight = ch
	o.wg.Add(1)
	go func() {
		defer o.wg.Done()
		t, err := o.fetch(o.ctx)
		o.mu.Lock()
		if err != nil {
			o.lastErr = err
			o.retryAt = o.now().Add(o.retryAfter)
			cached := o.cur.Load()
			o.log.Warn("upstream token refresh failed", "token_url", o.spec.TokenURL, "client_id", o.spec.ClientID,
				"scope", o.spec.Scope, "error", err, "retry_in", o.retryAfter,
				"cached_token_valid", cached != nil && o.now().Before(cached.usableUntil))
		} else {
			o.lastErr = nil
			o.cur.Store(t)
			o.log.Debug("upstream token refreshed", "token_url", o.spec.TokenURL, "client_id", o.spec.ClientID,
				"scope", o.spec.Scope, "refresh_at", t.refreshAt)
		}
		o.inflight = nil
		close(ch)
		o.mu.Unlock()
	}()
	return ch, nil
}

// tokenResponse is RFC 6749 section 5.1's, with expires_in as a number or,
// as Entra ID's v1 endpoint sends it, a string.
type tokenResponse struct {
	AccessToken string          `json:"access_token"`
	TokenType   string          `json:"token_type"`
	ExpiresIn   json.RawMessage `json:"expires_in"`
	Error       string          `json:"error"`
	Description string          `json:"error_description"`
}

// defaultLifetime is assumed when the endpoint does not say (expires_in is
// only RECOMMENDED): short, so that a wrong guess costs little.
const defaultLifetime = 5 * time.Minute

const maxTokenResponse = 1 << 20

// fetch asks the token endpoint for a token.
func (o *oauth) fetch(ctx context.Context) (*token, error) {
	secret, err := o.secret.get()
	if err != nil {
		return nil, err
	}
	form := url.Values{
		"grant_type":    {"client_credentials"},
		"client_id":     {o.spec.ClientID},
		"client_secret": {secret},
		"scope":         {o.spec.Scope},
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, o.spec.TokenURL, strings.NewReader(form.Encode()))
	if err != nil {
		return nil, fmt.Errorf("oauth_client_credentials: token request: %w", err)
	}
	req.Header.Set("content-type", "application/x-www-form-urlencoded")
	req.Header.Set("accept", "application/json")
	start := o.now()
	resp, err := o.client.Do(req)
	if err != nil {
		// A *url.Error names the URL and the cause, never the form.
		return nil, fmt.Errorf("oauth_client_credentials: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxTokenResponse))
	if err != nil {
		return nil, fmt.Errorf("oauth_client_credentials: read the token response: %w", err)
	}
	var tr tokenResponse
	jerr := json.Unmarshal(body, &tr)
	clear(body)
	if resp.StatusCode != http.StatusOK {
		msg := fmt.Sprintf("oauth_client_credentials: token endpoint %s answered %d", o.spec.TokenURL, resp.StatusCode)
		if jerr == nil && tr.Error != "" {
			msg += " " + printable(tr.Error, 64)
			if tr.Description != "" {
				msg += ": " + printable(strings.ReplaceAll(tr.Description, secret, "[redacted]"), 200)
			}
		}
		return nil, errors.New(msg)
	}
	if jerr != nil || tr.AccessToken == "" {
		return nil, fmt.Errorf("oauth_client_credentials: token endpoint %s answered 200 without an access_token", o.spec.TokenURL)
	}
	if tr.TokenType != "" && !strings.EqualFold(tr.TokenType, "bearer") {
		return nil, fmt.Errorf("oauth_client_credentials: token type %q is not Bearer", printable(tr.TokenType, 32))
	}
	if strings.ContainsAny(tr.AccessToken, "\r\n\x00 ") {
		return nil, errors.New("oauth_client_credentials: the access token is not a single token")
	}
	lifetime := defaultLifetime
	if s := strings.Trim(string(tr.ExpiresIn), `"`); s != "" && s != "null" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("oauth_client_credentials: expires_in %q is not a positive number of seconds", printable(s, 32))
		}
		lifetime = time.Duration(n) * time.Second
	}
	expiry := start.Add(lifetime)
	return &token{
		authorization: "Bearer " + tr.AccessToken,
		refreshAt:     expiry.Add(-min(o.refreshBefore, lifetime/2)),
		usableUntil:   expiry.Add(-min(30*time.Second, lifetime/10)),
	}, nil
}

// printable cuts s to n bytes of printable UTF-8 (it came from a server).
func printable(s string, n int) string {
	if len(s) > n {
		s = s[:n] + "…"
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, strings.ToValidUTF8(s, "?"))
}
