package policy

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/custos-dev/custos/config"
	"github.com/custos-dev/custos/filters/identity"
	"github.com/custos-dev/custos/filters/inspect"
	"github.com/custos-dev/custos/filters/request"
	"github.com/custos-dev/custos/policies"
	"github.com/open-policy-agent/opa/v1/ast"
)

func bundleFS(rego string) Source {
	return FS("test", fstest.MapFS{"custos/authz.rego": {Data: []byte("package custos.authz\n\n" + rego + "\n")}})
}

// loadRego is a Rego whose learner has no budget: tests decide faster
// than it would allow.
func loadRego(t *testing.T, src Source, cache int) *Rego {
	t.Helper()
	r, err := NewRego(context.Background(), RegoOptions{Source: src, PollInterval: time.Hour, DecisionCache: cache})
	if err != nil {
		t.Fatal(err)
	}
	r.budgetMu.Lock()
	r.share, r.burst, r.left = 1, time.Hour, time.Hour
	r.budgetMu.Unlock()
	t.Cleanup(func() { r.Close() })
	return r
}

// decide is r's decision for in, once the learner has kept it.
func decide(r *Rego, in Input) (Decision, error) {
	d, err := r.Decide(context.Background(), in)
	r.learning.Wait()
	return d, err
}

func cacheInput(id string, groups []string, risk inspect.Risk, at time.Time) Input {
	return Input{
		Principal: identity.Principal{Issuer: "https://idp", Subject: "nightly-etl", Kind: identity.KindWorkload, GroupNames: groups},
		Request: &request.Request{ID: id, Connection: config.Connection{Name: "customers", Kind: "http"}, Method: "GET",
			Path: "/1", Headers: map[string]string{"x-request-id": id}},
		Action: inspect.Action{Kind: "http", Risk: risk, Summary: "GET /1"},
		Time:   at,
	}
}

func paths(rs readSet) []string {
	var out []string
	for _, p := range rs.paths {
		out = append(out, p.String())
	}
	slices.Sort(out)
	return out
}

// The read set is every constant prefix of a reference into the input;
// anything the analysis cannot bound turns caching off for the bundle.
func TestReadSet(t *testing.T) {
	for _, tc := range []struct {
		name, rego string
		want       []string // nil: not cacheable
	}{
		{"refs", `decision := {"allow": input.a.b == input.c}`, []string{"input.a.b", "input.c"}},
		{"nested path covered", `decision := {"allow": input.a.b == object.get(input.a, "x", 1)}`, []string{"input.a"}},
		{"dynamic key stops the prefix", "decision := {\"allow\": true} if { some k; input.a[k].b == 1 }", []string{"input.a"}},
		{"import", "import input.principal as p\n\ndecision := {\"allow\": p.kind == \"human\"}", []string{"input.principal"}},
		{"with replaces, not reads", "decision := {\"allow\": x} if x := f with input as {\"q\": input.z}\n\nf := input.q", []string{"input.q", "input.z"}},
		{"template string", `decision := {"allow": true, "reasons": [$"path {input.request.path}"]}`, []string{"input.request.path"}},
		{"every", "decision := {\"allow\": true} if every g in input.principal.groups { g != \"x\" }", []string{"input.principal.groups"}},
		{"import of the whole input", "import input\n\ndecision := {\"allow\": input.a}", nil},
		{"head reference", "allowed.users[input.principal.subject] := true\n\ndecision := {\"allow\": object.get(allowed.users, \"alice\", false)}", []string{"input.principal.subject"}},
		{"head reference of an else", "r.a.b := 1 if false\nelse := 2\n\nq.c[input.z] := 1\n\ndecision := {\"allow\": true}", []string{"input.z"}},
		{"certificates against the clock", `decision := {"allow": crypto.x509.parse_and_verify_certificates(input.c)[0]}`, nil},
		{"a builtin swapped for randomness", "r := x if { x := lower(input.p) with lower as uuid.rfc4122 }\n\ndecision := {\"allow\": true, \"reasons\": [r]}", nil},
		{"input whole", `decision := {"allow": count(input) > 0}`, nil},
		{"input whole by object.get", `decision := {"allow": object.get(input, "a", false)}`, nil},
		{"dynamic root", "decision := {\"allow\": true} if { some k; input[k] }", nil},
		{"clock", `decision := {"allow": time.now_ns() > 0}`, nil},
		{"clock in a value", `decision := {"allow": true, "reasons": [sprintf("%d", [time.now_ns()])]}`, nil},
		{"randomness", `decision := {"allow": rand.intn("x", 2) == 0}`, nil},
		{"network", `decision := {"allow": http.send({"method": "GET", "url": "http://x"}).status_code == 200}`, nil},
		{"token expiry", `decision := {"allow": io.jwt.decode_verify(input.t, {"secret": "s"})[0]}`, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, _, err := bundleFS(tc.rego).read(context.Background(), "", nil)
			if err != nil {
				t.Fatal(err)
			}
			rs, ok := analyse(b)
			if tc.want == nil {
				if ok {
					t.Fatalf("cacheable with read set %v", paths(rs))
				}
				return
			}
			if !ok || !slices.Equal(paths(rs), tc.want) {
				t.Fatalf("read set %v (cacheable %v), want %v", paths(rs), ok, tc.want)
			}
		})
	}
}

