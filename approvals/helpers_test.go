package approvals

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/custos-dev/custos/approvals/pgtest"
	"github.com/custos-dev/custos/filters/approval"
	"github.com/custos-dev/custos/filters/identity"
	"github.com/custos-dev/custos/filters/record"
)

func TestMain(m *testing.M) {
	code := m.Run()
	pgtest.Stop()
	os.Exit(code)
}

const issuer = "https://idp.test"

var (
	agent = identity.Principal{Issuer: issuer, Subject: "agent-1", Kind: identity.KindWorkload}
	other = identity.Principal{Issuer: issuer, Subject: "agent-2", Kind: identity.KindWorkload}
	alice = identity.Principal{Issuer: issuer, Subject: "alice", Kind: identity.KindHuman, Groups: []string{"g-dba"},
		GroupNames: []string{"dba"}, Claims: map[string]any{"name": "Alice"}}
	bob   = identity.Principal{Issuer: issuer, Subject: "bob", Kind: identity.KindHuman, Roles: []string{"approver"}}
	carol = identity.Principal{Issuer: issuer, Subject: "carol", Kind: identity.KindHuman, Groups: []string{"g-sales"}}
	robot = identity.Principal{Issuer: issuer, Subject: "robot", Kind: identity.KindWorkload, Groups: []string{"g-dba"}, Roles: []string{"approver"}}
	// humanAgent is a human requester who is an approver too.
	humanAgent = identity.Principal{Issuer: issuer, Subject: "dave", Kind: identity.KindHuman, GroupNames: []string{"dba"}}
)

// clock is a test clock: expiry is driven by it, never by waiting.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// events keeps what the service recorded.
type events struct {
	mu  sync.Mutex
	evs []record.Event
}

func (e *events) Record(_ context.Context, ev record.Event) error {
	e.mu.Lock()
	e.evs = append(e.evs, ev)
	e.mu.Unlock()
	return nil
}

func (e *events) kinds() []record.Kind {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []record.Kind
	for _, ev := range e.evs {
		out = append(out, ev.Kind)
	}
	return out
}

func (e *events) all() []record.Event {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]record.Event(nil), e.evs...)
}

// opener opens a store for a test; the same opener called twice in one
// test opens the same store (a restart, or a second replica).
type opener func(t *testing.T) Store

// stores are the stores every suite test runs on.
func stores() map[string]func(t *testing.T) opener {
	return map[string]func(t *testing.T) opener{
		"file": func(t *testing.T) opener {
			path := filepath.Join(t.TempDir(), "approvals.db")
			return func(t *testing.T) Store {
				s, err := OpenFile(path)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { s.Close() })
				return s
			}
		},
		"postgres": func(t *testing.T) opener {
			url := pgtest.URL(t)
			return func(t *testing.T) Store {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				s, err := Open(ctx, url)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { s.Close() })
				return s
			}
		},
	}
}

// eachStore runs f once per store.
func eachStore(t *testing.T, f func(t *testing.T, open opener)) {
	t.Helper()
	for _, name := range []string{"file", "postgres"} {
		t.Run(name, func(t *testing.T) { f(t, stores()[name](t)) })
	}
}

// fixture is a service on a store, with a test clock and its events.
type fixture struct {
	svc   *Service
	store Store
	clock *clock
	ev    *events
}

func newFixture(t *testing.T, st Store, opts ...func(*Options)) *fixture {
	t.Helper()
	f := &fixture{store: st, clock: newClock(), ev: &events{}}
	o := Options{Store: st, Recorder: f.ev, Now: f.clock.Now, SweepEvery: -1}
	for _, fn := range opts {
		fn(&o)
	}
	svc, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { svc.Close() })
	f.svc = svc
	return f
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return c
}

// request is an approval request for a DELETE by agent.
func request(mod ...func(*approval.Request)) approval.Request {
	r := approval.Request{
		Requester: agent, Connection: "warehouse", Summary: "DELETE FROM orders WHERE id = 7",
		Details: "DELETE FROM orders WHERE id = 7", Fingerprint: "fp-1", Rule: "destructive-sql",
		Reasons: []string{"destructive statement"}, Approvers: []string{"dba", "approver"}, MinApprovals: 1,
		Scope: approval.ScopeRequest, Risk: "destructive", TTL: 30 * time.Minute, RequestID: "req-1",
		Method: "POST", Path: "/query",
	}
	for _, m := range mod {
		m(&r)
	}
	return r
}

func (f *fixture) open(t *testing.T, r approval.Request) string {
	t.Helper()
	p, err := f.svc.Request(ctx(t), r)
	if err != nil {
		t.Fatal(err)
	}
	return p.ID
}

func (f *fixture) vote(t *testing.T, id string, who identity.Principal, decision string) Approval {
	t.Helper()
	a, err := f.svc.Vote(ctx(t), id, who, decision, "ok by me")
	if err != nil {
		t.Fatalf("%s votes %s: %v", who.Subject, decision, err)
	}
	return a
}

func (f *fixture) find(t *testing.T, l approval.Lookup) []approval.Grant {
	t.Helper()
	g, err := f.svc.Find(ctx(t), l)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func lookup(id string, mod ...func(*approval.Lookup)) approval.Lookup {
	l := approval.Lookup{Requester: agent, Connection: "warehouse", ApprovalID: id, Fingerprint: "fp-1", Risk: "destructive"}
	for _, m := range mod {
		m(&l)
	}
	return l
}
