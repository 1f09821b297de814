// Package config loads and validates the Custos configuration file.
//
// Custos is an identity-aware checkpoint for autonomous agents: Envoy asks it,
// through the ext_authz and ext_proc gRPC services, whether each request an
// agent makes to a protected connection may proceed, and how its responses are
// masked. This package turns the YAML configuration file into a [Config]:
// where Custos listens, which token issuers it trusts, where the policy bundle
// lives, which upstream connections it protects, and how approvals, masking,
// auditing and the local development mode behave.
//
// Parsing is strict. Unknown keys, values of the wrong YAML type and duplicate
// keys are errors at every level, and so are semantic mistakes such as an
// upstream that is not an http or https URL. [Parse] and [Load] do not stop at
// the first problem: they report every problem in the file at once as
// [Errors], each [Error] naming the key path (for example
// connections[1].upstream) and the line of the file it came from.
//
// The input is bounded, so that a hostile file is refused in bounded time and
// memory: [Load] reads only a regular file of at most [MaxFileSize] bytes, a
// document may have at most [MaxNodes] YAML nodes with its aliases expanded,
// and at most [MaxErrors] problems are listed, each quoting at most 64 bytes
// of a value.
package config

import (
	"net"
	"net/url"
	"slices"
	"strings"
	"time"
)

// Default values applied to keys the configuration file leaves out.
const (
	// DefaultGRPCAddr is the default address of the ext_authz, ext_proc and
	// gRPC health listener (listen.grpc).
	DefaultGRPCAddr = "127.0.0.1:9000"
	// DefaultXDSAddr is the default address of the aggregated discovery
	// service listener (listen.xds).
	DefaultXDSAddr = "127.0.0.1:18000"
	// DefaultHTTPAddr is the default address of the HTTP listener serving the
	// approvals API and page, /metrics, /healthz and /readyz (listen.http).
	DefaultHTTPAddr = "127.0.0.1:9090"
	// DefaultDataplaneAddr is the default address of the data plane listener
	// used by `custos dev` and `custos dataplane` (listen.dataplane).
	DefaultDataplaneAddr = "127.0.0.1:10000"
	// DefaultApprovalTimeout is the default approvals.hold.
	DefaultApprovalTimeout = 2 * time.Minute
	// DefaultApprovalExpiry is the default approvals.expiry.
	DefaultApprovalExpiry = 24 * time.Hour
	// MaxApprovalExpiry is the largest approvals.expiry accepted.
	MaxApprovalExpiry = 30 * 24 * time.Hour
	// MaxApprovalTimeout is the largest approvals.timeout accepted.
	MaxApprovalTimeout = 24 * time.Hour
	// MaxHoldTimeout is the largest approvals.timeout in hold mode: a held
	// request keeps its ext_proc message open, and Envoy caps
	// max_message_timeout at one hour (the hold plus Custos' margin).
	MaxHoldTimeout = 59 * time.Minute
	// DefaultAuditDir is the default audit.dir.
	DefaultAuditDir = "./data/audit"
	// DefaultClockSkew is the default identity.issuers[].clock_skew: how far
	// a token's exp, nbf and iat may be off the local clock.
	DefaultClockSkew = 60 * time.Second
	// MaxClockSkew is the largest clock_skew accepted.
	MaxClockSkew = 5 * time.Minute
	// DefaultGroupsClaim and DefaultRolesClaim are the default claim names
	// of identity.issuers[].claims (Entra ID's).
	DefaultGroupsClaim = "groups"
	DefaultRolesClaim  = "roles"
	// DiscoveryPath is the path every discovery_url ends with (OpenID
	// Connect Discovery 1.0).
	DiscoveryPath = "/.well-known/openid-configuration"
)