// The default bundle reads no request id, header or clock: two requests
// alike in everything it reads share one evaluation, each with its own
// decision id; anything it reads that differs is evaluated anew.
func TestDecisionCacheOfTheDefaultBundle(t *testing.T) {
	r := loadRego(t, FS(policies.Builtin, policies.Bundle), 0)
	c := r.cur.Load()
	if c.cache == nil {
		t.Fatal("the default bundle is not cacheable")
	}
	for _, p := range paths(c.cache.bound) {
		if p == "input.request.id" || p == "input.time" || p == "input.request.headers" || p == "input.grants" {
			t.Fatalf("the default bundle is said to read %s", p)
		}
	}
	now := time.Now()
	first, err := decide(r, cacheInput("r-1", []string{"customers-readers"}, inspect.RiskRead, now))
	if err != nil || !first.Allow {
		t.Fatalf("%+v %v", first, err)
	}
	if first.Cached {
		t.Fatal("the first decision is said to come from the cache")
	}
	first.Reasons[0] = "changed by the caller"
	second, err := decide(r, cacheInput("r-2", []string{"customers-readers"}, inspect.RiskRead, now.Add(time.Hour)))
	if err != nil || !second.Allow || second.ID == first.ID || second.ID == "" || second.Revision != r.Revision() {
		t.Fatalf("%+v %v", second, err)
	}
	if !second.Cached {
		t.Fatal("the second decision is not marked as cached")
	}
	if second.Reasons[0] == "changed by the caller" {
		t.Fatal("a caller's change to a decision reached the cache")
	}
	if c.cache.n != 1 {
		t.Fatalf("%d decisions kept for two alike requests", c.cache.n)
	}
	denied, err := decide(r, cacheInput("r-3", []string{"customers-readers"}, inspect.RiskWrite, now))
	if err != nil || denied.Allow {
		t.Fatalf("a write by a reader: %+v %v", denied, err)
	}
	other, err := decide(r, cacheInput("r-4", []string{"marketing"}, inspect.RiskRead, now))
	if err != nil || other.Allow {
		t.Fatalf("an unmapped group: %+v %v", other, err)
	}
	if c.cache.n != 3 {
		t.Fatalf("%d decisions kept, want 3", c.cache.n)
	}
}

