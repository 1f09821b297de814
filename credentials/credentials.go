// Package credentials is what Custos presents upstream on a connection's
// behalf (credential injection): Azure Storage SharedKey signatures, SAS
// tokens, OAuth 2.0 client-credentials tokens of Custos' own identity and
// static bearer tokens. The agent's own credentials never go on: every
// Mutation removes its Authorization (or replaces it) and any SAS
// parameters it put in the query.
//
// An Injector is built once per connection from its Spec and called after
// the decision, over exactly the request the upstream will receive
// (Outgoing): a SharedKey signature covers the method, the path, the query
// and most headers, so a data plane that changed any of them after Inject
// would be refused by the service. The azurite_e2e tests prove that order
// against the real Azure Storage emulator with the real Azure SDK for Go.
//
// Secrets come from files (re-read when they change) or environment
// variables. They are never logged, never put in an error, and neither a
// Spec nor an Injector prints one: their String and GoString say which
// kind of credential and where it comes from, never what it is.
package credentials

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"
)

// Kind names a credential scheme as the configuration spells it.
type Kind string

// The credential kinds of connections[].credentials.
const (
	KindAzureSharedKey         Kind = "azure_shared_key"
	KindSAS                    Kind = "sas"
	KindOAuthClientCredentials Kind = "oauth_client_credentials"
	KindBearer                 Kind = "bearer"
)

// Spec is one connection's credentials, as connections[].credentials spells
// them. Exactly one of the four is set. It holds where secrets are, never a
// secret.
type Spec struct {
	AzureSharedKey         *AzureSharedKey         `json:"azure_shared_key,omitempty" yaml:"azure_shared_key,omitempty"`
	SAS                    *SAS                    `json:"sas,omitempty" yaml:"sas,omitempty"`
	OAuthClientCredentials *OAuthClientCredentials `json:"oauth_client_credentials,omitempty" yaml:"oauth_client_credentials,omitempty"`
	Bearer                 *Bearer                 `json:"bearer,omitempty" yaml:"bearer,omitempty"`
}

// AzureSharedKey signs each request with a storage account key.
type AzureSharedKey struct {
	// Account is the storage account name.
	Account string `json:"account" yaml:"account"`
	// KeyFile holds the base64 account key; KeyEnv names an environment
	// variable that does. Exactly one is set.
	KeyFile string `json:"key_file,omitempty" yaml:"key_file,omitempty"`
	KeyEnv  string `json:"key_env,omitempty" yaml:"key_env,omitempty"`
	// Service picks the signature variant: "table" signs with SharedKey for
	// Table, "blob", "queue" and "file" with SharedKey. Empty: table when
	// the upstream host is ACCOUNT.table.…, or when it is not a service
	// host (Azurite, a custom domain) and the request speaks OData (the
	// Table service's headers); SharedKey otherwise.
	Service string `json:"service,omitempty" yaml:"service,omitempty"`
}

// SAS appends a shared access signature to every request's query.
type SAS struct {
	// TokenFile holds the SAS token (the query string, with or without a
	// leading '?').
	TokenFile string `json:"token_file" yaml:"token_file"`
}

// OAuthClientCredentials gets a token for Custos' own identity with the
// client-credentials grant (RFC 6749 section 4.4).
type OAuthClientCredentials struct {
	// TokenURL is the token endpoint, e.g.
	// https://login.microsoftonline.com/TENANT/oauth2/v2.0/token.
	TokenURL string `json:"token_url" yaml:"token_url"`
	// ClientID is Custos' client (application) id.
	ClientID string `json:"client_id" yaml:"client_id"`
	// ClientSecretFile holds the client secret.
	ClientSecretFile string `json:"client_secret_file" yaml:"client_secret_file"`
	// Scope is the upstream's audience, e.g. https://storage.azure.com/.default.
	Scope string `json:"scope" yaml:"scope"`
}

// Bearer presents a static token from a file, such as a Kubernetes
// service-account token, re-read when the file changes.
type Bearer struct {
	// TokenFile holds the token.
	TokenFile string `json:"token_file" yaml:"token_file"`
}

// Kind is the one credential kind the Spec sets, "" when none is.
func (s Spec) Kind() Kind {
	switch {
	case s.AzureSharedKey != nil:
		return KindAzureSharedKey
	case s.SAS != nil:
		return KindSAS
	case s.OAuthClientCredentials != nil:
		return KindOAuthClientCredentials
	case s.Bearer != nil:
		return KindBearer
	}
	return ""
}

