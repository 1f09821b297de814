package approvals

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/custos-dev/custos/filters/approval"
	"github.com/custos-dev/custos/filters/record"
)

// errNoGrant aborts the use of a grant that no longer lets the request
// through (another request used it first, it expired, it was revoked).
var errNoGrant = errors.New("the grant no longer applies")

// Request implements approval.Grants: it opens an approval request, or
// joins the pending one the same principal opened for the same request
// (the same fingerprint; for a window, the same rule, connection and risk),
// so approvers see one approval, not a flood.
func (s *Service) Request(ctx context.Context, r approval.Request) (approval.Pending, error) {
	now := s.now()
	a := Approval{
		ID: newID(), State: StatePending,
		Requester: PersonOf(r.Requester), Connection: r.Connection,
		Summary: r.Summary, Details: r.Details, Method: r.Method, Path: r.Path, RequestID: r.RequestID,
		Fingerprint: r.Fingerprint, Rule: r.Rule, Reasons: r.Reasons, Risk: r.Risk,
		Approvers: slices.Clone(r.Approvers), MinApprovals: max(r.MinApprovals, 1), Scope: r.Scope,
		Created: now, Expires: r.Expires, TTL: r.TTL, Votes: []Vote{},
	}
	if a.Scope == "" {
		a.Scope = approval.ScopeRequest
	}
	switch {
	case a.Scope != approval.ScopeRequest && a.Scope != approval.ScopeWindow:
		return approval.Pending{}, fmt.Errorf("open approval for rule %q: scope %q is neither request nor window", r.Rule, r.Scope)
	case r.Requester.Subject == "":
		return approval.Pending{}, fmt.Errorf("open approval for rule %q: the requester has no identity to bind a grant to", r.Rule)
	case len(a.Approvers) == 0:
		return approval.Pending{}, fmt.Errorf("open approval for rule %q: the rule names no approvers", r.Rule)
	case a.Scope == approval.ScopeRequest && a.Fingerprint == "":
		return approval.Pending{}, fmt.Errorf("open approval for rule %q: a one-shot grant needs the request's fingerprint", r.Rule)
	}
	if a.Expires.IsZero() || !a.Expires.After(now) {
		a.Expires = now.Add(s.expiry)
	}
	if a.TTL <= 0 {
		a.TTL = s.ttl
	}
	got, created, err := s.store.Create(ctx, a, now)
	if err != nil {
		return approval.Pending{}, err
	}
	ev := s.event(record.Held, got)
	if !created {
		// Evidence that this request, too, waits on the shared approval.
		ev.RequestID = r.RequestID
		ev.Detail += " shared=true"
	}
	if err := s.record(ctx, ev); err != nil {
		return approval.Pending{}, err
	}
	if created {
		s.hooks.send(hookRequested, got)
	}
	return approval.Pending{ID: got.ID}, nil
}

// Find implements approval.Grants. With an approval id (the agent's
// x-custos-approval-id), it returns that approval's grant if it is bound
// to this request: the same requester and connection; for a one-shot
// grant the same fingerprint, and the grant is used at once (atomically:
// of two requests racing, one gets it); for a window, a risk it covers.
// Without an id, it returns the requester's windows that cover the
// request. The rule is compared only when both sides name one.
func (s *Service) Find(ctx context.Context, l approval.Lookup) ([]approval.Grant, error) {
	if l.ApprovalID == "" {
		return s.findWindows(ctx, l)
	}
	a, err := s.Get(ctx, l.ApprovalID)
	if errors.Is(err, ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if a.State != StateApproved || !bound(&a, l) {
		return nil, nil
	}
	if a.Scope == approval.ScopeWindow {
		if !covers(a.Risk, l.Risk) {
			return nil, nil
		}
		return []approval.Grant{grantOf(&a)}, nil
	}
	if a.Fingerprint != l.Fingerprint {
		return nil, nil
	}
	used, err := s.use(ctx, a.ID)
	if errors.Is(err, errNoGrant) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return []approval.Grant{grantOf(&used)}, nil
}

func (s *Service) findWindows(ctx context.Context, l approval.Lookup) ([]approval.Grant, error) {
	all, err := s.store.List(ctx, StateApproved, listLimit)
	if err != nil {
		return nil, err
	}
	now := s.now()
	var out []approval.Grant
	for _, a := range all {
		if a.Scope == approval.ScopeWindow && !due(&a, now) && bound(&a, l) && covers(a.Risk, l.Risk) {
			out = append(out, grantOf(&a))
		}
	}
	return out, nil
}

// bound reports whether a's grant is bound to the requester, connection
// and rule of l.
func bound(a *Approval, l approval.Lookup) bool {
	return a.Requester.ID() == l.Requester.ID() && a.Connection == l.Connection &&
		(l.Rule == "" || a.Rule == "" || a.Rule == l.Rule)
}

// use turns an approved one-shot grant into a used one, or fails with
// errNoGrant when it no longer lets a request through.
func (s *Service) use(ctx context.Context, id string) (Approval, error) {
	return s.store.Update(ctx, id, func(a *Approval) error {
		now := s.now()
		if a.State != StateApproved || due(a, now) {
			return errNoGrant
		}
		a.State, a.Used = StateUsed, now
		return nil
	})
}

func grantOf(a *Approval) approval.Grant {
	return approval.Grant{ID: a.ID, Scope: a.Scope, Expires: a.GrantExpires, Rule: a.Rule, Risk: a.Risk}
}

// Await implements approval.Grants for a held request: it waits until
// approval id is resolved or ctx ends, and returns the state. An approved
// one-shot grant is used by the held request there and then, so the agent
// cannot replay it with x-custos-approval-id; of several requests held on
// one shared approval, one gets "approved" and the others "used". When ctx
// ends first, the state is "pending" and the error ctx's.
func (s *Service) Await(ctx context.Context, id string) (string, error) {
	a, err := s.Wait(ctx, id)
	if err != nil && ctx.Err() != nil {
		return StatePending, ctx.Err()
	}
	if err != nil {
		return "", err
	}
	if a.State != StateApproved || a.Scope == approval.ScopeWindow {
		return a.State, nil
	}
	if _, err := s.use(ctx, id); err != nil {
		if errors.Is(err, errNoGrant) {
			a, err := s.Get(ctx, id)
			return a.State, err
		}
		return "", err
	}
	return StateApproved, nil
}