// A bundle that reads the clock is evaluated every time, and a full cache
// starts again rather than growing.
func TestDecisionCacheLimits(t *testing.T) {
	clock := loadRego(t, bundleFS(`decision := {"allow": true, "reasons": [sprintf("%d", [time.now_ns()])]}`), 0)
	a, err := decide(clock, cacheInput("r-1", nil, inspect.RiskRead, time.Unix(1, 0)))
	if err != nil {
		t.Fatal(err)
	}
	b, err := decide(clock, cacheInput("r-1", nil, inspect.RiskRead, time.Unix(2, 0)))
	if err != nil {
		t.Fatal(err)
	}
	if a.Reasons[0] == b.Reasons[0] {
		t.Fatalf("a clock-reading decision came from the cache: %v", b.Reasons)
	}

	small := loadRego(t, bundleFS(`decision := {"allow": true, "reasons": [input.request.path]}`), 2)
	for i := range 5 {
		in := cacheInput("r", nil, inspect.RiskRead, time.Now())
		in.Request.Path = fmt.Sprintf("/%d", i)
		d, err := decide(small, in)
		if err != nil || d.Reasons[0] != in.Request.Path {
			t.Fatalf("%+v %v", d, err)
		}
		if n := small.cur.Load().cache.n; n > 2 {
			t.Fatalf("%d decisions kept, at most 2 allowed", n)
		}
	}

	off := loadRego(t, bundleFS(`decision := {"allow": true}`), -1)
	if off.cur.Load().cache != nil {
		t.Fatal("a negative DecisionCache keeps decisions")
	}
}

// A cached decision is always the one an evaluation gives: random inputs
// from a small domain (so most repeat what the bundle reads, and differ in
// what it does not), decided by the default bundle with and without the
// cache.
func TestDecisionCacheAgreesWithEvaluation(t *testing.T) {
	cached := loadRego(t, FS(policies.Builtin, policies.Bundle), 0)
	plain := loadRego(t, FS(policies.Builtin, policies.Bundle), -1)
	r := rand.New(rand.NewPCG(7, 8))
	pick := func(xs ...string) string { return xs[r.IntN(len(xs))] }
	for n := range 1500 {
		in := cacheInput(fmt.Sprintf("r-%d", n), []string{pick("customers-readers", "customers-writers", "customers-admins", "marketing")},
			inspect.Risk(pick("read", "write", "destructive", "admin", "unknown", "catastrophic")), time.Unix(int64(n), 0))
		in.Principal.Kind = pick("workload", "human")
		in.Principal.GroupsUnknown = r.IntN(10) == 0
		in.Request.Connection.Name = pick("customers", "warehouse", "ledger")
		in.Request.Path = pick("/1", "/2")
		in.Request.Headers["x-noise"] = fmt.Sprint(r.Int())
		switch pick("http", "sql", "kubernetes") {
		case "sql":
			in.Action.Kind, in.Request.Connection.Kind = "sql", "sql-http"
			in.Action.Details = map[string]any{"statements": []any{map[string]any{"verb": "select", "tables": []any{pick("customers", "orders", "public.cards")}}}}
		case "kubernetes":
			in.Action.Kind, in.Request.Connection.Kind = "kubernetes", "kubernetes"
			in.Action.Details = map[string]any{"verb": "get", "resource": pick("pods", "secrets"), "subresource": pick("", "exec")}
		}
		in.Action.Summary = pick("GET /1", "DELETE /1")
		want, err1 := decide(plain, in)
		got, err2 := decide(cached, in)
		if (err1 == nil) != (err2 == nil) {
			t.Fatalf("input %d: errors differ: %v / %v", n, err1, err2)
		}
		want.ID, got.ID, got.Cached = "", "", false
		if !reflect.DeepEqual(want, got) {
			t.Fatalf("input %d: the cache answered\n%+v\nan evaluation\n%+v", n, got, want)
		}
	}
	if c := cached.cur.Load().cache; c.n == 0 || c.n >= 1500 {
		t.Fatalf("%d decisions kept for 1500 requests: the test does not exercise the cache", c.n)
	}
}

