package approvals

import (
	"errors"
	"sync"
	"testing"
	"time"
)

// The store suite: what the Service relies on, on every store.

func TestStoreSuite(t *testing.T) {
	eachStore(t, func(t *testing.T, open opener) {
		st := open(t)
		now := newClock().Now()
		base := Approval{ID: newID(), State: StatePending, Requester: PersonOf(agent), Connection: "warehouse",
			Fingerprint: "fp", Scope: "request", Created: now, Expires: now.Add(time.Hour), Votes: []Vote{}}

		t.Run("get of nothing", func(t *testing.T) {
			if _, err := st.Get(ctx(t), "apr_nothing"); !errors.Is(err, ErrNotFound) {
				t.Fatalf("Get = %v, want ErrNotFound", err)
			}
			if _, err := st.Update(ctx(t), "apr_nothing", func(*Approval) error { return nil }); !errors.Is(err, ErrNotFound) {
				t.Fatalf("Update = %v, want ErrNotFound", err)
			}
		})

		t.Run("create shares a pending approval", func(t *testing.T) {
			a, created, err := st.Create(ctx(t), base, now)
			if err != nil || !created || a.ID != base.ID {
				t.Fatalf("Create = %v %v %v", a.ID, created, err)
			}
			dup := base
			dup.ID = newID()
			b, created, err := st.Create(ctx(t), dup, now)
			if err != nil || created || b.ID != base.ID {
				t.Fatalf("identical request: Create = %v %v %v, want the first", b.ID, created, err)
			}
			// Another fingerprint is another approval.
			diff := base
			diff.ID, diff.Fingerprint = newID(), "fp-other"
			if c, created, err := st.Create(ctx(t), diff, now); err != nil || !created || c.ID != diff.ID {
				t.Fatalf("another fingerprint: Create = %v %v %v", c.ID, created, err)
			}
			// Once past its expiry the pending one is not shared.
			late := base
			late.ID = newID()
			if c, created, err := st.Create(ctx(t), late, now.Add(2*time.Hour)); err != nil || !created || c.ID != late.ID {
				t.Fatalf("after expiry: Create = %v %v %v", c.ID, created, err)
			}
		})

		t.Run("update round-trips and resolves", func(t *testing.T) {
			a, err := st.Update(ctx(t), base.ID, func(a *Approval) error {
				a.Votes = append(a.Votes, Vote{Voter: PersonOf(alice), Decision: Approve, Comment: "fine", At: now})
				a.State = StateApproved
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			got, err := st.Get(ctx(t), base.ID)
			if err != nil {
				t.Fatal(err)
			}
			if got.State != StateApproved || len(got.Votes) != 1 || got.Votes[0].Voter.Name != "Alice" ||
				!got.Votes[0].At.Equal(now) || got.Votes[0].Comment != "fine" || a.State != got.State {
				t.Fatalf("after update: %+v", got)
			}
			// A resolved approval is no longer shared.
			again := base
			again.ID = newID()
			if c, _, err := st.Create(ctx(t), again, now); err != nil || c.ID == base.ID {
				t.Fatalf("after resolution: Create = %v %v", c.ID, err)
			}
		})

		t.Run("an error aborts the update", func(t *testing.T) {
			boom := errors.New("boom")
			if _, err := st.Update(ctx(t), base.ID, func(a *Approval) error { a.State = StateDenied; return boom }); !errors.Is(err, boom) {
				t.Fatalf("Update = %v", err)
			}
			if got, _ := st.Get(ctx(t), base.ID); got.State != StateApproved {
				t.Fatalf("state %s after an aborted update", got.State)
			}
		})

		t.Run("updates are atomic", func(t *testing.T) {
			id := newID()
			a := base
			a.ID, a.Fingerprint = id, "fp-counter"
			if _, _, err := st.Create(ctx(t), a, now); err != nil {
				t.Fatal(err)
			}
			var wg sync.WaitGroup
			for i := range 20 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					_, err := st.Update(ctx(t), id, func(a *Approval) error {
						a.Votes = append(a.Votes, Vote{Comment: string(rune('a' + i))})
						return nil
					})
					if err != nil {
						t.Error(err)
					}
				}()
			}
			wg.Wait()
			if got, _ := st.Get(ctx(t), id); len(got.Votes) != 20 {
				t.Fatalf("%d votes after 20 concurrent updates", len(got.Votes))
			}
		})

		t.Run("list filters by state, newest first", func(t *testing.T) {
			all, err := st.List(ctx(t), "", 0)
			if err != nil {
				t.Fatal(err)
			}
			if len(all) < 4 {
				t.Fatalf("%d approvals listed", len(all))
			}
			approved, err := st.List(ctx(t), StateApproved, 0)
			if err != nil || len(approved) != 1 || approved[0].ID != base.ID {
				t.Fatalf("approved: %v %v", approved, err)
			}
			one, err := st.List(ctx(t), "", 1)
			if err != nil || len(one) != 1 {
				t.Fatalf("limit 1: %d %v", len(one), err)
			}
			for i := 1; i < len(all); i++ {
				if all[i].Created.After(all[i-1].Created) {
					t.Fatal("not newest first")
				}
			}
		})

		t.Run("watch wakes on update", func(t *testing.T) {
			changed, stop := st.Watch(base.ID)
			defer stop()
			if _, err := st.Update(ctx(t), base.ID, func(a *Approval) error { a.Reason = "x"; return nil }); err != nil {
				t.Fatal(err)
			}
			select {
			case <-changed:
			case <-ctx(t).Done():
				t.Fatal("no wake-up")
			}
		})
	})
}