// Algorithms lists the token signature algorithms an issuer may allow
// (identity.issuers[].algorithms): asymmetric only. "none" and the HMAC
// algorithms (HS256, HS384, HS512) are never accepted: a verifier that knows
// only public keys must not accept a token "signed" with one.
var Algorithms = []string{"RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "PS256", "PS384", "PS512", "EdDSA"}

// DefaultAlgorithms are the algorithms allowed when an issuer names none.
var DefaultAlgorithms = []string{"RS256", "ES256"}

// Connection kinds (connections[].kind).
const (
	// KindHTTP is a plain HTTP API; it is the default kind.
	KindHTTP = "http"
	// KindKubernetes is a Kubernetes API server.
	KindKubernetes = "kubernetes"
	// KindAzure is an Azure REST API such as Azure Resource Manager.
	KindAzure = "azure"
	// KindCosmos is an Azure Cosmos DB account.
	KindCosmos = "cosmos"
	// KindSQLHTTP is a SQL database reached over HTTP; only this kind takes
	// dialect and statement_from.
	KindSQLHTTP = "sql-http"
	// KindGraphQL is a GraphQL API.
	KindGraphQL = "graphql"
)

// Policy modes (connections[].policy_mode).
const (
	// PolicyModeEnforce applies policy decisions; it is the default.
	PolicyModeEnforce = "enforce"
	// PolicyModeShadow evaluates and records policy decisions without
	// applying them.
	PolicyModeShadow = "shadow"
)

// SQL dialects (connections[].dialect, kind sql-http only).
const (
	// DialectPostgres is the PostgreSQL dialect; it is the default.
	DialectPostgres = "postgres"
	// DialectSQLite is the SQLite dialect.
	DialectSQLite = "sqlite"
)

// Approval modes (approvals.mode).
const (
	// ApprovalModeHold holds the request open until it is approved, denied or
	// times out; it is the default.
	ApprovalModeHold = "hold"
	// ApprovalModeAsync answers the request at once and lets the approval be
	// decided later.
	ApprovalModeAsync = "async"
)

// Kinds lists the valid connection kinds.
var Kinds = []string{KindHTTP, KindKubernetes, KindAzure, KindCosmos, KindSQLHTTP, KindGraphQL}

// PolicyModes lists the valid connection policy modes.
var PolicyModes = []string{PolicyModeEnforce, PolicyModeShadow}

// Dialects lists the valid SQL dialects.
var Dialects = []string{DialectPostgres, DialectSQLite}

// ApprovalModes lists the valid approval modes.
var ApprovalModes = []string{ApprovalModeHold, ApprovalModeAsync}

// Entities lists, sorted, the names of the sensitive entities the masking
// engine knows and that masking profiles may name.
var Entities = []string{
	"aba",
	"account",
	"azure_key",
	"bearer",
	"card",
	"email",
	"iban",
	"phone",
	"private_key",
	"sas",
	"ssn",
}

// BuiltinProfiles lists, sorted, the names of the built-in masking profiles.
// They cannot be redefined under masking.profiles.
var BuiltinProfiles = []string{"all", "pci", "pii", "secrets"}

// BuiltinProfile reports whether name is a built-in masking profile.
func BuiltinProfile(name string) bool {
	return slices.Contains(BuiltinProfiles, name)
}

// KnownEntity reports whether name is one of [Entities].
func KnownEntity(name string) bool {
	return slices.Contains(Entities, name)
}

// Config is a parsed and validated Custos configuration.
type Config struct {
	Listen      Listen
	Identity    Identity
	Policy      Policy
	Connections []Connection
	Approvals   Approvals
	Masking     Masking
	Audit       Audit
	Dev         *Dev // nil when the file has no dev: block
}

// Listen holds the host:port addresses Custos listens on.
type Listen struct {
	// GRPC serves ext_authz, ext_proc and gRPC health.
	GRPC string
	// XDS serves the aggregated discovery service (ADS) to Envoy.
	XDS string
	// HTTP serves the approvals API and page, /metrics, /healthz and /readyz.
	HTTP string
	// Dataplane is the data plane listener, used only by `custos dev` and
	// `custos dataplane`.
	Dataplane string
	// TLS, when set, makes the gRPC and ADS listeners require mutual TLS.
	TLS *TLS
	// Insecure serves gRPC and ADS in plain text: an explicit choice that
	// `custos serve` warns about.
	Insecure bool
	// AgentTLS, when set, makes the listener agents connect to serve TLS.
	AgentTLS *AgentTLS
}

// AgentTLS is the TLS of the listener agents connect to (listen.agent_tls).
type AgentTLS struct {
	// CertFile and KeyFile are the listener's certificate and key, read
	// again when they change.
	CertFile, KeyFile string
	// ClientCAFile, when set, asks agents for client certificates from that
	// CA; connections say whether they require one (client_cert).
	ClientCAFile string
}

// Client certificate modes (connections[].client_cert).
const (
	ClientCertNone     = "none"
	ClientCertOptional = "optional"
	ClientCertRequired = "required"
)

// ClientCertModes lists the valid connections[].client_cert values.
var ClientCertModes = []string{ClientCertNone, ClientCertOptional, ClientCertRequired}

// Equal reports whether l and o listen the same way: addresses and TLS
// settings.
func (l Listen) Equal(o Listen) bool {
	if l.GRPC != o.GRPC || l.XDS != o.XDS || l.HTTP != o.HTTP || l.Dataplane != o.Dataplane || l.Insecure != o.Insecure {
		return false
	}
	if (l.TLS == nil) != (o.TLS == nil) {
		return false
	}
	if (l.AgentTLS == nil) != (o.AgentTLS == nil) || (l.AgentTLS != nil && *l.AgentTLS != *o.AgentTLS) {
		return false
	}
	return l.TLS == nil || (l.TLS.CertFile == o.TLS.CertFile && l.TLS.KeyFile == o.TLS.KeyFile &&
		l.TLS.ClientCAFile == o.TLS.ClientCAFile && slices.Equal(l.TLS.AllowedClients, o.TLS.AllowedClients))
}

// TLS is mutual TLS between the data plane and Custos (listen.tls).
type TLS struct {
	// CertFile and KeyFile are Custos' server certificate and key.
	CertFile string
	KeyFile  string
	// ClientCAFile is the CA whose client certificates are accepted.
	ClientCAFile string
	// AllowedClients are the client identities accepted (URI SANs such as
	// spiffe://custos.local/envoy, or DNS SANs); empty accepts any
	// certificate the CA issued.
	AllowedClients []string
}

// Identity lists the token issuers Custos trusts.
type Identity struct {
	Issuers []Issuer
}

// Issuer is a trusted token issuer and the audiences accepted from it.
type Issuer struct {
	// Issuer is the issuer URL, compared exactly with the token's iss claim
	// and with the issuer of the discovery document.
	Issuer string
	// Audiences are the accepted values of the token's aud claim.
	Audiences []string
	// DiscoveryURL is the URL of the issuer's OpenID Connect discovery
	// document when it is not Issuer + DiscoveryPath (Entra ID's v1 issuer
	// https://sts.windows.net/TENANT/ publishes it under
	// https://login.microsoftonline.com/TENANT/); "" for the standard place.
	DiscoveryURL string
	// Algorithms are the signature algorithms accepted from this issuer,
	// from [Algorithms]; [DefaultAlgorithms] when the file names none.
	Algorithms []string
	// ClockSkew is how far exp, nbf and iat may be off the local clock;
	// [DefaultClockSkew] when the file leaves it out.
	ClockSkew time.Duration
	// Claims names the claims that carry groups and roles.
	Claims ClaimNames
	// GroupNames maps group ids (Entra object ids) to readable names for
	// policy and audit.
	GroupNames map[string]string
}

// ClaimNames names the claims a principal's groups and roles are read from
// (identity.issuers[].claims). A dotted name such as realm_access.roles is a
// path into nested objects.
type ClaimNames struct {
	// Groups defaults to [DefaultGroupsClaim].
	Groups string
	// Roles defaults to [DefaultRolesClaim].
	Roles string
}

// Policy locates the policy bundle.
type Policy struct {
	// Bundle is the policy bundle: a directory, an http(s) URL of an OPA
	// bundle server's bundle, or [BuiltinBundle]; empty means none (every
	// request for a configured connection is allowed).
	Bundle string
	// PollInterval is how often the bundle is checked for a new revision
	// ([DefaultPolicyPollInterval] when the file leaves it out).
	PollInterval time.Duration
	// VerificationKeyFile is the PEM public key (or HMAC secret) signed
	// bundles are verified with; with it, unsigned bundles are refused.
	VerificationKeyFile string
	// VerificationKeyID is the key's id in the bundle signature ("default").
	VerificationKeyID string
	// VerificationAlgorithm is the signature algorithm (RS256).
	VerificationAlgorithm string
	// DecisionCache is how many decisions each bundle revision keeps, by
	// the parts of the input its Rego reads ([DefaultDecisionCache] when
	// the file leaves it out; 0 keeps none).
	DecisionCache int
}

// BuiltinBundle names the default policy bundle built into the binary.
const BuiltinBundle = "builtin:default"

// Policy defaults and bounds.
const (
	DefaultPolicyPollInterval = 5 * time.Second
	MinPolicyPollInterval     = 100 * time.Millisecond
	MaxPolicyPollInterval     = time.Hour
	DefaultDecisionCache      = 4096
	MaxDecisionCache          = 1 << 20
)

// BundleAlgorithms are the bundle signature algorithms OPA verifies.
var BundleAlgorithms = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "HS256", "HS384", "HS512"}