// What the reviewers found: a rule head's reference into the input, and
// numbers a policy can tell apart that ast.Compare calls equal.
func TestDecisionCacheKeepsRequestsApart(t *testing.T) {
	heads := loadRego(t, bundleFS("allowed.users[input.principal.subject] := true\n\ndecision := {\"allow\": object.get(allowed.users, \"alice\", false)}"), 0)
	alice := cacheInput("r-1", nil, inspect.RiskRead, time.Now())
	alice.Principal.Subject = "alice"
	mallory := cacheInput("r-2", nil, inspect.RiskRead, time.Now())
	mallory.Principal.Subject = "mallory"
	if d, err := decide(heads, alice); err != nil || !d.Allow {
		t.Fatalf("alice: %+v %v", d, err)
	}
	if d, err := decide(heads, mallory); err != nil || d.Allow {
		t.Fatalf("mallory got alice's decision: %+v %v", d, err)
	}

	numbers := loadRego(t, bundleFS(`decision := {"allow": json.marshal(input.action.http.amount) == "1", "reasons": [json.marshal(input.action.http.amount)]}`), 0)
	for _, tc := range []struct {
		n     string
		allow bool
	}{{"1", true}, {"1.0", false}, {"1e0", false}, {"1", true}} {
		in := cacheInput("r", nil, inspect.RiskRead, time.Now())
		in.Action.Details = map[string]any{"amount": json.Number(tc.n)}
		d, err := decide(numbers, in)
		if err != nil || d.Allow != tc.allow || d.Reasons[0] != tc.n {
			t.Fatalf("amount %s: %+v %v", tc.n, d, err)
		}
	}

	big := loadRego(t, bundleFS(`decision := {"allow": count(input.action.summary) > 0}`), 0)
	in := cacheInput("r", nil, inspect.RiskRead, time.Now())
	in.Action.Summary = strings.Repeat("x", maxKeyBytes)
	if _, err := decide(big, in); err != nil {
		t.Fatal(err)
	}
	if n := big.cur.Load().cache.n; n != 0 {
		t.Fatalf("a %d-byte key was kept", len(in.Action.Summary))
	}
}

// A decision is kept by what its own evaluation read: the default bundle's
// decisions never read the request's path or summary, so one evaluation
// serves a reader's GET of every path, and another its denied PUT of
// every path; a bundle whose denial quotes the request makes each such
// denial its own.
func TestDecisionCacheLearnsWhatEachEvaluationReads(t *testing.T) {
	at := func(id, method, path string, risk inspect.Risk) Input {
		in := cacheInput(id, []string{"customers-readers"}, risk, time.Now())
		in.Request.Method, in.Request.Path, in.Request.OriginalPath = method, path, "/customers"+path
		in.Action.Summary = method + " " + path
		return in
	}
	r := loadRego(t, FS(policies.Builtin, policies.Bundle), 0)
	for i, path := range []string{"/1", "/2", "/3"} {
		d, err := decide(r, at(fmt.Sprint("r-", i), "GET", path, inspect.RiskRead))
		if err != nil || !d.Allow || d.Cached != (i > 0) {
			t.Fatalf("GET %s: %+v %v (the reads after the first should come from the cache)", path, d, err)
		}
	}
	for i, path := range []string{"/1", "/2"} {
		d, err := decide(r, at("w", "PUT", path, inspect.RiskWrite))
		if err != nil || d.Allow || d.Cached != (i > 0) || strings.Contains(strings.Join(d.Reasons, " "), path) {
			t.Fatalf("PUT %s: %+v %v (the denials after the first should come from the cache, and name no path)", path, d, err)
		}
	}
	c := r.cur.Load().cache
	if c.n != 2 || len(c.shapes) != 1 {
		t.Fatalf("%d decisions in %d shapes kept, want 2 in 1 (the read and the write read the same parts)", c.n, len(c.shapes))
	}
	if st := r.CacheStats(); st.Entries != 2 || st.Learnt != 2 || st.Unlearnt != 0 || st.Skipped != 0 {
		t.Fatalf("stats %+v", st)
	}

	q := loadRego(t, bundleFS(`
default allow := false
allow if input.action.risk == "read"
reasons contains sprintf("%s is refused", [input.action.summary]) if not allow
decision := {"allow": allow, "reasons": [r | some r in reasons]}`), 0)
	for i, path := range []string{"/1", "/2", "/3"} {
		if d, err := decide(q, at(fmt.Sprint("r-", i), "GET", path, inspect.RiskRead)); err != nil || !d.Allow || d.Cached != (i > 0) {
			t.Fatalf("GET %s: %+v %v (the reads after the first should come from the cache)", path, d, err)
		}
	}
	for _, path := range []string{"/1", "/2"} {
		d, err := decide(q, at("w", "PUT", path, inspect.RiskWrite))
		if err != nil || d.Allow || d.Cached || !strings.Contains(strings.Join(d.Reasons, " "), "PUT "+path) {
			t.Fatalf("PUT %s: %+v %v (a denial quoting the request is its own)", path, d, err)
		}
	}
	if st := q.CacheStats(); st.Entries != 3 || st.Learnt != 3 {
		t.Fatalf("stats %+v", st)
	}
	// The same denial again is found.
	if d, err := decide(q, at("w", "PUT", "/2", inspect.RiskWrite)); err != nil || !d.Cached {
		t.Fatalf("the same denial again: %+v %v", d, err)
	}
}

