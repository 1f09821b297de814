// Package policy is the third stage of a request: it decides, from the
// principal, the connection, the request and its action, whether the request
// goes on, is denied, or needs a human's approval, and which masking applies.
//
// Evaluator is the seam; AllowConnection is the stand-in until Rego policy
// lands: a request for a configured connection is allowed. An Evaluator that
// cannot decide returns an error: the request is answered 503, never allowed.
package policy

import (
	"context"
	"time"

	"github.com/custos-dev/custos/filters/identity"
	"github.com/custos-dev/custos/filters/inspect"
	"github.com/custos-dev/custos/filters/request"
)

// Input is what policy decides over (CONTRACT.md, "Policy input and
// decision"). It never holds credentials.
type Input struct {
	Principal identity.Principal
	Request   *request.Request
	Action    inspect.Action
	// Grants are the approval grants usable by this request.
	Grants []Grant
	Time   time.Time
}

// Grant is an approval grant as policy sees it.
type Grant struct {
	ID      string
	Scope   string
	Expires time.Time
}

// Approval says a request needs a human's approval.
type Approval struct {
	// Rule names the policy rule that asked for it.
	Rule string
	// Approvers are the groups or app roles whose members may approve.
	Approvers []string
	// MinApprovals is how many distinct approvers must vote yes (at least 1).
	MinApprovals int
	// Scope is "request" (one-shot) or "window".
	Scope string
	// TTL is how long a window grant lasts.
	TTL time.Duration
}

// Decision is policy's answer.
type Decision struct {
	// ID identifies this evaluation.
	ID string
	// Revision is the policy revision that decided.
	Revision string
	Allow    bool
	// Reasons are sentences a person can act on.
	Reasons []string
	// Approval, when set, starts the approval flow unless a grant matches,
	// whatever Allow says.
	Approval *Approval
	// MaskProfile adds masking to the connection's; it never removes any.
	MaskProfile string
	// Cached is set when the decision came from the bundle revision's
	// decision cache rather than an evaluation.
	Cached bool
}

// Evaluator decides.
type Evaluator interface {
	Decide(ctx context.Context, in Input) (Decision, error)
}

// AllowConnection allows every request for a configured connection: the
// foundation's behaviour, before Rego policy.
type AllowConnection struct{}

// Decide allows the request.
func (AllowConnection) Decide(_ context.Context, in Input) (Decision, error) {
	return Decision{
		Allow:    true,
		Revision: "builtin:allow-by-connection",
		Reasons:  []string{"connection " + in.Request.Connection.Name + " is configured and no policy bundle is loaded"},
	}, nil
}
