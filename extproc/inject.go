package extproc

import (
	"context"
	"fmt"
	"net/url"
	"slices"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/custos-dev/custos/config"
	"github.com/custos-dev/custos/credentials"
)

// NewInjectors builds the upstream credential injector of every connection
// of cfg that names credentials.
func NewInjectors(cfg *config.Config, o credentials.Options) (map[string]credentials.Injector, error) {
	out := map[string]credentials.Injector{}
	for _, c := range cfg.Connections {
		cr := c.Credentials
		if cr == nil {
			continue
		}
		var spec credentials.Spec
		switch {
		case cr.AzureSharedKey != nil:
			k := cr.AzureSharedKey
			spec.AzureSharedKey = &credentials.AzureSharedKey{Account: k.Account, KeyFile: k.KeyFile, KeyEnv: k.KeyEnv, Service: k.Service}
		case cr.SAS != nil:
			spec.SAS = &credentials.SAS{TokenFile: cr.SAS.TokenFile}
		case cr.OAuthClientCredentials != nil:
			k := cr.OAuthClientCredentials
			spec.OAuthClientCredentials = &credentials.OAuthClientCredentials{TokenURL: k.TokenURL, ClientID: k.ClientID, ClientSecretFile: k.ClientSecretFile, Scope: k.Scope}
		case cr.Bearer != nil:
			spec.Bearer = &credentials.Bearer{TokenFile: cr.Bearer.TokenFile}
		}
		in, err := credentials.New(spec, o)
		if err != nil {
			for _, made := range out {
				made.Close()
			}
			return nil, fmt.Errorf("connections[%s].credentials: %w", c.Name, err)
		}
		out[c.Name] = in
	}
	return out, nil
}

// inject applies the connection's upstream credential to an allowed
// request: over exactly the request the upstream receives (the agent's
// headers less what Check removes, plus what it sets; the upstream path;
// the connection's upstream host), so a signature covers what is sent. An
// injector that fails is the request's failure (503): never forwarded
// without the credential, never with the agent's.
func (p *Pipeline) inject(ctx context.Context, o *outcome, in checkInput) error {
	if o.reply != nil || o.conn == nil {
		return nil
	}
	inj := p.stages.Inject[o.conn.Name]
	if inj == nil {
		return nil
	}
	// What Check will tell Envoy to set and remove, before the credential.
	set, remove := requestHeaderMutations(o, in.rawHeader)
	u := o.conn.UpstreamURL()
	out := credentials.Outgoing{Method: in.req.Method, Scheme: u.Scheme, Host: u.Host, Path: o.v.Path,
		RawQuery: in.req.RawQuery, Headers: map[string]string{}}
	for k, v := range in.rawHeader {
		k = strings.ToLower(k)
		if !strings.HasPrefix(k, ":") && !slices.Contains(remove, k) {
			out.Headers[k] = v
		}
	}
	for _, h := range set {
		out.Headers[strings.ToLower(h.GetHeader().GetKey())] = h.GetHeader().GetValue()
	}
	out.Headers["host"] = u.Host
	m, err := inj.Inject(ctx, out)
	if err != nil {
		return err
	}
	o.mutation = &m
	return nil
}

// applyMutation writes an injected credential's change into Check's OK
// answer (nothing for a denial or no mutation).
func applyMutation(m *credentials.Mutation, resp *authv3.CheckResponse) {
	ok := resp.GetOkResponse()
	if m == nil || ok == nil {
		return
	}
	set := map[string]bool{}
	for _, h := range m.Set {
		k := strings.ToLower(h.Name)
		set[k] = true
		ok.Headers = append(ok.Headers, setHeader(k, h.Value))
	}
	// A header Custos sets is never also removed (Envoy might apply the
	// removal after the set).
	remove := ok.HeadersToRemove[:0]
	for _, k := range ok.HeadersToRemove {
		if !set[k] {
			remove = append(remove, k)
		}
	}
	ok.HeadersToRemove = remove
	for _, k := range m.Remove {
		if k = strings.ToLower(k); !set[k] && !slices.Contains(ok.HeadersToRemove, k) {
			ok.HeadersToRemove = append(ok.HeadersToRemove, k)
		}
	}
	ok.QueryParametersToRemove = append(ok.QueryParametersToRemove, m.RemoveQuery...)
	// Envoy writes query values as given (it expects them URL-encoded): a
	// SAS signature's + / = are encoded here, or the upstream would read a
	// + as a space.
	for _, q := range m.AddQuery {
		ok.QueryParametersToSet = append(ok.QueryParametersToSet, &corev3.QueryParameter{Key: url.QueryEscape(q.Name), Value: url.QueryEscape(q.Value)})
	}
}