// String says which credential and where its secret comes from. A Spec
// holds no secret, so this is only for symmetry with Injector.
func (s Spec) String() string {
	switch {
	case s.AzureSharedKey != nil:
		k := s.AzureSharedKey
		return fmt.Sprintf("azure_shared_key{account: %s, key: %s}", k.Account, source(k.KeyFile, k.KeyEnv))
	case s.SAS != nil:
		return fmt.Sprintf("sas{token: %s}", source(s.SAS.TokenFile, ""))
	case s.OAuthClientCredentials != nil:
		o := s.OAuthClientCredentials
		return fmt.Sprintf("oauth_client_credentials{token_url: %s, client_id: %s, client_secret: %s, scope: %s}",
			o.TokenURL, o.ClientID, source(o.ClientSecretFile, ""), o.Scope)
	case s.Bearer != nil:
		return fmt.Sprintf("bearer{token: %s}", source(s.Bearer.TokenFile, ""))
	}
	return "none"
}

// GoString is String, so that %#v prints no more than %v.
func (s Spec) GoString() string { return "credentials.Spec{" + s.String() + "}" }

func source(file, env string) string {
	if file != "" {
		return "file " + file
	}
	if env != "" {
		return "env " + env
	}
	return "unset"
}

// Validate reports every problem with the Spec, each naming its key below
// connections[].credentials. It does not read the secrets.
func (s Spec) Validate() error {
	n := 0
	for _, set := range []bool{s.AzureSharedKey != nil, s.SAS != nil, s.OAuthClientCredentials != nil, s.Bearer != nil} {
		if set {
			n++
		}
	}
	if n != 1 {
		return errors.New("credentials: exactly one of azure_shared_key, sas, oauth_client_credentials, bearer must be set")
	}
	var errs []error
	bad := func(key, msg string) { errs = append(errs, fmt.Errorf("credentials.%s: %s", key, msg)) }
	switch {
	case s.AzureSharedKey != nil:
		k := s.AzureSharedKey
		if !validAccount(k.Account) {
			bad("azure_shared_key.account", "must be 3 to 64 lower-case letters and digits")
		}
		if (k.KeyFile == "") == (k.KeyEnv == "") {
			bad("azure_shared_key", "exactly one of key_file, key_env must be set")
		}
		switch k.Service {
		case "", "blob", "queue", "file", "table":
		default:
			bad("azure_shared_key.service", "must be blob, queue, file or table")
		}
	case s.SAS != nil:
		if s.SAS.TokenFile == "" {
			bad("sas.token_file", "is required")
		}
	case s.OAuthClientCredentials != nil:
		o := s.OAuthClientCredentials
		if !strings.HasPrefix(o.TokenURL, "https://") && !strings.HasPrefix(o.TokenURL, "http://") {
			bad("oauth_client_credentials.token_url", "must be an http(s) URL")
		}
		if o.ClientID == "" {
			bad("oauth_client_credentials.client_id", "is required")
		}
		if o.ClientSecretFile == "" {
			bad("oauth_client_credentials.client_secret_file", "is required")
		}
		if o.Scope == "" {
			bad("oauth_client_credentials.scope", "is required")
		}
	case s.Bearer != nil:
		if s.Bearer.TokenFile == "" {
			bad("bearer.token_file", "is required")
		}
	}
	return errors.Join(errs...)
}

// validAccount: storage account names are 3 to 24 lower-case letters and
// digits; Azurite's custom accounts may be longer, so up to 64.
func validAccount(a string) bool {
	if len(a) < 3 || len(a) > 64 {
		return false
	}
	for i := 0; i < len(a); i++ {
		c := a[i]
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') {
			return false
		}
	}
	return true
}

// Options tune an Injector; the zero value is the production setting.
type Options struct {
	// Logger receives what happens (token refreshes and their failures,
	// credential files reloaded), never a secret. Default: slog.Default().
	Logger *slog.Logger
	// Now is the clock (default time.Now).
	Now func() time.Time
	// HTTPClient calls the token endpoint (default: a client with a 30s
	// timeout and no cookies).
	HTTPClient *http.Client
	// ReloadInterval is the least time between two checks of a credential
	// file for change (default 1s; negative: check on every request).
	ReloadInterval time.Duration
	// Getenv reads environment variables (default os.Getenv).
	Getenv func(string) string
	// RefreshBefore is how long before a token's expiry its refresh starts
	// (default 5m, at most half the token's lifetime).
	RefreshBefore time.Duration
	// RetryAfter is how long a failed token refresh waits before the next
	// attempt (default 5s).
	RetryAfter time.Duration
}

