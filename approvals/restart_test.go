package approvals

import (
	"testing"

	"github.com/custos-dev/custos/filters/approval"
)

// A pending approval survives a restart of the embedded store and still
// works: the vote after the restart releases a grant bound as before.
func TestRestartKeepsPendingApprovals(t *testing.T) {
	open := stores()["file"](t)
	st := open(t)
	f := newFixture(t, st)
	id := f.open(t, request())
	f.svc.Close()
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}

	f2 := newFixture(t, open(t))
	a, err := f2.svc.Get(ctx(t), id)
	if err != nil || a.State != StatePending || a.Fingerprint != "fp-1" || a.Requester.ID() != agent.ID() {
		t.Fatalf("after the restart: %+v, %v", a, err)
	}
	if again := f2.open(t, request()); again != id {
		t.Fatal("after the restart the same request opened a new approval")
	}
	f2.vote(t, id, alice, Approve)
	if g := f2.find(t, lookup(id)); len(g) != 1 {
		t.Fatal("the approval from before the restart granted nothing")
	}
	if g := f2.find(t, lookup(id, func(l *approval.Lookup) {})); len(g) != 0 {
		t.Fatal("used twice")
	}
}