// Connection is an upstream service protected by Custos. Requests reach it
// under the /NAME/ prefix of the data plane listener (the prefix is stripped)
// or by one of its Hosts in :authority.
type Connection struct {
	// Name identifies the connection and is its URL prefix.
	Name string
	// Upstream is the base URL of the upstream service.
	Upstream string
	// Hosts are additional lower-case host names, optionally with :port,
	// matched against :authority.
	Hosts []string
	// Kind is one of [Kinds]; it defaults to [KindHTTP].
	Kind string
	// Masking is the masking profile name: empty, built-in or defined under
	// masking.profiles.
	Masking string
	// PolicyMode is one of [PolicyModes]; it defaults to [PolicyModeEnforce].
	PolicyMode string
	// ForwardToken forwards the agent's bearer token to the upstream.
	ForwardToken bool
	// Labels are free-form key/value labels available to policy.
	Labels map[string]string
	// Dialect is the SQL dialect, only for kind sql-http; it defaults to
	// [DialectPostgres] for that kind.
	Dialect string
	// AuditOnFailure overrides audit.on_failure for this connection ("" for
	// the global value).
	AuditOnFailure string
	// Credentials is what Custos presents upstream instead of the agent's
	// credentials (nil: nothing is injected).
	Credentials *Credentials
	// ClientCert is one of [ClientCertModes] (default none): whether an
	// agent's verified client certificate (listen.agent_tls.client_ca_file)
	// is a way in for this connection, and whether it is required.
	ClientCert string
	// StatementFrom says where a sql-http request carries its statement:
	// json:POINTER, query:PARAM, form:PARAM or body. Only for kind sql-http.
	StatementFrom string

	upstreamURL *url.URL
}