// The tracer must see every read, or a decision would be kept for inputs
// it does not hold for. Bundles built from what could hide a read (rules
// the indexer would pick by the input, else chains, functions, with,
// negation, every, comprehensions, a head keyed by the input, iteration
// over an input object) decide random inputs from a small domain, with and
// without the cache: the answers must always agree.
func TestDecisionCacheAgreesOnEveryConstruct(t *testing.T) {
	bundles := map[string]string{
		"indexed rules": `
default allow := false
allow if { input.request.method == "GET"; input.principal.kind == "workload" }
allow if { input.request.method == "POST"; input.principal.subject == "a" }
rs contains "post" if input.request.method == "POST"
rs contains sprintf("path %s", [input.request.path]) if input.principal.subject == "b"
rs contains "kind" if input.action.kind == "sql"
decision := {"allow": allow, "reasons": sort([r | some r in rs])}`,
		"functions, else, with, not, every": `
f(x) := "w" if x == "workload" else := "h"
default bad := false
bad if { not input.principal.groups_unknown; count(input.principal.group_names) == 0 }
default all_c := false
all_c if { every g in input.principal.group_names { startswith(g, "c") } }
inner := input.principal.subject
sub := x if { x := inner with input.principal.subject as "zz" }
decision := {"allow": all_c, "reasons": [f(input.principal.kind), sprintf("%v", [bad]), sub]}`,
		"heads keyed by the input": `
by_path[input.request.path] := input.request.method
level := 2 if input.principal.kind == "human" else := 1 if input.action.risk == "read" else := 0
decision := {"allow": level > 0, "reasons": [json.marshal(by_path), sprintf("%d", [level])]}`,
		"iteration over the input": `
names := {g | some g in input.principal.group_names}
hdr := [k | some k, _ in input.request.headers]
decision := {"allow": count(names) > 1, "reasons": [concat(",", sort(hdr))]} if input.request.method == "GET" else := {"allow": false, "reasons": [input.action.summary]}`,
	}
	for name, rego := range bundles {
		t.Run(name, func(t *testing.T) {
			cached := loadRego(t, bundleFS(rego), 0)
			plain := loadRego(t, bundleFS(rego), -1)
			r := rand.New(rand.NewPCG(3, 4))
			pick := func(xs ...string) string { return xs[r.IntN(len(xs))] }
			hits := 0
			for n := range 400 {
				var groups []string
				for _, g := range []string{"c1", "c2", "d"} {
					if r.IntN(2) == 0 {
						groups = append(groups, g)
					}
				}
				in := cacheInput(fmt.Sprintf("r-%d", n), groups, inspect.Risk(pick("read", "write")), time.Unix(int64(n), 0))
				in.Principal.Subject = pick("a", "b")
				in.Principal.Kind = pick("workload", "human")
				in.Principal.GroupsUnknown = r.IntN(4) == 0
				in.Request.Method = pick("GET", "POST")
				in.Request.Path = pick("/1", "/2")
				in.Request.Headers = map[string]string{pick("x-a", "x-b"): "1"}
				in.Action.Kind = pick("http", "sql")
				in.Action.Summary = in.Request.Method + " " + in.Request.Path
				want, err1 := plain.Decide(context.Background(), in)
				got, err2 := decide(cached, in)
				if err1 != nil || err2 != nil {
					t.Fatalf("input %d: %v / %v", n, err1, err2)
				}
				if got.Cached {
					hits++
				}
				want.ID, got.ID, got.Cached = "", "", false
				if !reflect.DeepEqual(want, got) {
					t.Fatalf("input %d %+v: the cache answered\n%+v\nan evaluation\n%+v", n, in, got, want)
				}
			}
			if hits == 0 || hits == 400 {
				t.Fatalf("%d of 400 decisions from the cache: the test does not exercise it", hits)
			}
		})
	}
}

