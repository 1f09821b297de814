// Package request is the HTTP request as every stage sees it: what Envoy's
// ext_authz CheckRequest says about it, with the routing facts applied (the
// connection it is for, the path the upstream receives) and the agent's
// credentials taken out. Stages read it; none of them sees gRPC or Envoy's
// types.
package request

import (
	"net/url"
	"strings"

	"github.com/custos-dev/custos/config"
)

// Request is one agent request, as the upstream will receive it.
type Request struct {
	// ID is the request id Custos generated for this request.
	ID string
	// Connection is the connection the request is for.
	Connection config.Connection
	// Method is the HTTP method.
	Method string
	// Host is :authority as the connection manager matched it.
	Host string
	// Path is the path the upstream receives, without the query: the route's
	// prefix replaced by the upstream's base path, normalised as the
	// connection manager normalises it.
	Path string
	// OriginalPath is the path the agent sent, without the query.
	OriginalPath string
	// RawQuery is the query string as sent, without the '?'.
	RawQuery string
	// Headers are the request headers, lower-case, repeats joined with ",",
	// without pseudo-headers and without credentials (see Credentials).
	Headers map[string]string
	// Body is the request body when the data plane sent it (with_request_body);
	// nil otherwise.
	Body []byte
	// BodyBytes is the body size the data plane reported (-1 when unknown).
	BodyBytes int64
	// Session is the session name the agent gave (x-custos-session), "" if none.
	Session string
	// ApprovalID is the approval the agent retries with (x-custos-approval-id).
	ApprovalID string
}

// Query returns the parsed query; a malformed query yields what could be
// parsed. Values may hold credentials (SAS signatures): callers that record
// or show them must redact.
func (r *Request) Query() url.Values {
	q, _ := url.ParseQuery(r.RawQuery)
	return q
}

// credentialHeaders carry credentials: never in policy input, audit events
// or approver views.
var credentialHeaders = map[string]bool{
	"authorization":                  true,
	"proxy-authorization":            true,
	"cookie":                         true,
	"x-ms-copy-source-authorization": true,
}

// IsCredentialHeader reports whether the lower-case header name k carries a
// credential that must never leave the identity stage.
func IsCredentialHeader(k string) bool {
	return credentialHeaders[k] || strings.HasPrefix(k, "x-ms-encryption-key")
}
