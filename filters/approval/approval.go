// Package approval is the grant lookup and the hold of a request: when policy
// asks for a human's approval, a matching grant lets the request through;
// otherwise an approval request is opened and the request waits for it (a
// hold) or the agent is told to come back (async).
//
// Grants is the seam; None is the stand-in until approvals land: it holds no
// grants and cannot open requests, so a request that needs an approval is
// refused (fail closed), never let through.
package approval

import (
	"context"
	"errors"
	"time"

	"github.com/custos-dev/custos/filters/identity"
)

// States of an approval.
const (
	StatePending  = "pending"
	StateApproved = "approved"
	StateDenied   = "denied"
	StateExpired  = "expired"
	StateUsed     = "used"
	StateRevoked  = "revoked"
)

// Grant is an approved request or window that lets requests through.
type Grant struct {
	ID string
	// Scope is "request" (one-shot, bound to a fingerprint) or "window".
	Scope   string
	Expires time.Time
	// Rule is the policy rule the grant was approved for, and Risk the
	// highest risk it covers: the caller may check that the decision asks
	// for the same rule.
	Rule string
	Risk string
}

// Scopes of a grant.
const (
	ScopeRequest = "request"
	ScopeWindow  = "window"
)

// Lookup is what a grant must match.
type Lookup struct {
	Requester  identity.Principal
	Connection string
	// ApprovalID is the approval the agent named (x-custos-approval-id).
	ApprovalID string
	// Fingerprint binds one-shot grants to the exact request.
	Fingerprint string
	// Rule is the policy rule asking for approval.
	Rule string
	// Risk is the action's risk; a window never covers a higher one.
	Risk string
}

// Request is an approval request to open.
type Request struct {
	Requester  identity.Principal
	Connection string
	// Summary is the action's one line and Details its kind-specific text
	// (the SQL statement, the exec command), both masked by the caller:
	// they are stored, shown to approvers and sent in webhooks.
	Summary     string
	Details     string
	Fingerprint string
	Rule        string
	// Reasons are the policy's reasons, shown to approvers.
	Reasons      []string
	Approvers    []string
	MinApprovals int
	Scope        string
	// Risk is the action's risk: the highest a window grant covers.
	Risk string
	// Expires is when a pending request expires; TTL bounds the grant once
	// approved (0: the store's default).
	Expires time.Time
	TTL     time.Duration
	// RequestID, Method and Path name the request that asked, for the
	// evidence and the approver (Path without its query).
	RequestID string
	Method    string
	Path      string
}

// Pending is an opened approval request.
type Pending struct {
	ID string
}

// Grants finds grants, opens approval requests and waits for them.
type Grants interface {
	// Find returns the grants that let this request through.
	Find(ctx context.Context, l Lookup) ([]Grant, error)
	// Request opens an approval request.
	Request(ctx context.Context, r Request) (Pending, error)
	// Await waits until approval id is resolved or ctx ends; it returns
	// the state.
	Await(ctx context.Context, id string) (string, error)
}

// ErrUnavailable says approvals are not available here.
var ErrUnavailable = errors.New("approvals are not available: no approval store is configured")

// None has no grants and opens no requests.
type None struct{}

// Find finds nothing.
func (None) Find(context.Context, Lookup) ([]Grant, error) { return nil, nil }

// Request refuses: nobody could approve.
func (None) Request(context.Context, Request) (Pending, error) { return Pending{}, ErrUnavailable }

// Await refuses.
func (None) Await(context.Context, string) (string, error) { return "", ErrUnavailable }