func (o Options) withDefaults() Options {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.HTTPClient == nil {
		o.HTTPClient = &http.Client{Timeout: 30 * time.Second}
	}
	if o.ReloadInterval == 0 {
		o.ReloadInterval = time.Second
	}
	if o.Getenv == nil {
		o.Getenv = osGetenv
	}
	if o.RefreshBefore <= 0 {
		o.RefreshBefore = 5 * time.Minute
	}
	if o.RetryAfter <= 0 {
		o.RetryAfter = 5 * time.Second
	}
	return o
}

// Outgoing is exactly the request the upstream will receive, after every
// change the data plane makes to it (prefix rewrite, header removal): what
// a SharedKey signature covers.
type Outgoing struct {
	// Method is the HTTP method.
	Method string
	// Scheme and Host are the upstream's (Host is its authority, host[:port],
	// as the upstream receives it in Host/:authority).
	Scheme, Host string
	// Path is the path as it goes on the wire, percent-encoded, without the
	// query: the route's prefix already replaced by the upstream's base
	// path (for Azurite's path-style URLs, it starts with /ACCOUNT).
	Path string
	// RawQuery is the query as it goes on the wire, without the '?'.
	RawQuery string
	// Headers are the headers the upstream receives, names lower-case,
	// repeats joined with ",". Content-Length is here when the request
	// carries one (absent for a chunked body).
	Headers map[string]string
}

// Header is one header to set.
type Header struct {
	// Name is lower-case.
	Name  string
	Value string
}

// Param is one query parameter, decoded.
type Param struct {
	Name, Value string
}

// Mutation is what the data plane changes in the request before it goes
// upstream. It never names the agent's Authorization as something to keep:
// either Set replaces it or Remove drops it.
type Mutation struct {
	// Set are headers to set, replacing whatever the agent sent.
	Set []Header
	// Remove are headers to remove (lower-case). No name is both in Set and
	// in Remove: a data plane may apply them in either order.
	Remove []string
	// RemoveQuery are query parameter names to remove (as the agent spelled
	// them): SAS parameters the agent sent.
	RemoveQuery []string
	// AddQuery are query parameters to add after RemoveQuery (the SAS).
	AddQuery []Param
}

// String names what changes without a value: a Mutation carries secrets.
func (m Mutation) String() string {
	var b strings.Builder
	b.WriteString("set[")
	for i, h := range m.Set {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(h.Name)
	}
	b.WriteString("] remove[")
	b.WriteString(strings.Join(m.Remove, " "))
	b.WriteString("] remove_query[")
	b.WriteString(strings.Join(m.RemoveQuery, " "))
	b.WriteString("] add_query[")
	for i, p := range m.AddQuery {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(p.Name)
	}
	b.WriteString("]")
	return b.String()
}

// GoString is String, so that %#v prints no secret either.
func (m Mutation) GoString() string { return "credentials.Mutation{" + m.String() + "}" }

// Injector presents a connection's upstream credentials. It is safe for
// concurrent use.
type Injector interface {
	// Inject returns what to change in req so that it carries Custos'
	// credentials and none of the agent's. An error means the request must
	// not go upstream (fail closed); it never holds a secret.
	Inject(ctx context.Context, req Outgoing) (Mutation, error)
	// Kind is the credential kind.
	Kind() Kind
	// Close stops background work (token refreshes). Inject after Close
	// still works from what is cached or on disk.
	Close() error
	// String says which credential, never what it is.
	String() string
}

// New builds the Injector for spec. It reads the secret once to fail early
// (a missing file, a key that is not base64), except for OAuth, whose first
// token is fetched on the first request.
func New(spec Spec, opts Options) (Injector, error) {
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	opts = opts.withDefaults()
	switch spec.Kind() {
	case KindAzureSharedKey:
		return newSharedKey(*spec.AzureSharedKey, opts)
	case KindSAS:
		return newSAS(*spec.SAS, opts)
	case KindOAuthClientCredentials:
		return newOAuth(*spec.OAuthClientCredentials, opts)
	default:
		return newBearer(*spec.Bearer, opts)
	}
}

// agentCredentials are the agent's credential headers, removed from every
// injected request whether or not Outgoing shows them (a data plane may
// hand over headers with credentials already taken out). Authorization is
// among them unless the injector sets its own.
func agentCredentials(setsAuthorization bool) []string {
	if setsAuthorization {
		return []string{"proxy-authorization"}
	}
	return []string{"authorization", "proxy-authorization"}
}
