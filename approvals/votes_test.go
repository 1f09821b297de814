package approvals

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/custos-dev/custos/filters/approval"
	"github.com/custos-dev/custos/filters/identity"
	"github.com/custos-dev/custos/filters/record"
)

func TestVotesFollowTheRules(t *testing.T) {
	eachStore(t, func(t *testing.T, open opener) {
		f := newFixture(t, open(t))
		mine := f.open(t, request(func(r *approval.Request) { r.Requester = humanAgent }))
		id := f.open(t, request())
		for _, c := range []struct {
			name  string
			id    string
			voter identity.Principal
			err   error
		}{
			{"self-approval", mine, humanAgent, ErrSelfApproval},
			{"non-approver", id, carol, ErrNotEligible},
			{"workload in the approver group", id, robot, ErrNotEligible},
			{"the requesting workload", id, agent, ErrNotEligible},
		} {
			if _, err := f.svc.Vote(ctx(t), c.id, c.voter, Approve, ""); !errors.Is(err, c.err) {
				t.Errorf("%s: %v, want %v", c.name, err, c.err)
			}
		}
		// Nobody's refused vote counted.
		if a, _ := f.svc.Get(ctx(t), id); len(a.Votes) != 0 || a.State != StatePending {
			t.Fatalf("after refused votes: %+v", a)
		}
		// By group name (alice), by app role (bob).
		if !Eligible(&Approval{Approvers: []string{"dba"}}, alice) || !Eligible(&Approval{Approvers: []string{"g-dba"}}, alice) ||
			!Eligible(&Approval{Approvers: []string{"approver"}}, bob) || Eligible(&Approval{Approvers: []string{"dba"}}, bob) {
			t.Fatal("eligibility by group id, group name or role is wrong")
		}
	})
}

func TestMinApprovalsNeedsDistinctPeople(t *testing.T) {
	eachStore(t, func(t *testing.T, open opener) {
		f := newFixture(t, open(t))
		id := f.open(t, request(func(r *approval.Request) { r.MinApprovals = 2 }))
		if a := f.vote(t, id, alice, Approve); a.State != StatePending {
			t.Fatalf("one of two approvals: %s", a.State)
		}
		if _, err := f.svc.Vote(ctx(t), id, alice, Approve, "again"); !errors.Is(err, ErrAlreadyVoted) {
			t.Fatalf("the same person voted twice: %v", err)
		}
		if g := f.find(t, lookup(id)); len(g) != 0 {
			t.Fatal("granted with one of two approvals")
		}
		a := f.vote(t, id, bob, Approve)
		if a.State != StateApproved || len(a.Votes) != 2 || a.ResolvedBy != bob.ID() || a.GrantExpires.IsZero() {
			t.Fatalf("after two approvals: %+v", a)
		}
		if a.Votes[0].Voter.ID() != alice.ID() || a.Votes[0].Comment != "ok by me" || a.Votes[0].At.IsZero() {
			t.Fatalf("the vote is not recorded with who, when and comment: %+v", a.Votes[0])
		}
		// Evidence: requested, two votes naming voter and vote, resolved;
		// each naming the approval and the fingerprint.
		want := []record.Kind{record.Held, record.Voted, record.Voted, record.Approved}
		if got := f.ev.kinds(); !slices.Equal(got, want) {
			t.Fatalf("events %v, want %v", got, want)
		}
		for _, ev := range f.ev.all() {
			if !strings.Contains(ev.Detail, "approval="+id) || !strings.Contains(ev.Detail, "fingerprint=fp-1") || ev.RequestID != "req-1" {
				t.Errorf("%s event: %q, request %q", ev.Kind, ev.Detail, ev.RequestID)
			}
		}
		if ev := f.ev.all()[2]; ev.Principal != bob.ID() || !strings.Contains(ev.Detail, "vote=approve") {
			t.Errorf("vote event names %s: %s", ev.Principal, ev.Detail)
		}
	})
}

func TestVotesAfterResolutionAreRefused(t *testing.T) {
	eachStore(t, func(t *testing.T, open opener) {
		f := newFixture(t, open(t))
		id := f.open(t, request(func(r *approval.Request) { r.MinApprovals = 2 }))
		a := f.vote(t, id, alice, Deny)
		if a.State != StateDenied || a.Reason != "ok by me" {
			t.Fatalf("one deny: %+v", a)
		}
		if _, err := f.svc.Vote(ctx(t), id, bob, Approve, ""); !errors.Is(err, ErrAlreadyResolved) {
			t.Fatalf("vote after resolution: %v", err)
		}
		if g := f.find(t, lookup(id)); len(g) != 0 {
			t.Fatal("a denied approval granted")
		}
	})
}