// UpstreamURL returns the parsed upstream (valid after Parse). It returns a
// copy, or nil for a Connection that did not come from Parse.
func (c Connection) UpstreamURL() *url.URL {
	if c.upstreamURL == nil {
		return nil
	}
	u := *c.upstreamURL
	return &u
}

// Credentials is a connection's upstream credential: exactly one of the
// fields is set. Secrets come from files or environment variables, never
// inline.
type Credentials struct {
	AzureSharedKey         *AzureSharedKey
	SAS                    *SASToken
	OAuthClientCredentials *OAuthClientCredentials
	Bearer                 *BearerToken
}

// AzureSharedKey signs each request with a storage account key.
type AzureSharedKey struct {
	Account, KeyFile, KeyEnv string
	// Service is "", blob, queue, file or table: the signature variant
	// ("" picks it from the host and the request).
	Service string
}

// SASToken appends a shared access signature from a file to the query.
type SASToken struct{ TokenFile string }

// OAuthClientCredentials gets Custos' own token for the upstream.
type OAuthClientCredentials struct {
	TokenURL, ClientID, ClientSecretFile, Scope string
}

// BearerToken presents a static token from a file.
type BearerToken struct{ TokenFile string }

// Approvals configures human approval of requests.
type Approvals struct {
	// Mode is one of [ApprovalModes]; it defaults to [ApprovalModeHold].
	Mode string
	// Timeout is approvals.hold (approvals.timeout is its older name): how
	// long a request is held for its approval before the agent is told
	// approval_required.
	Timeout time.Duration
	// Expiry is how long an approval stays pending for a later retry
	// (default [DefaultApprovalExpiry]).
	Expiry time.Duration
	// Store is where approvals are kept: a postgres:// URL, or a file for
	// the embedded store ("" means approvals.db beside audit.dir).
	Store string
	// Webhooks are told about every approval request and resolution.
	Webhooks []Webhook
	// UI is the approvers' page's sign-in (nil: the page is on only with
	// the dev issuer).
	UI *ApprovalsUI

	holdKey string // the key the hold came from, for messages
}

