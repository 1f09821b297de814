package approvals

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/custos-dev/custos/filters/approval"
	"github.com/custos-dev/custos/filters/record"
)

func TestOneShotGrantLetsExactlyThatRequestThroughOnce(t *testing.T) {
	eachStore(t, func(t *testing.T, open opener) {
		f := newFixture(t, open(t))
		id := f.open(t, request())
		if g := f.find(t, lookup(id)); len(g) != 0 {
			t.Fatalf("a pending approval granted %v", g)
		}
		f.vote(t, id, alice, Approve)

		// Bound to the requester and the fingerprint: these find nothing
		// and leave the grant unused.
		if g := f.find(t, lookup(id, func(l *approval.Lookup) { l.Requester = other })); len(g) != 0 {
			t.Fatal("another principal used the grant")
		}
		if g := f.find(t, lookup(id, func(l *approval.Lookup) { l.Fingerprint = "fp-2" })); len(g) != 0 {
			t.Fatal("a different request (fingerprint) used the grant")
		}
		if g := f.find(t, lookup(id, func(l *approval.Lookup) { l.Connection = "other" })); len(g) != 0 {
			t.Fatal("the grant was used on another connection")
		}
		g := f.find(t, lookup(id))
		if len(g) != 1 || g[0].ID != id || g[0].Scope != approval.ScopeRequest || g[0].Rule != "destructive-sql" {
			t.Fatalf("the approved request found %v", g)
		}
		if g := f.find(t, lookup(id)); len(g) != 0 {
			t.Fatal("a one-shot grant was used twice")
		}
		a, _ := f.svc.Get(ctx(t), id)
		if a.State != StateUsed {
			t.Fatalf("state %s after use, want used", a.State)
		}
	})
}

func TestConcurrentUseOfOneGrantHasOneWinner(t *testing.T) {
	eachStore(t, func(t *testing.T, open opener) {
		f := newFixture(t, open(t))
		id := f.open(t, request())
		f.vote(t, id, alice, Approve)
		var wins atomic.Int32
		var wg sync.WaitGroup
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				g, err := f.svc.Find(ctx(t), lookup(id))
				if err != nil {
					t.Error(err)
				}
				wins.Add(int32(len(g)))
			}()
		}
		wg.Wait()
		if wins.Load() != 1 {
			t.Fatalf("%d retries went through on one one-shot grant", wins.Load())
		}
	})
}

func TestWindowGrantCoversUpToItsRisk(t *testing.T) {
	eachStore(t, func(t *testing.T, open opener) {
		f := newFixture(t, open(t))
		id := f.open(t, request(func(r *approval.Request) {
			r.Scope, r.Risk, r.Fingerprint, r.Rule = approval.ScopeWindow, "write", "", "writes-need-approval"
		}))
		f.vote(t, id, bob, Approve)
		for risk, want := range map[string]int{"read": 1, "write": 1, "destructive": 0, "admin": 0, "unknown": 0, "": 0} {
			for _, named := range []string{id, ""} { // by x-custos-approval-id, or the requester's windows
				g := f.find(t, lookup(named, func(l *approval.Lookup) { l.Risk, l.Fingerprint = risk, "any" }))
				if len(g) != want {
					t.Errorf("window for write, risk %q, id %q: %d grants, want %d", risk, named, len(g), want)
				}
			}
		}
		// Used again and again within the window, by its requester only.
		if g := f.find(t, lookup(id, func(l *approval.Lookup) { l.Risk = "write" })); len(g) != 1 || g[0].Scope != approval.ScopeWindow {
			t.Fatalf("the window closed after use: %v", g)
		}
		if g := f.find(t, lookup("", func(l *approval.Lookup) { l.Risk, l.Requester = "write", other })); len(g) != 0 {
			t.Fatal("another principal is inside the window")
		}
		if g := f.find(t, lookup(id, func(l *approval.Lookup) { l.Risk, l.Rule = "write", "another-rule" })); len(g) != 0 {
			t.Fatal("the window covered another rule")
		}
		// The window ends with its TTL.
		f.clock.Advance(31 * time.Minute)
		if g := f.find(t, lookup(id, func(l *approval.Lookup) { l.Risk = "write" })); len(g) != 0 {
			t.Fatal("the window outlived its TTL")
		}
		if a, _ := f.svc.Get(ctx(t), id); a.State != StateExpired {
			t.Fatalf("state %s after the TTL, want expired", a.State)
		}
	})
}

func TestRevokedGrantStopsWorking(t *testing.T) {
	eachStore(t, func(t *testing.T, open opener) {
		f := newFixture(t, open(t))
		id := f.open(t, request(func(r *approval.Request) { r.Scope, r.Risk = approval.ScopeWindow, "write" }))
		f.vote(t, id, alice, Approve)
		if g := f.find(t, lookup(id, func(l *approval.Lookup) { l.Risk = "write" })); len(g) != 1 {
			t.Fatal("no grant before revocation")
		}
		if _, err := f.svc.Revoke(ctx(t), id, carol, ""); !errors.Is(err, ErrForbidden) {
			t.Fatalf("a stranger revoked: %v", err)
		}
		a, err := f.svc.Revoke(ctx(t), id, alice, "done")
		if err != nil || a.State != StateRevoked || a.ResolvedBy != alice.ID() {
			t.Fatalf("Revoke = %+v, %v", a, err)
		}
		if g := f.find(t, lookup(id, func(l *approval.Lookup) { l.Risk = "write" })); len(g) != 0 {
			t.Fatal("a revoked grant let a request through")
		}
		if _, err := f.svc.Revoke(ctx(t), id, alice, ""); !errors.Is(err, ErrNotRevocable) {
			t.Fatalf("revoked twice: %v", err)
		}
	})
}

