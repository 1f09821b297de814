package approvals

import (
	"testing"
	"time"

	"github.com/custos-dev/custos/approvals/pgtest"
)

// Two services on one PostgreSQL: a request held on one is released by a
// vote on the other, woken by LISTEN/NOTIFY.
func TestReplicasShareApprovalsThroughPostgres(t *testing.T) {
	url := pgtest.URL(t)
	replica := func() *fixture {
		st, err := Open(ctx(t), url)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		return newFixture(t, st)
	}
	one, two := replica(), replica()
	id := one.open(t, request())
	if shared := two.open(t, request()); shared != id {
		t.Fatal("the same request on two replicas opened two approvals")
	}
	// A change on two wakes a watcher on one.
	changed, stop := one.store.Watch(id)
	if _, err := two.store.Update(ctx(t), id, func(a *Approval) error { a.Reason = "touched"; return nil }); err != nil {
		t.Fatal(err)
	}
	select {
	case <-changed:
	case <-ctx(t).Done():
		t.Fatal("an update on one replica did not wake a watcher on the other")
	}
	stop()

	got := make(chan string, 1)
	go func() {
		state, err := one.svc.Await(ctx(t), id)
		if err != nil {
			t.Error(err)
		}
		got <- state
	}()
	// Vote once Await is waiting, so only the notification can wake it.
	pg := one.store.(*PostgresStore)
	for pg.w.count(id) == 0 {
		time.Sleep(time.Millisecond)
	}
	two.vote(t, id, alice, Approve)
	if s := <-got; s != StateApproved {
		t.Fatalf("the held request on replica one got %s", s)
	}
	// Used on one, so not usable on two.
	if g := two.find(t, lookup(id)); len(g) != 0 {
		t.Fatal("the grant used on one replica was used again on the other")
	}
}
