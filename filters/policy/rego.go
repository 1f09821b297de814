package policy

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/bundle"
	"github.com/open-policy-agent/opa/v1/rego"
)

// Query is the rule every bundle must define (CONTRACT.md).
const Query = "data.custos.authz.decision"

// Defaults of RegoOptions.
const (
	DefaultPollInterval = 5 * time.Second
	// MaxBundleBytes bounds a bundle, read from disk or a server.
	MaxBundleBytes = 64 << 20
)

// Verification is the key signed bundles are verified with (OPA's bundle
// signing). With it, an unsigned or badly signed bundle is refused.
type Verification struct {
	// Key is the PEM public key (or the HMAC secret for HS* algorithms).
	Key []byte
	// KeyID is the key's id, as the signature's keyid names it (default
	// "default").
	KeyID string
	// Algorithm is the signature algorithm (default RS256).
	Algorithm string
}

// Change is one bundle load: a new revision in force, or a bundle refused
// while the last good one keeps deciding.
type Change struct {
	// Revision is the revision now in force.
	Revision string
	// Previous is the revision before ("" at the first load).
	Previous string
	// Source is the bundle's directory or URL.
	Source string
	// Err is why a new bundle was refused (Revision is then unchanged).
	Err error
}

// RegoOptions configure a Rego evaluator.
type RegoOptions struct {
	// Source is where the bundle comes from.
	Source Source
	// PollInterval is how often the source is checked for a new bundle
	// (DefaultPollInterval).
	PollInterval time.Duration
	// Verification, when set, requires every bundle to be signed with it.
	Verification *Verification
	// OnChange is called after every load attempt after the first
	// (policy_changed); it must not block long.
	OnChange func(Change)
	// Logger receives load errors (default: discarded).
	Logger *slog.Logger
	// DecisionCache is how many decisions each bundle revision keeps,
	// by the parts of the input its Rego reads (DefaultDecisionCache when
	// 0; none when negative). A bundle that reads the clock, randomness
	// or the network, or the input whole, is never cached.
	DecisionCache int
}

// Rego decides with the bundle's data.custos.authz.decision, evaluated by
// embedded OPA. The bundle is compiled once per revision; a new bundle is
// swapped in whole while requests keep deciding, and a bundle that does not
// load, verify or compile is refused with its errors while the last good
// one stays.
type Rego struct {
	o        RegoOptions
	cur      atomic.Pointer[compiled]
	stop     chan struct{}
	once     sync.Once
	reload   sync.Mutex
	vconfig  *bundle.VerificationConfig
	onChange atomic.Pointer[func(Change)]
	// refused is the stamp of the last bundle refused, so a bad bundle left
	// in place is reported once, not at every poll.
	refused string
	// The learner's queue, budget and work in progress (learn).
	jobs     chan learnJob
	budgetMu sync.Mutex
	left     time.Duration
	refilled time.Time
	share    float64       // learnShare, but for tests
	burst    time.Duration // learnBurst, but for tests
	learnt   atomic.Uint64
	unlearnt atomic.Uint64
	skipped  atomic.Uint64
	learning sync.WaitGroup
	workers  sync.WaitGroup
}

type compiled struct {
	pq       rego.PreparedEvalQuery
	revision string
	stamp    string
	cache    *decisionCache // nil: every decision is evaluated
}

