package identity

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
)

// maxDocument bounds a discovery document or key set read from an issuer.
const maxDocument = 1 << 20

// fetcher is the transport of one issuer's key set requests: go-oidc's
// RemoteKeySet fetches the whole JWKS again on every kid it does not know
// (and on every signature its keys do not verify), so the fetcher lets at
// most one request per interval reach the issuer and answers the others
// with the last key set it got. A flood of forged kids costs the issuer one
// request per interval.
type fetcher struct {
	base     http.RoundTripper
	interval time.Duration
	now      func() time.Time

	mu        sync.Mutex
	attempted time.Time // last request sent to the issuer
	fetched   time.Time // last good key set received
	body      []byte    // the last good key set, nil before the first
	ctype     string
	lastErr   error

	// gen counts the changes of the key set; tokens verified under an
	// older generation are verified again.
	gen atomic.Uint64
	// calls counts RoundTrip calls, fetched or answered from the last.
	calls atomic.Uint64
}

// RoundTrip sends req to the issuer, or, within the interval of the last
// request, answers from the last good key set (or with the last error).
func (f *fetcher) RoundTrip(req *http.Request) (*http.Response, error) {
	f.calls.Add(1)
	f.mu.Lock()
	defer f.mu.Unlock()
	now := f.now()
	if !f.attempted.IsZero() && now.Sub(f.attempted) < f.interval {
		if f.body != nil {
			return f.replay(req), nil
		}
		return nil, fmt.Errorf("key set not fetched again within %s of the last attempt: %w", f.interval, f.lastErr)
	}
	f.attempted = now
	body, ctype, err := f.fetch(req)
	if err != nil {
		f.lastErr = err
		return nil, err
	}
	if !bytes.Equal(body, f.body) {
		f.gen.Add(1)
	}
	f.body, f.ctype, f.fetched = body, ctype, now
	return f.replay(req), nil
}

// fetch gets the key set and checks it is a JSON object with a keys list.
func (f *fetcher) fetch(req *http.Request) ([]byte, string, error) {
	resp, err := f.base.RoundTrip(req)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxDocument+1))
	switch {
	case err != nil:
		return nil, "", fmt.Errorf("read key set: %w", err)
	case resp.StatusCode != http.StatusOK:
		return nil, "", fmt.Errorf("key set: %s", resp.Status)
	case len(body) > maxDocument:
		return nil, "", fmt.Errorf("key set larger than %d bytes", maxDocument)
	}
	var ks struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(body, &ks); err != nil || ks.Keys == nil {
		return nil, "", errors.New("key set is not a JSON Web Key Set")
	}
	return body, resp.Header.Get("Content-Type"), nil
}

func (f *fetcher) replay(req *http.Request) *http.Response {
	h := http.Header{}
	if f.ctype != "" {
		h.Set("Content-Type", f.ctype)
	}
	return &http.Response{
		Status: "200 OK", StatusCode: http.StatusOK, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: h, Body: io.NopCloser(bytes.NewReader(f.body)), ContentLength: int64(len(f.body)), Request: req,
	}
}

// loaded reports whether a key set was ever received.
func (f *fetcher) loaded() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.body != nil
}

// mayFetch reports whether a request would reach the issuer now.
func (f *fetcher) mayFetch() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.attempted.IsZero() || f.now().Sub(f.attempted) >= f.interval
}

// stale reports whether the key set is older than maxAge and may be
// fetched again.
func (f *fetcher) stale(maxAge time.Duration) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	now := f.now()
	return f.body != nil && now.Sub(f.fetched) >= maxAge && now.Sub(f.attempted) >= f.interval
}

// keySet is an issuer's keys as go-oidc's verifier uses them: its
// RemoteKeySet (which keeps the keys and refetches on an unknown kid)
// behind the fetcher, made anew when a periodic refresh finds the key set
// changed, so that a key the issuer withdrew stops verifying even when no
// new kid came along to make go-oidc look.
type keySet struct {
	url     string
	client  *http.Client
	f       *fetcher
	refresh time.Duration
	remote  atomic.Pointer[oidc.RemoteKeySet]
}

func newKeySet(url string, base http.RoundTripper, o Options) *keySet {
	f := &fetcher{base: base, interval: o.RefetchInterval, now: o.Now}
	k := &keySet{url: url, f: f, refresh: o.KeyRefresh,
		client: &http.Client{Transport: f, Timeout: o.Timeout}}
	k.remote.Store(k.newRemote())
	return k
}

func (k *keySet) newRemote() *oidc.RemoteKeySet {
	return oidc.NewRemoteKeySet(oidc.ClientContext(context.Background(), k.client), k.url)
}

// probe records, for one verification, whether go-oidc reached the key set
// and what it answered: go-oidc flattens the error, and the difference
// between "no key verifies this" (401) and "the issuer cannot be reached and
// no keys are known" (503) matters.
type probe struct {
	reached bool
	err     error
}

type probeKey struct{}

// VerifySignature implements oidc.KeySet.
func (k *keySet) VerifySignature(ctx context.Context, jwt string) ([]byte, error) {
	if k.f.stale(k.refresh) {
		k.refreshKeys(ctx)
	}
	calls := k.f.calls.Load()
	payload, err := k.remote.Load().VerifySignature(ctx, jwt)
	if err != nil && k.f.calls.Load() == calls && k.f.mayFetch() && ctx.Err() == nil {
		// go-oidc shares a fetch with the verifications waiting for it,
		// and clears it a moment after it ends: a verification in that
		// moment gets the keys of the fetch that just ended instead of
		// fetching. When a fetch is due, a fresh RemoteKeySet makes it;
		// it replaces the old one only if it verified (it then holds the
		// keys), so an issuer that is down leaves the known keys in place.
		fresh := k.newRemote()
		if payload, err = fresh.VerifySignature(ctx, jwt); err == nil {
			k.remote.Store(fresh)
		}
	}
	if p, ok := ctx.Value(probeKey{}).(*probe); ok {
		p.reached, p.err = true, err
	}
	return payload, err
}

// refreshKeys fetches the key set and, when it changed, starts a new
// RemoteKeySet from it. An issuer that cannot be reached keeps the keys
// known.
func (k *keySet) refreshKeys(ctx context.Context) {
	gen := k.f.gen.Load()
	req, err := http.NewRequestWithContext(context.WithoutCancel(ctx), http.MethodGet, k.url, nil)
	if err != nil {
		return
	}
	resp, err := k.client.Do(req)
	if err != nil {
		return
	}
	resp.Body.Close()
	if k.f.gen.Load() != gen {
		k.remote.Store(k.newRemote())
	}
}

// limitBody caps what a discovery document may be.
type limitBody struct{ base http.RoundTripper }

func (l limitBody) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := l.base.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	resp.Body = http.MaxBytesReader(nil, resp.Body, maxDocument)
	return resp, nil
}
