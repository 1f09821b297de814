package credentials_test

import (
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sync"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"

	"github.com/custos-dev/custos/credentials"
)

// agentToken is what the agent presents: a token for Custos, which must
// never reach the upstream.
const agentToken = "Bearer agent-token-for-custos-only"

// injectingProxy stands where the data plane stands: it strips the agent's
// Authorization, asks the Injector over the exact outgoing request,
// applies the Mutation and forwards.
type injectingProxy struct {
	inj   credentials.Injector
	hooks hooks
	base  http.RoundTripper

	mu       sync.Mutex
	errs     []error
	sawAgent bool // the upstream-bound request still had the agent's token
}

func (p *injectingProxy) RoundTrip(r *http.Request) (*http.Response, error) {
	out := r.Clone(r.Context())
	out.Header.Del("Authorization")
	if p.hooks.before != nil {
		p.hooks.before(out)
	}
	m, err := p.inj.Inject(r.Context(), credentials.OutgoingFromHTTP(out))
	if err != nil {
		p.mu.Lock()
		p.errs = append(p.errs, err)
		p.mu.Unlock()
		return nil, err
	}
	m.ApplyHTTP(out)
	if p.hooks.after != nil {
		p.hooks.after(out)
	}
	if out.Header.Get("Authorization") == agentToken {
		p.mu.Lock()
		p.sawAgent = true
		p.mu.Unlock()
	}
	return p.base.RoundTrip(out)
}

func (p *injectingProxy) errors() []error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]error(nil), p.errs...)
}

// hooks change the upstream-bound request before signing (the signature
// covers the change) or after it (what a data plane must never do).
type hooks struct {
	before, after func(*http.Request)
}

// startProxy serves a reverse proxy to upstream (http://HOST:PORT) on
// loopback through an injectingProxy.
func startProxy(t testing.TB, upstream string, inj credentials.Injector, h hooks) (*httptest.Server, *injectingProxy) {
	t.Helper()
	target, err := url.Parse(upstream)
	if err != nil {
		t.Fatal(err)
	}
	ip := &injectingProxy{inj: inj, hooks: h, base: http.DefaultTransport}
	rp := &httputil.ReverseProxy{
		Rewrite:   func(pr *httputil.ProxyRequest) { pr.SetURL(target) },
		Transport: ip,
		ErrorHandler: func(w http.ResponseWriter, _ *http.Request, err error) {
			http.Error(w, "injection failed", http.StatusServiceUnavailable)
		},
	}
	srv := httptest.NewServer(rp)
	t.Cleanup(srv.Close)
	t.Cleanup(func() {
		if ip.sawAgent {
			t.Error("the agent's Authorization reached the upstream")
		}
	})
	return srv, ip
}

// agentAuth is the agent SDK's policy that presents its token for Custos
// (over plain HTTP to the test proxy, which azcore's own bearer policy
// refuses to do).
type agentAuth struct{}

func (agentAuth) Do(req *policy.Request) (*http.Response, error) {
	req.Raw().Header.Set("Authorization", agentToken)
	return req.Next()
}

// agentOptions are the SDK client options of an agent behind Custos: its
// token for Custos, and no retries (a refused signature must show at once).
func agentOptions() policy.ClientOptions {
	return policy.ClientOptions{
		PerCallPolicies: []policy.Policy{agentAuth{}},
		Retry:           policy.RetryOptions{MaxRetries: -1},
	}
}
