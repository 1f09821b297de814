// Package approvals keeps approval requests and the grants they become, and
// serves them: the Service implements approval.Grants for the pipeline (find
// a grant, open a request, await it), takes approvers' votes, expires what
// is left pending, records every step to the record stage and notifies
// webhooks; Handler is the approvals API of CONTRACT.md over HTTP.
//
// The rules are DESIGN.md's "Security semantics": a one-shot grant lets
// exactly one request through, from the same requester with the same
// fingerprint; a window grant is bound to (requester, connection, policy
// rule, highest risk granted, expiry) and never covers a higher risk or an
// unknown one; approvers are humans in an approver group or app role, never
// the requester; min_approvals counts distinct people.
//
// State lives in a Store: an embedded bbolt file (the default) or
// PostgreSQL, where LISTEN/NOTIFY wakes a request held on one replica when
// the vote lands on another. Both pass one suite (store_suite_test.go).
package approvals

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/custos-dev/custos/filters/approval"
	"github.com/custos-dev/custos/filters/identity"
)

// Approval is one approval request and, once approved, its grant.
type Approval struct {
	ID    string `json:"id"`
	State string `json:"state"`
	// Key is what identical pending requests share (see dedupeKey).
	Key string `json:"-"`

	Requester  Person `json:"requester"`
	Connection string `json:"connection"`
	// Summary and Details are the action as the caller masked it.
	Summary     string   `json:"summary"`
	Details     string   `json:"details,omitempty"`
	Method      string   `json:"method,omitempty"`
	Path        string   `json:"path,omitempty"`
	RequestID   string   `json:"request_id,omitempty"`
	Fingerprint string   `json:"fingerprint"`
	Rule        string   `json:"rule"`
	Reasons     []string `json:"reasons,omitempty"`
	Risk        string   `json:"risk"`

	Approvers    []string `json:"approvers"`
	MinApprovals int      `json:"min_approvals"`
	Scope        string   `json:"scope"`

	Created time.Time `json:"created"`
	// Expires is when a pending approval expires.
	Expires time.Time `json:"expires"`
	// TTL is how long the grant lasts once approved.
	TTL time.Duration `json:"ttl"`
	// GrantExpires is when the grant ends (set on approval).
	GrantExpires time.Time `json:"grant_expires,omitzero"`

	Votes []Vote `json:"votes"`
	// Resolved is when the approval left pending, ResolvedBy who or what
	// made it (a voter, "expiry", a revoker) and Reason why.
	Resolved   time.Time `json:"resolved,omitzero"`
	ResolvedBy string    `json:"resolved_by,omitempty"`
	Reason     string    `json:"reason,omitempty"`
	// Used is when a one-shot grant let its request through.
	Used time.Time `json:"used,omitzero"`
}

// Person is a principal as an approval keeps it: who, not their token.
type Person struct {
	Issuer  string `json:"issuer"`
	Subject string `json:"subject"`
	Kind    string `json:"kind"`
	// Name is a readable name from the token (name, preferred_username or
	// email), "" when it has none.
	Name string `json:"name,omitempty"`
}

// ID is issuer and subject joined, as identity.Principal.ID.
func (p Person) ID() string { return p.Issuer + "/" + p.Subject }

// String is the readable name with the id, or the id alone.
func (p Person) String() string {
	if p.Name != "" {
		return p.Name + " (" + p.ID() + ")"
	}
	return p.ID()
}

// PersonOf keeps what an approval needs of a principal.
func PersonOf(p identity.Principal) Person {
	per := Person{Issuer: p.Issuer, Subject: p.Subject, Kind: p.Kind}
	for _, c := range []string{"name", "preferred_username", "email"} {
		if s, ok := p.Claims[c].(string); ok && s != "" {
			per.Name = s
			break
		}
	}
	return per
}

// Vote is one approver's vote.
type Vote struct {
	Voter Person `json:"voter"`
	// Decision is "approve" or "deny".
	Decision string    `json:"decision"`
	Comment  string    `json:"comment,omitempty"`
	At       time.Time `json:"at"`
}

// States, as filters/approval names them.
const (
	StatePending  = approval.StatePending
	StateApproved = approval.StateApproved
	StateDenied   = approval.StateDenied
	StateExpired  = approval.StateExpired
	StateUsed     = approval.StateUsed
	StateRevoked  = approval.StateRevoked
)

// Vote decisions.
const (
	Approve = "approve"
	Deny    = "deny"
)

// Resolved reports whether state is final for voting: anything but pending.
func Resolved(state string) bool { return state != StatePending }

// dedupeKey is what identical pending requests from one principal share:
// the fingerprint for a one-shot request; the rule, connection and risk for
// a window, whose grant covers any request under that rule.
func dedupeKey(a *Approval) string {
	parts := []string{a.Scope, a.Requester.ID(), a.Connection}
	if a.Scope == approval.ScopeWindow {
		parts = append(parts, a.Rule, a.Risk)
	} else {
		parts = append(parts, a.Fingerprint)
	}
	h := sha256.New()
	for _, p := range parts {
		fmt.Fprintf(h, "%d:%s;", len(p), p)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// risks orders the risks a window may cover; unknown is not among them.
var risks = map[string]int{"read": 1, "write": 2, "destructive": 3, "admin": 4}

// covers reports whether a window granted for risk granted covers risk r:
// an unknown risk (unparseable, or not named) is never covered.
func covers(granted, r string) bool {
	g, ok1 := risks[granted]
	x, ok2 := risks[r]
	return ok1 && ok2 && x <= g
}

var idEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// newID is a random approval id: "apr_" and 26 characters (128 bits).
func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return "apr_" + idEncoding.EncodeToString(b[:])
}