// ApprovalsUI is how approvers sign in to /ui/approvals: the OpenID
// Connect issuer (authorization code with PKCE), the page's client at it,
// and the page's own origin as browsers reach it.
type ApprovalsUI struct {
	Issuer, ClientID, ClientSecretFile, BaseURL string
}

// Webhook is an approvals webhook: where to post and the HMAC secret that
// signs each post (from a file or an environment variable).
type Webhook struct {
	URL, SecretFile, SecretEnv string
}

// Masking configures the masking engine and the user-defined profiles.
type Masking struct {
	// Profiles maps a profile name to its definition.
	Profiles map[string]Profile
	// Module is a WASM module implementing docs/masking-abi.md that
	// replaces the built-in engine; "" for the built-in one.
	Module string
	// HMACKeyFile or HMACKeyEnv hold the key of the hmac operator.
	HMACKeyFile, HMACKeyEnv string
	// PoolSize bounds the engine instances alive at once (0: one per CPU).
	PoolSize int
	// CallTimeout bounds each call into the engine (0: the engine's
	// default, 2s).
	CallTimeout time.Duration
}

// Masking operators.
var Operators = []string{"redact", "last4", "hmac", "null"}

// Profile is a user-defined masking profile.
type Profile struct {
	// Entities are the entity names the profile masks, from [Entities].
	Entities []string
	// Operators maps an entity (or "*") to its operator, from [Operators];
	// redact when absent.
	Operators map[string]string
	// AccountFields are the field names whose values are account numbers
	// (case-insensitive); empty means the engine's defaults.
	AccountFields []string
	// IgnoreFields maps a field name to the entities not detected in its
	// values ({order_id: [card]}).
	IgnoreFields map[string][]string
	// Fields mask every value at a JSON path.
	Fields []FieldRule
	// Patterns are custom detectors (Go RE2 syntax).
	Patterns []Pattern
	// BestEffort lets a body the engine cannot read pass unmasked (strict,
	// the default, refuses it).
	BestEffort bool
}

// FieldRule masks every value at Path, a JSON pointer whose segments may be
// "*".
type FieldRule struct {
	Path, Entity, Operator string
}

// Pattern is a custom masking detector.
type Pattern struct {
	Name, Regex, Operator string
}