func TestIdenticalPendingRequestsShareOneApproval(t *testing.T) {
	eachStore(t, func(t *testing.T, open opener) {
		f := newFixture(t, open(t))
		a := f.open(t, request())
		if b := f.open(t, request(func(r *approval.Request) { r.RequestID = "req-2" })); b != a {
			t.Fatalf("the same request opened %s and %s", a, b)
		}
		if c := f.open(t, request(func(r *approval.Request) { r.Fingerprint = "fp-2" })); c == a {
			t.Fatal("a different request shared the approval")
		}
		if d := f.open(t, request(func(r *approval.Request) { r.Requester = other })); d == a {
			t.Fatal("another principal's request shared the approval")
		}
		w1 := f.open(t, request(func(r *approval.Request) { r.Scope, r.Risk, r.Fingerprint = approval.ScopeWindow, "write", "x" }))
		if w2 := f.open(t, request(func(r *approval.Request) { r.Scope, r.Risk, r.Fingerprint = approval.ScopeWindow, "write", "y" })); w2 != w1 {
			t.Fatal("two requests under one window rule opened two approvals")
		}
		pending, err := f.svc.List(ctx(t), StatePending)
		if err != nil || len(pending) != 4 {
			t.Fatalf("%d pending, want 4 (%v)", len(pending), err)
		}
		// Each asking request is in the evidence, the shared one too.
		var shared int
		for _, ev := range f.ev.all() {
			if ev.Kind == record.Held && ev.RequestID == "req-2" {
				shared++
			}
		}
		if shared != 1 {
			t.Fatalf("the request that joined was recorded %d times", shared)
		}
	})
}

func TestExpiry(t *testing.T) {
	eachStore(t, func(t *testing.T, open opener) {
		f := newFixture(t, open(t))
		id := f.open(t, request(func(r *approval.Request) { r.Expires = f.clock.Now().Add(time.Hour) }))
		swept := f.open(t, request(func(r *approval.Request) { r.Fingerprint, r.Expires = "fp-2", f.clock.Now().Add(time.Hour) }))
		granted := f.open(t, request(func(r *approval.Request) { r.Fingerprint = "fp-3" }))
		f.vote(t, granted, alice, Approve)

		f.clock.Advance(time.Hour)
		// Lazily, on the next read.
		if a, _ := f.svc.Get(ctx(t), id); a.State != StateExpired || a.ResolvedBy != "expiry" {
			t.Fatalf("state %s past expiry", a.State)
		}
		if _, err := f.svc.Vote(ctx(t), id, alice, Approve, ""); !errors.Is(err, ErrAlreadyResolved) {
			t.Fatalf("vote on an expired approval: %v", err)
		}
		// By the sweeper: the other pending one and the grant past its TTL.
		n, err := f.svc.Sweep(ctx(t))
		if err != nil || n != 2 {
			t.Fatalf("Sweep = %d, %v; want 2", n, err)
		}
		for _, id := range []string{swept, granted} {
			if a, _ := f.store.Get(ctx(t), id); a.State != StateExpired {
				t.Fatalf("%s: %s after the sweep", id, a.State)
			}
		}
		if g := f.find(t, lookup(granted, func(l *approval.Lookup) { l.Fingerprint = "fp-3" })); len(g) != 0 {
			t.Fatal("an expired grant let a request through")
		}
		// An expired request no longer gathers retries: a new one opens.
		if again := f.open(t, request()); again == id {
			t.Fatal("a new request joined an expired approval")
		}
	})
}

func TestAwaitReleasesTheHeldRequest(t *testing.T) {
	eachStore(t, func(t *testing.T, open opener) {
		f := newFixture(t, open(t))
		id := f.open(t, request())
		got := make(chan string, 1)
		go func() {
			state, err := f.svc.Await(ctx(t), id)
			if err != nil {
				t.Error(err)
			}
			got <- state
		}()
		f.vote(t, id, alice, Approve)
		if s := <-got; s != StateApproved {
			t.Fatalf("Await = %s", s)
		}
		// The held request used the grant: it cannot be replayed.
		if g := f.find(t, lookup(id)); len(g) != 0 {
			t.Fatal("a held request's grant was used again")
		}

		denied := f.open(t, request(func(r *approval.Request) { r.Fingerprint = "fp-2" }))
		go func() {
			state, _ := f.svc.Await(ctx(t), denied)
			got <- state
		}()
		f.vote(t, denied, bob, Deny)
		if s := <-got; s != StateDenied {
			t.Fatalf("Await = %s after a deny", s)
		}

		// The hold ends: pending, with the context's error.
		c, cancel := context.WithCancel(ctx(t))
		cancel()
		pend := f.open(t, request(func(r *approval.Request) { r.Fingerprint = "fp-3" }))
		if s, err := f.svc.Await(c, pend); s != StatePending || !errors.Is(err, context.Canceled) {
			t.Fatalf("Await = %s, %v at the end of the hold", s, err)
		}
	})
}

func TestRequestRefusesWhatNobodyCouldGrant(t *testing.T) {
	f := newFixture(t, stores()["file"](t)(t))
	for name, mod := range map[string]func(*approval.Request){
		"no approvers":   func(r *approval.Request) { r.Approvers = nil },
		"anonymous":      func(r *approval.Request) { r.Requester.Subject = "" },
		"no fingerprint": func(r *approval.Request) { r.Fingerprint = "" },
		"unknown scope":  func(r *approval.Request) { r.Scope = "forever" },
	} {
		if _, err := f.svc.Request(ctx(t), request(mod)); err == nil {
			t.Errorf("%s: opened", name)
		}
	}
}
