// Package identity is the first stage of a request: it turns the agent's
// credentials into a Principal, the non-human (or human) identity every
// decision, grant and record is tied to.
//
// Verifier is the seam. OIDC verifies the bearer tokens of the configured
// issuers (identity.issuers): OpenID Connect discovery, keys and signatures
// through github.com/coreos/go-oidc/v3, times, audiences and the principal
// in this package, Microsoft Entra ID's tokens first-class (ENTRA.md).
// Anonymous is the stand-in when no issuer is configured. A Verifier that
// cannot verify returns an *Error (the agent gets 401 unauthenticated); any
// other error means the stage could not decide (503).
package identity

import (
	"context"
	"errors"
)

// Credentials are what the agent presented. They never leave this stage:
// not in policy input, records or errors.
type Credentials struct {
	// Bearer is the token of an "Authorization: Bearer" header, "" if none.
	Bearer string
	// PeerPrincipal is the URI SAN of a verified client certificate
	// (Envoy's source.principal), "" if none.
	PeerPrincipal string
}

// Principal kinds.
const (
	// KindWorkload is a non-human identity: a managed identity, a service
	// principal, a workload identity, an agent.
	KindWorkload = "workload"
	// KindHuman is a person, signed in with a delegated token.
	KindHuman = "human"
	// KindAnonymous is a request no verifier vouched for.
	KindAnonymous = "anonymous"
)

// Principal is a verified identity.
type Principal struct {
	// Issuer is the token issuer (iss), "" for an anonymous principal.
	Issuer string
	// Subject identifies the principal at its issuer.
	Subject string
	// Kind is KindWorkload, KindHuman or KindAnonymous.
	Kind string
	// Groups and Roles are the principal's group ids and app roles.
	Groups []string
	Roles  []string
	// App is the client application id (Entra azp/appid).
	App string
	// Actor is the delegation chain (act claims), outermost first.
	Actor []string
	// Claims are further claims policy may read; never the token itself.
	Claims map[string]any
	// GroupsUnknown is set when the token could not list the groups (Entra
	// ID's group overage: _claim_names.groups): Groups is then not "no
	// groups" but "not known".
	GroupsUnknown bool
	// GroupNames are the readable names (identity.issuers[].group_names) of
	// those Groups that have one, in the order of Groups.
	GroupNames []string
	// Session is the session name derived from the token (sid, else jti,
	// else a hash of issuer, subject and iat), used when the agent names
	// none with x-custos-session; "" when the token gives none.
	Session string
}

// ID is issuer and subject joined: the key sessions and grants are bound to.
func (p Principal) ID() string { return p.Issuer + "/" + p.Subject }

// Verifier verifies credentials.
type Verifier interface {
	Verify(ctx context.Context, c Credentials) (Principal, error)
}

// The checks an Error names; the agent is told "token CHECK".
const (
	// CheckMissing: no "Authorization: Bearer" token.
	CheckMissing = "missing"
	// CheckMalformed: not a compact JWS with JSON header and claims.
	CheckMalformed = "malformed"
	// CheckSignature: no key of the issuer verifies the signature.
	CheckSignature = "signature"
	// CheckExpired: exp is past, beyond the clock skew.
	CheckExpired = "expired"
	// CheckNotYetValid: nbf or iat is ahead, beyond the clock skew.
	CheckNotYetValid = "not_yet_valid"
	// CheckIssuer: iss is not a configured issuer.
	CheckIssuer = "issuer"
	// CheckAudience: no aud is one of the issuer's audiences.
	CheckAudience = "audience"
	// CheckAlgorithm: alg is not one the issuer allows (never none or HS*).
	CheckAlgorithm = "algorithm"
)

// Error is a verification failure the agent is told about (401).
type Error struct {
	// Check names the check that failed, one of the Check* constants.
	Check string
	// Err is the cause, for Custos' log; it never holds the token.
	Err error
	// Claimed is what the token said about its caller, read without
	// verification (empty when the token could not be read): evidence of
	// who tried, never of who it was.
	Claimed Claimed
}

// Claimed holds the unverified iss, sub and kid of a token that failed,
// each cut to MaxClaimedSize bytes.
type Claimed struct {
	Issuer, Subject, KeyID string
}

// MaxClaimedSize bounds each claimed value kept from a refused token.
const MaxClaimedSize = 256

func (e *Error) Error() string {
	if e.Err == nil {
		return "token " + e.Check
	}
	return "token " + e.Check + ": " + e.Err.Error()
}

func (e *Error) Unwrap() error { return e.Err }

// IsUnauthenticated reports whether err is a verification failure (as
// opposed to a verifier that could not decide).
func IsUnauthenticated(err error) bool {
	var e *Error
	return errors.As(err, &e)
}

// PeerIssuer is the issuer of principals that came in with a client
// certificate the listener verified (Envoy's source.principal).
const PeerIssuer = "x509"

// PeerPrincipal is the workload principal of a verified client
// certificate's identity (its SPIFFE URI SAN, or its subject).
func PeerPrincipal(id string) Principal {
	return Principal{Issuer: PeerIssuer, Subject: id, Kind: KindWorkload,
		Claims: map[string]any{"auth": "client_certificate"}}
}

// Anonymous vouches for nobody: every request gets the same anonymous
// principal. It is the foundation's behaviour, before token verification.
type Anonymous struct{}

// Verify returns the anonymous principal.
func (Anonymous) Verify(context.Context, Credentials) (Principal, error) {
	return Principal{Subject: "anonymous", Kind: KindAnonymous}, nil
}
