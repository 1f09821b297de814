package approvals

import (
	"context"
	"slices"

	"github.com/custos-dev/custos/filters/identity"
	"github.com/custos-dev/custos/filters/record"
)

// Refusal is a vote or a look the rules refuse; Code is CONTRACT.md's
// error code.
type Refusal struct {
	Status  int
	Code    string
	Message string
}

func (r *Refusal) Error() string { return r.Code + ": " + r.Message }

// Refusals.
var (
	// ErrSelfApproval: the requester voted on its own request.
	ErrSelfApproval = &Refusal{403, "self_approval", "nobody approves their own request"}
	// ErrNotEligible: the voter is a workload, or in none of the approver
	// groups or roles.
	ErrNotEligible = &Refusal{403, "not_eligible", "only humans in one of the approval's approver groups or roles may vote"}
	// ErrAlreadyResolved: the approval is no longer pending.
	ErrAlreadyResolved = &Refusal{409, "already_resolved", "the approval is no longer pending"}
	// ErrAlreadyVoted: the voter has voted on this approval before.
	ErrAlreadyVoted = &Refusal{409, "already_voted", "you have already voted on this approval"}
	// ErrNotRevocable: only an approved or pending approval can be revoked.
	ErrNotRevocable = &Refusal{409, "already_resolved", "only a pending or approved approval can be revoked"}
	// ErrForbidden: the caller is neither an eligible approver nor the
	// requester.
	ErrForbidden = &Refusal{403, "forbidden", "only the approval's requester and its eligible approvers may do this"}
)

// Eligible reports whether p may vote on a: a human, not the requester, in
// one of the approver groups (by id or name) or app roles.
func Eligible(a *Approval, p identity.Principal) bool {
	return eligibility(a, p) == nil
}

func eligibility(a *Approval, p identity.Principal) error {
	if p.Kind != identity.KindHuman {
		return ErrNotEligible
	}
	if p.ID() == a.Requester.ID() {
		return ErrSelfApproval
	}
	for _, g := range a.Approvers {
		if slices.Contains(p.Groups, g) || slices.Contains(p.GroupNames, g) || slices.Contains(p.Roles, g) {
			return nil
		}
	}
	return ErrNotEligible
}

// CanSee reports whether p may see a's details: its requester or an
// eligible approver.
func CanSee(a *Approval, p identity.Principal) bool {
	return p.Subject != "" && p.ID() == a.Requester.ID() || Eligible(a, p)
}

// Vote records voter's decision (Approve or Deny) with a comment. A deny
// resolves the approval as denied; min_approvals distinct approving
// voters resolve it as approved, and its grant starts.
func (s *Service) Vote(ctx context.Context, id string, voter identity.Principal, decision, comment string) (Approval, error) {
	if decision != Approve && decision != Deny {
		return Approval{}, &Refusal{400, "bad_request", "a vote is approve or deny"}
	}
	if _, err := s.Get(ctx, id); err != nil { // expires it first if due
		return Approval{}, err
	}
	before := ""
	a, err := s.store.Update(ctx, id, func(a *Approval) error {
		now := s.now()
		if err := eligibility(a, voter); err != nil {
			return err
		}
		if a.State != StatePending || due(a, now) {
			return ErrAlreadyResolved
		}
		for _, v := range a.Votes {
			if v.Voter.ID() == voter.ID() {
				return ErrAlreadyVoted
			}
		}
		before = a.State
		a.Votes = append(a.Votes, Vote{Voter: PersonOf(voter), Decision: decision, Comment: comment, At: now})
		approvals := 0
		for _, v := range a.Votes {
			if v.Decision == Approve {
				approvals++
			}
		}
		switch {
		case decision == Deny:
			a.State, a.Reason = StateDenied, comment
		case approvals >= a.MinApprovals:
			a.State = StateApproved
			a.GrantExpires = now.Add(a.TTL)
		default:
			return nil
		}
		a.Resolved, a.ResolvedBy = now, voter.ID()
		return nil
	})
	if err != nil {
		return Approval{}, err
	}
	ev := s.event(record.Voted, a)
	ev.Principal, ev.PrincipalKind, ev.Groups, ev.Roles = voter.ID(), voter.Kind, voter.Groups, voter.Roles
	ev.Detail += " voter=" + voter.ID() + " vote=" + decision
	if err := s.record(ctx, ev); err != nil {
		return a, err
	}
	if before != a.State {
		return a, s.resolved(ctx, a)
	}
	return a, nil
}

// Revoke ends an approval early: a pending request is withdrawn, an
// approved grant stops working. Its requester and its eligible approvers
// may revoke it.
func (s *Service) Revoke(ctx context.Context, id string, who identity.Principal, reason string) (Approval, error) {
	if _, err := s.Get(ctx, id); err != nil {
		return Approval{}, err
	}
	a, err := s.store.Update(ctx, id, func(a *Approval) error {
		if !CanSee(a, who) {
			return ErrForbidden
		}
		if (a.State != StatePending && a.State != StateApproved) || due(a, s.now()) {
			return ErrNotRevocable
		}
		a.State, a.Resolved, a.ResolvedBy, a.Reason = StateRevoked, s.now(), who.ID(), reason
		return nil
	})
	if err != nil {
		return Approval{}, err
	}
	return a, s.resolved(ctx, a)
}

// resolved records the end of an approval and tells the webhooks.
func (s *Service) resolved(ctx context.Context, a Approval) error {
	s.hooks.send(hookResolved, a)
	ev := s.event(record.Approved, a)
	ev.Detail += " resolved_by=" + a.ResolvedBy
	return s.record(ctx, ev)
}