// Audit configures the audit log.
type Audit struct {
	// Dir is the directory audit records are written to.
	Dir string
	// SigningKeyFile is the checkpoint signing key (0600, kept apart from
	// Dir); `custos dev` makes one on first run.
	SigningKeyFile string
	// PreviousSigningKeyFile, during a key rotation, is the key that signed
	// the log so far: Custos hands the log over with a checkpoint both keys
	// sign, so verify follows the chain.
	PreviousSigningKeyFile string
	// Durability is one of [Durabilities] (default [DurabilityBeforeUpstream]).
	Durability string
	// OnFailure is one of [OnFailures] (default [OnFailureBlock]): whether a
	// request whose decision cannot be recorded is refused.
	OnFailure string
	// Kafka ships the log to Kafka topics when set.
	Kafka *AuditKafka
}

// AuditKafka configures shipping the audit log to Kafka.
type AuditKafka struct {
	Brokers          []string
	EventsTopic      string
	CheckpointsTopic string
	// TLS, when set, connects to the brokers over TLS.
	TLS *KafkaTLS
}

// KafkaTLS is the TLS of the Kafka client: the CA that signs the brokers'
// certificates and, for mutual TLS, the client's certificate and key.
type KafkaTLS struct {
	CAFile, CertFile, KeyFile string
}

// Audit values.
const (
	DurabilityBeforeUpstream = "before_upstream"
	DurabilityBeforeResponse = "before_response"
	OnFailureBlock           = "block"
	OnFailureAllow           = "allow"
	DefaultEventsTopic       = "custos.audit.events"
	DefaultCheckpointsTopic  = "custos.audit.checkpoints"
)

// Durabilities and OnFailures list the valid audit.durability and
// audit.on_failure values.
var (
	Durabilities = []string{DurabilityBeforeUpstream, DurabilityBeforeResponse}
	OnFailures   = []string{OnFailureBlock, OnFailureAllow}
)

// Dev configures the local development mode.
type Dev struct {
	// Issuer enables the built-in development token issuer.
	Issuer bool
	// DemoUpstream is the host:port of the demo upstream; empty means none.
	DemoUpstream string
	// DemoWarehouse is the host:port of the SQL-over-HTTP demo (a SQLite
	// database of the same customers, POST /query); empty means none.
	DemoWarehouse string
}

// Default returns the configuration used for every key a file leaves out:
// default listen addresses, hold approvals with a 5m timeout, the default
// audit directory, and no issuers, connections or dev block.
func Default() *Config {
	return &Config{
		Listen: Listen{
			GRPC:      DefaultGRPCAddr,
			XDS:       DefaultXDSAddr,
			HTTP:      DefaultHTTPAddr,
			Dataplane: DefaultDataplaneAddr,
		},
		Approvals: Approvals{
			Mode:    ApprovalModeHold,
			Timeout: DefaultApprovalTimeout,
			Expiry:  DefaultApprovalExpiry,
		},
		Policy: Policy{PollInterval: DefaultPolicyPollInterval, DecisionCache: DefaultDecisionCache},
		Audit:  Audit{Dir: DefaultAuditDir, Durability: DurabilityBeforeUpstream, OnFailure: OnFailureBlock},
	}
}

// Connection returns the connection called name.
func (c *Config) Connection(name string) (Connection, bool) {
	for _, conn := range c.Connections {
		if conn.Name == name {
			return conn, true
		}
	}
	return Connection{}, false
}

// ConnectionForHost returns the connection that lists host among its Hosts.
// Host names are compared case-insensitively and a :port suffix, on either
// side, is ignored.
func (c *Config) ConnectionForHost(host string) (Connection, bool) {
	h := hostOnly(host)
	if h == "" {
		return Connection{}, false
	}
	for _, conn := range c.Connections {
		for _, ch := range conn.Hosts {
			if hostOnly(ch) == h {
				return conn, true
			}
		}
	}
	return Connection{}, false
}

// hostOnly lower-cases host and strips a :port suffix and a trailing dot.
func hostOnly(host string) string {
	h := strings.ToLower(strings.TrimSpace(host))
	if hn, _, err := net.SplitHostPort(h); err == nil {
		h = hn
	} else if strings.HasPrefix(h, "[") && strings.HasSuffix(h, "]") {
		h = h[1 : len(h)-1]
	}
	return strings.TrimSuffix(h, ".")
}