// NewRego loads and compiles the bundle once (an error refuses the
// configuration) and then follows the source until Close.
func NewRego(ctx context.Context, o RegoOptions) (*Rego, error) {
	if o.Source == nil {
		return nil, errors.New("policy: no bundle source")
	}
	if o.PollInterval <= 0 {
		o.PollInterval = DefaultPollInterval
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.DecisionCache == 0 {
		o.DecisionCache = DefaultDecisionCache
	}
	r := &Rego{o: o, stop: make(chan struct{}), jobs: make(chan learnJob, learnQueue), left: learnBurst, refilled: time.Now(), share: learnShare, burst: learnBurst}
	if v := o.Verification; v != nil {
		id, alg := v.KeyID, v.Algorithm
		if id == "" {
			id = "default"
		}
		if alg == "" {
			alg = "RS256"
		}
		r.vconfig = bundle.NewVerificationConfig(map[string]*bundle.KeyConfig{id: {Key: string(v.Key), Algorithm: alg}}, id, "", nil)
	}
	c, _, err := r.load(ctx, "")
	if err != nil {
		return nil, err
	}
	r.cur.Store(c)
	if o.OnChange != nil {
		r.onChange.Store(&o.OnChange)
	}
	r.workers.Add(1)
	go r.follow()
	if o.DecisionCache > 0 {
		r.workers.Add(1)
		go r.learner()
	}
	return r, nil
}

// Revision is the revision in force.
func (r *Rego) Revision() string { return r.cur.Load().revision }

// Close stops following the source; Decide keeps working with the last
// bundle.
func (r *Rego) Close() error {
	r.once.Do(func() { close(r.stop) })
	r.workers.Wait()
	return nil
}

// Reload checks the source now, as the poll would.
func (r *Rego) Reload(ctx context.Context) {
	r.reload.Lock()
	defer r.reload.Unlock()
	old := r.cur.Load()
	c, stamp, err := r.load(ctx, old.stamp)
	switch {
	case errors.Is(err, errUnchanged):
		return
	case err != nil && stamp != "" && stamp == r.refused:
		return
	case err != nil:
		r.refused = stamp
		r.o.Logger.Error("policy bundle refused; the last good bundle keeps deciding", "source", r.o.Source.String(), "revision", old.revision, "error", err)
		r.notify(Change{Revision: old.revision, Previous: old.revision, Source: r.o.Source.String(), Err: err})
		return
	}
	r.cur.Store(c)
	r.o.Logger.Info("policy bundle loaded", "source", r.o.Source.String(), "revision", c.revision, "previous", old.revision)
	r.notify(Change{Revision: c.revision, Previous: old.revision, Source: r.o.Source.String()})
}

func (r *Rego) notify(c Change) {
	if f := r.onChange.Load(); f != nil {
		(*f)(c)
	}
}

// OnChange sets the function told about every load from now on (replacing
// RegoOptions.OnChange) and tells it at once about the bundle in force, as
// the first load.
func (r *Rego) OnChange(f func(Change)) {
	r.onChange.Store(&f)
	f(Change{Revision: r.Revision(), Source: r.o.Source.String()})
}

func (r *Rego) follow() {
	defer r.workers.Done()
	t := time.NewTicker(r.o.PollInterval)
	defer t.Stop()
	for {
		select {
		case <-r.stop:
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			r.Reload(ctx)
			cancel()
		}
	}
}

// errUnchanged says the source holds the bundle already in force.
var errUnchanged = errors.New("unchanged")

// load reads, verifies and compiles the bundle unless its stamp is stamp
// (errUnchanged). The stamp of what was read comes back with any error.
func (r *Rego) load(ctx context.Context, stamp string) (*compiled, string, error) {
	b, newStamp, err := r.o.Source.read(ctx, stamp, r.vconfig)
	if err != nil {
		return nil, newStamp, err
	}
	if b == nil {
		return nil, "", errUnchanged
	}
	if !definesDecision(b) {
		return nil, newStamp, fmt.Errorf("policy bundle %s defines no %s", r.o.Source, Query)
	}
	// The decision cache's tracer sees every read of the input only
	// because nothing else reads it: no resolver, external rule source or
	// custom builtin may be added here while the cache is on.
	var comp *ast.Compiler
	pq, err := rego.New(
		rego.Query(Query),
		rego.ParsedBundle("custos", b),
		rego.StrictBuiltinErrors(true),
		rego.CompilerHook(func(c *ast.Compiler) { comp = c }),
	).PrepareForEval(ctx)
	if err != nil {
		return nil, newStamp, fmt.Errorf("policy bundle %s does not compile: %w", r.o.Source, err)
	}
	rev := b.Manifest.Revision
	if rev == "" {
		rev = "sha256:" + newStamp[:16]
	}
	c := &compiled{pq: pq, revision: rev, stamp: newStamp}
	if rs, ok := analyse(b); ok && r.o.DecisionCache > 0 && comp != nil {
		c.cache = newDecisionCache(rs, r.o.DecisionCache, comp.Modules)
	}
	return c, newStamp, nil
}

// definesDecision reports whether a module of b defines the decision rule.
func definesDecision(b *bundle.Bundle) bool {
	want := ast.MustParseRef("data.custos.authz")
	for _, m := range b.Modules {
		if m.Parsed == nil || !m.Parsed.Package.Path.Equal(want) {
			continue
		}
		for _, rule := range m.Parsed.Rules {
			if rule.Head.Name == "decision" || (len(rule.Head.Reference) == 2 && rule.Head.Reference[1].Value.Compare(ast.String("decision")) == 0) {
				return true
			}
		}
	}
	return false
}

// Decide evaluates the decision for in, or finds it in the revision's
// decision cache when an earlier evaluation read the same values of the
// input as this one would. No decision, more than one, or one
// that does not parse is an error (503), never an allow.
func (r *Rego) Decide(ctx context.Context, in Input) (Decision, error) {
	c := r.cur.Load()
	var built map[string]ast.Value
	if c.cache != nil {
		built = make(map[string]ast.Value, len(sections))
		d, ok, err := c.cache.get(func(name string) (ast.Value, error) { return builtSection(in, built, name) },
			func(p ast.Ref) (ast.Value, bool) { return leafValue(in, p) })
		if err != nil {
			return Decision{}, fmt.Errorf("policy input: %w", err)
		}
		if ok {
			d.ID, d.Cached = newDecisionID(), true
			return d, nil
		}
	}
	doc, err := documentValue(in, built)
	if err != nil {
		return Decision{}, fmt.Errorf("policy input: %w", err)
	}
	d, err := c.eval(ctx, doc, in.Time)
	if err != nil {
		return Decision{}, err
	}
	d.ID = newDecisionID()
	if c.cache != nil {
		r.learn(c, doc, in.Time, d.clone()) // the caller owns d
	}
	return d, nil
}

// eval is the bundle's decision for the input document doc, with the
// options given.
func (c *compiled) eval(ctx context.Context, doc ast.Value, at time.Time, opts ...rego.EvalOption) (Decision, error) {
	rs, err := c.pq.Eval(ctx, append(opts, rego.EvalParsedInput(doc), rego.EvalTime(at))...)
	if err != nil {
		return Decision{}, fmt.Errorf("policy %s: evaluation failed: %w", c.revision, err)
	}
	if len(rs) != 1 || len(rs[0].Expressions) != 1 {
		return Decision{}, fmt.Errorf("policy %s: %w: %s is undefined for this request", c.revision, ErrMalformed, Query)
	}
	d, err := ParseDecision(rs[0].Expressions[0].Value)
	if err != nil {
		return Decision{}, fmt.Errorf("policy %s: %w", c.revision, err)
	}
	d.Revision = c.revision
	return d, nil
}

// Learning: what an evaluation reads of the input is found by evaluating
// it again with a tracer, off the request's path, so a decision the cache
// does not hold costs the request one plain evaluation, as without a
// cache. The learner takes one input at a time, from a short queue, and
// spends at most learnShare of one core's time (beyond a burst of
// learnBurst): it is handed an input only while the time it has spent is
// within that budget, so a stream of inputs that never repeat, or a
// policy slow to evaluate, costs it no more than that share.
const (
	learnQueue = 64
	learnShare = 0.1
	learnBurst = 100 * time.Millisecond
)

// learnJob is one evaluation to repeat with a tracer, and the decision it
// gave.
type learnJob struct {
	c   *compiled
	doc ast.Value
	at  time.Time
	d   Decision
}

// learn queues doc, just evaluated by c to d, for the learner, unless the
// queue is full or the learner's budget spent.
func (r *Rego) learn(c *compiled, doc ast.Value, at time.Time, d Decision) {
	if r.budget(0) <= 0 {
		r.skipped.Add(1)
		return
	}
	r.learning.Add(1)
	select {
	case r.jobs <- learnJob{c: c, doc: doc, at: at, d: d}:
	default:
		r.learning.Done()
		r.skipped.Add(1)
	}
}

// CacheStats is what the decision cache holds and how its learning went.
type CacheStats struct {
	// Entries is how many decisions the revision in force keeps.
	Entries int
	// Learnt counts inputs evaluated again by the learner whose decision
	// was kept; Unlearnt those whose was not (it read the input whole,
	// disagreed with the request's, or its key was too big); Skipped those
	// not evaluated again (the learner's share of a core spent, or its
	// queue full). All since the start.
	Learnt, Unlearnt, Skipped uint64
}

// CacheStats reports on the decision cache (zero when it is off).
func (r *Rego) CacheStats() CacheStats {
	st := CacheStats{Learnt: r.learnt.Load(), Unlearnt: r.unlearnt.Load(), Skipped: r.skipped.Load()}
	if c := r.cur.Load(); c.cache != nil {
		st.Entries = c.cache.entries()
	}
	return st
}

// budget refills the learner's budget for the time since the last call,
// takes spent from it, and returns what is left.
func (r *Rego) budget(spent time.Duration) time.Duration {
	r.budgetMu.Lock()
	defer r.budgetMu.Unlock()
	now := time.Now()
	r.left = min(r.burst, r.left+time.Duration(float64(now.Sub(r.refilled))*r.share)) - spent
	r.refilled = now
	return r.left
}

// learner evaluates the queued inputs again with a tracer and keeps each
// decision by what its evaluation read.
func (r *Rego) learner() {
	defer r.workers.Done()
	for {
		select {
		case <-r.stop:
			return
		case j := <-r.jobs:
			start := time.Now()
			if j.c.learnFrom(j.doc, j.at, j.d) {
				r.learnt.Add(1)
			} else {
				r.unlearnt.Add(1)
			}
			r.budget(time.Since(start))
			r.learning.Done()
		}
	}
}

// learnFrom evaluates doc with a tracer and without rule indexing (the
// indexer reads the input unannounced) and keeps the decision by what the
// evaluation read, provided it is the decision the request got (want):
// were OPA's indexed and unindexed evaluations ever to differ, the
// difference would cost a cache miss, never a wrong answer. It says
// whether the decision was kept.
func (c *compiled) learnFrom(doc ast.Value, at time.Time, want Decision) bool {
	ctx, cancel := context.WithTimeout(context.Background(), learnTimeout)
	defer cancel()
	d, read, ok, err := c.traceReads(ctx, doc, at)
	if err != nil || !ok {
		return false
	}
	want.ID = ""
	if !reflect.DeepEqual(d, want) {
		return false
	}
	obj, ok := doc.(ast.Object)
	if !ok {
		return false
	}
	return c.cache.put(read, func(name string) (ast.Value, error) {
		if t := obj.Get(ast.StringTerm(name)); t != nil {
			return t.Value, nil
		}
		return nil, nil
	}, d)
}

// traceReads evaluates doc with a tracer and without rule indexing (the
// indexer reads the input unannounced): the decision, and what the
// evaluation read of the input; ok is false when that cannot key a cache
// entry (the input read whole, or a path the bundle's Rego never names).
func (c *compiled) traceReads(ctx context.Context, doc ast.Value, at time.Time) (Decision, readSet, bool, error) {
	tr := c.cache.tracer()
	d, err := c.eval(ctx, doc, at, rego.EvalQueryTracer(tr), rego.EvalRuleIndexing(false))
	if err != nil {
		return Decision{}, readSet{}, false, err
	}
	rs, ok := tr.readSet()
	return d, rs, ok && c.cache.bound.covers(rs), nil
}

// learnTimeout bounds one evaluation by the learner: a policy that slow
// is not worth learning (its time is taken from the learner's budget all
// the same).
const learnTimeout = time.Second

// newDecisionID is a random id for one evaluation.
func newDecisionID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