// The learner keeps only the decision the request got: an evaluation
// without rule indexing that disagreed with it would cost a miss, never
// a wrong answer.
func TestDecisionCacheKeepsOnlyWhatTheRequestGot(t *testing.T) {
	r := loadRego(t, FS(policies.Builtin, policies.Bundle), 0)
	c := r.cur.Load()
	in := cacheInput("r", []string{"customers-readers"}, inspect.RiskRead, time.Now())
	doc, err := documentValue(in, nil)
	if err != nil {
		t.Fatal(err)
	}
	got, err := c.eval(context.Background(), doc, in.Time)
	if err != nil || !got.Allow {
		t.Fatalf("%+v %v", got, err)
	}
	other := got.clone()
	other.Allow = false
	c.learnFrom(doc, in.Time, other)
	if c.cache.n != 0 {
		t.Fatal("a decision the request did not get was kept")
	}
	got.ID = "an id"
	c.learnFrom(doc, in.Time, got)
	if c.cache.n != 1 {
		t.Fatal("the decision the request got was not kept")
	}
}

// The decision cache takes single fields straight from the Input; each
// must be what the document built from it holds there.
func TestLeafValueAgreesWithTheDocument(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	pick := func(xs ...string) string { return xs[r.IntN(len(xs))] }
	var fields []ast.Ref
	for _, f := range []string{"issuer", "subject", "kind", "app", "groups", "roles", "actor", "group_names", "groups_unknown", "claims", "nope"} {
		fields = append(fields, ast.MustParseRef("input.principal."+f))
	}
	for _, f := range []string{"connection.name", "connection.kind", "connection.labels", "request.id", "request.method", "request.path",
		"request.original_path", "request.body_bytes", "request.headers", "action.kind", "action.risk", "action.summary", "action.http", "action.sql", "action.risk.x", "time"} {
		fields = append(fields, ast.MustParseRef("input."+f))
	}
	known := 0
	for n := range 300 {
		in := cacheInput(fmt.Sprint(n), nil, inspect.Risk(pick("read", "write", "")), time.Now())
		if r.IntN(2) == 0 {
			in.Principal.GroupNames = []string{pick("a", "b"), pick("", "c")}
			in.Principal.Groups = []string{"g"}
		}
		in.Principal.GroupsUnknown = r.IntN(2) == 0
		in.Principal.App = pick("", "app")
		in.Action.Kind = pick("http", "sql", "", "risk", "summary")
		if r.IntN(2) == 0 {
			in.Action.Details = map[string]any{"x": 1}
		}
		if r.IntN(4) == 0 {
			in.Request = nil
		}
		doc, err := documentValue(in, nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range fields {
			v, ok := leafValue(in, p)
			if !ok {
				continue
			}
			known++
			want, err := doc.Find(p[1:])
			if err != nil {
				want = nil
			}
			if (v == nil) != (want == nil) || (v != nil && !exactEqual(v, want)) {
				t.Fatalf("input %d, %v: leafValue %v, the document %v", n, p, v, want)
			}
		}
	}
	if known == 0 {
		t.Fatal("no path taken straight from the input")
	}
}

// The learner is handed inputs only while the time it has spent is within
// its share of a core: past it, requests are decided and not learnt.
func TestLearnerKeepsToItsShareOfACore(t *testing.T) {
	r := loadRego(t, FS(policies.Builtin, policies.Bundle), 0)
	r.budgetMu.Lock()
	r.share, r.burst, r.left, r.refilled = learnShare, learnBurst, 0, time.Now().Add(-time.Hour)
	r.budgetMu.Unlock()
	if left := r.budget(0); left != learnBurst {
		t.Fatalf("an hour idle refills the budget to %v, want the burst %v", left, learnBurst)
	}
	if left := r.budget(learnBurst + 50*time.Millisecond); left > -49*time.Millisecond {
		t.Fatalf("after overspending, %v left", left)
	}
	// The overspent budget refills in real time: a slow machine must not
	// refill it before the requests below, so it is made to stay spent.
	r.budgetMu.Lock()
	r.left = -time.Hour
	r.budgetMu.Unlock()
	in := cacheInput("r-1", []string{"customers-readers"}, inspect.RiskRead, time.Now())
	for i := range 2 {
		d, err := decide(r, in)
		if err != nil || !d.Allow || d.Cached {
			t.Fatalf("request %d: %+v %v (nothing may be learnt over budget)", i, d, err)
		}
	}
	if n := r.cur.Load().cache.n; n != 0 {
		t.Fatalf("%d decisions learnt over budget", n)
	}
	if st := r.CacheStats(); st.Skipped != 2 || st.Learnt != 0 || st.Entries != 0 {
		t.Fatalf("stats %+v, want 2 skipped", st)
	}
}

// Requests decided at once, while the learner keeps decisions and a small
// cache keeps starting again, get what an evaluation gives (run with -race
// by make test).
func TestDecisionCacheUnderConcurrency(t *testing.T) {
	cached := loadRego(t, FS(policies.Builtin, policies.Bundle), 50)
	plain := loadRego(t, FS(policies.Builtin, policies.Bundle), -1)
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(w), 9))
			pick := func(xs ...string) string { return xs[r.IntN(len(xs))] }
			for n := range 300 {
				in := cacheInput(fmt.Sprintf("r-%d-%d", w, n), []string{pick("customers-readers", "customers-writers", "marketing")},
					inspect.Risk(pick("read", "write", "destructive")), time.Now())
				in.Principal.Subject = pick("a", "b", "c")
				in.Request.Path = pick("/1", "/2", "/3")
				in.Action.Summary = "GET " + in.Request.Path
				got, err1 := cached.Decide(context.Background(), in)
				want, err2 := plain.Decide(context.Background(), in)
				if err1 != nil || err2 != nil {
					errs <- fmt.Errorf("%v / %v", err1, err2)
					return
				}
				want.ID, got.ID, got.Cached = "", "", false
				if !reflect.DeepEqual(want, got) {
					errs <- fmt.Errorf("worker %d input %d: the cache answered %+v, an evaluation %+v", w, n, got, want)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if st := cached.CacheStats(); st.Learnt == 0 {
		t.Fatalf("stats %+v: nothing learnt", st)
	}
}
