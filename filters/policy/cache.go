package policy

import (
	"slices"
	"sync"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/bundle"
	"github.com/open-policy-agent/opa/v1/topdown"
)

// DefaultDecisionCache is how many decisions a bundle revision keeps by
// default (RegoOptions.DecisionCache).
const DefaultDecisionCache = 4096

// impureBuiltins read the clock without OPA marking them nondeterministic:
// certificates are verified against the current time unless the call
// gives CurrentTime.
var impureBuiltins = map[string]bool{
	"crypto.x509.parse_and_verify_certificates":              true,
	"crypto.x509.parse_and_verify_certificates_with_options": true,
}

// impure reports whether the builtin named name is not a function of its
// arguments.
func impure(name string) bool {
	bi, known := ast.BuiltinMap[name]
	return known && bi.Nondeterministic || impureBuiltins[name]
}

// inputRoot is the head of every reference into the input document.
var inputRoot = ast.VarTerm("input")

// readSet is what a bundle's Rego can read of the input document: the
// constant prefixes of every reference into it. Two inputs equal on every
// path of the set get the same decision from the same bundle, provided no
// rule calls a builtin whose result is not a function of its arguments
// (time, randomness, the network): a bundle that does, or that reads the
// input whole (`x := input`, `object.get(input, ...)`, `input[k]`), has no
// read set and its decisions are never cached. Such builtins are those
// OPA's catalogue marks nondeterministic (time.now_ns, io.jwt.decode_verify,
// which checks exp and nbf against the clock, rand.intn, uuid.rfc4122,
// http.send, net.lookup_ip_addr, opa.runtime, json.match_schema and
// json.verify_schema, which may fetch remote schemas) and impureBuiltins,
// whether called or named (`with lower as uuid.rfc4122`).
type readSet struct {
	paths []ast.Ref
}

// analyse finds b's read set; ok is false when b's decisions cannot be
// cached.
func analyse(b *bundle.Bundle) (rs readSet, ok bool) {
	var paths []ast.Ref
	for _, m := range b.Modules {
		if m.Parsed == nil {
			return readSet{}, false
		}
		r := collect(m.Parsed)
		if r.whole || r.impure {
			return readSet{}, false
		}
		paths = append(paths, r.paths...)
	}
	return normalize(paths), true
}

// reads is what a piece of Rego can read of the input document.
type reads struct {
	paths  []ast.Ref
	whole  bool // the input read whole, or at a key only known when evaluated
	impure bool // a builtin whose result is not a function of its arguments
}

// collect finds what x (a module, rule head or expression) reads of the
// input: the constant prefix of every reference into it.
func collect(x any) reads {
	var r reads
	record := func(ref ast.Ref) {
		prefix := ast.Ref{inputRoot}
		for _, t := range ref[1:] {
			if _, isStr := t.Value.(ast.String); !isStr {
				break
			}
			prefix = append(prefix, t)
		}
		if len(prefix) == 1 {
			r.whole = true
			return
		}
		r.paths = append(r.paths, prefix)
	}
	var vis *ast.GenericVisitor
	vis = ast.NewGenericVisitor(func(x any) bool {
		if r.whole || r.impure {
			return true
		}
		switch x := x.(type) {
		case *ast.Import:
			if ref, isRef := x.Path.Value.(ast.Ref); isRef && ref.HasPrefix(ast.InputRootRef) {
				record(ref)
			}
			return true
		case *ast.With:
			// The target is replaced, not read; the value is read.
			vis.Walk(x.Value)
			return true
		case *ast.Head:
			// OPA's visitor walks a head's name, arguments, key and value,
			// not its reference: allowed.users[input.x] := true.
			for _, t := range x.Reference {
				vis.Walk(t)
			}
		case ast.Ref:
			if len(x) == 0 || !x[0].Equal(inputRoot) {
				if len(x) > 0 && impure(x.String()) {
					r.impure = true // called, or named as a with value
				}
				return false
			}
			record(x)
			for _, t := range x[1:] {
				vis.Walk(t)
			}
			return true
		case ast.Var:
			if x == ast.Var("input") {
				r.whole = true
			}
		case *ast.Expr:
			if x.IsCall() && impure(x.Operator().String()) {
				r.impure = true
			}
		case *ast.Term:
			if call, isCall := x.Value.(ast.Call); isCall && len(call) > 0 && impure(call[0].String()) {
				r.impure = true
			}
		}
		return false
	})
	vis.Walk(x)
	return r
}

// normalize is paths without repeats, and without paths under another.
// A path under another adds nothing to a key. The paths are sorted, so
// one set read in any order is one signature.
func normalize(paths []ast.Ref) readSet {
	var kept []ast.Ref
	for _, p := range paths {
		covered := false
		for _, q := range paths {
			if len(q) < len(p) && p.HasPrefix(q) {
				covered = true
				break
			}
		}
		if !covered && !containsRef(kept, p) {
			kept = append(kept, p)
		}
	}
	slices.SortFunc(kept, func(a, b ast.Ref) int { return a.Compare(b) })
	return readSet{paths: kept}
}

func containsRef(list []ast.Ref, r ast.Ref) bool {
	for _, x := range list {
		if x.Equal(r) {
			return true
		}
	}
	return false
}

// section is the input document's key name (nil when it has none).
type section func(name string) (ast.Value, error)

// builtSection is in's section name, built once into built for the next
// key and the evaluation.
func builtSection(in Input, built map[string]ast.Value, name string) (ast.Value, error) {
	if v, ok := built[name]; ok {
		return v, nil
	}
	v, err := sectionValue(in, name)
	if err != nil {
		return nil, err
	}
	built[name] = v
	return v, nil
}

// leaf is the value at a path of the input document taken straight from
// what it is built from, without building its section; known is false
// for a path it does not take this way. A nil value with known true is
// nothing there.
type leaf func(p ast.Ref) (v ast.Value, known bool)

// key is the input document seen through the read set: for each path, []
// when the document has nothing there, else [value]. A path leaf knows
// (when leaf is not nil) is taken from it; any other from its section.
func (rs readSet) key(doc section, leaf leaf) (*ast.Array, error) {
	terms := make([]*ast.Term, len(rs.paths))
	for i, p := range rs.paths {
		if leaf != nil {
			if v, known := leaf(p); known {
				if v == nil {
					terms[i] = ast.ArrayTerm()
				} else {
					terms[i] = ast.ArrayTerm(ast.NewTerm(v))
				}
				continue
			}
		}
		v, err := doc(string(p[1].Value.(ast.String)))
		if err != nil {
			return nil, err
		}
		if v != nil && len(p) > 2 {
			var err error
			if v, err = v.Find(p[2:]); err != nil {
				v = nil
			}
		}
		if v == nil {
			terms[i] = ast.ArrayTerm()
			continue
		}
		terms[i] = ast.ArrayTerm(ast.NewTerm(v))
	}
	return ast.NewArray(terms...), nil
}

// covers reports whether every path of sub is in rs or under one of its
// paths.
func (rs readSet) covers(sub readSet) bool {
	for _, p := range sub.paths {
		if !slices.ContainsFunc(rs.paths, func(q ast.Ref) bool { return p.HasPrefix(q) }) {
			return false
		}
	}
	return true
}

// Bounds of a decision cache beside its entry count: a key bigger than
// maxKeyBytes (a long SQL statement in the action) is not kept, the keys
// kept hold at most maxCacheBytes, and at most maxShapes read sets are
// told apart.
const (
	maxKeyBytes   = 16 << 10
	maxCacheBytes = 32 << 20
	maxShapes     = 64
)

// decisionCache holds the decisions of one bundle revision, each by the
// part of the input its evaluation read. An evaluation reads only some of
// what the bundle can read (an HTTP request's evaluation never reaches
// the default bundle's rules for SQL tables), and a decision holds for
// every input equal in what it read: the default bundle's hold for every
// path. The cache therefore keeps one table per read set seen (a shape),
// and a request is looked up in each: a hit in any is the decision its
// evaluation would give, since an evaluation that reads the same values
// takes the same steps. It is bounded: when full it starts again empty,
// so a burst of distinct inputs costs one evaluation each, as without a
// cache.
type decisionCache struct {
	// bound is the bundle's static read set: an evaluation said to read
	// outside it is not kept (a check on the tracer, which should never
	// fire).
	bound readSet
	max   int
	mu    sync.Mutex
	// shapes only grows until the cache starts again (a new slice), so a
	// copy of the header taken under mu can be walked without it.
	shapes []*shape
	n      int
	bytes  int
	// nodes is what each expression and rule of the compiled bundle
	// reads (*ast.Expr, or *ast.Rule for its head → *reads), for the
	// tracer; made at load, read without a lock. An expression OPA makes
	// while it evaluates (the complement of a `not`) is read when seen.
	nodes map[any]*reads
}

// shape is the decisions of one read set.
type shape struct {
	rs readSet
	m  map[int][]cached
}

type cached struct {
	key *ast.Array
	d   Decision
}

func newDecisionCache(bound readSet, max int, modules map[string]*ast.Module) *decisionCache {
	c := &decisionCache{bound: bound, max: max, nodes: map[any]*reads{}}
	vis := ast.NewGenericVisitor(func(x any) bool {
		switch n := x.(type) {
		case *ast.Expr:
			r := collect(n)
			c.nodes[n] = &r
		case *ast.Rule:
			r := collect(n.Head)
			c.nodes[n] = &r
		}
		return false
	})
	for _, m := range modules {
		vis.Walk(m)
	}
	return c
}

// entries is how many decisions c keeps.
func (c *decisionCache) entries() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}

// get returns the decision kept for the input document doc (leaf, when
// not nil, gives some of its values directly).
func (c *decisionCache) get(doc section, leaf leaf) (Decision, bool, error) {
	c.mu.Lock()
	shapes := c.shapes
	c.mu.Unlock()
	for _, s := range shapes {
		key, err := s.rs.key(doc, leaf)
		if err != nil {
			return Decision{}, false, err
		}
		h := key.Hash()
		c.mu.Lock()
		for _, e := range s.m[h] {
			if exactEqual(e.key, key) {
				d := e.d.clone()
				c.mu.Unlock()
				return d, true, nil
			}
		}
		c.mu.Unlock()
	}
	return Decision{}, false, nil
}

// put keeps d (without its id) for the input document doc seen through
// rs, what its evaluation read, and says whether it is kept.
func (c *decisionCache) put(rs readSet, doc section, d Decision) bool {
	key, err := rs.key(doc, nil)
	if err != nil {
		return false
	}
	sz := size(key)
	if sz > maxKeyBytes {
		return false
	}
	h := key.Hash()
	d.ID = ""
	d = d.clone()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n >= c.max || c.bytes+sz > maxCacheBytes {
		c.shapes, c.n, c.bytes = nil, 0, 0
	}
	var s *shape
	for _, x := range c.shapes {
		if slices.EqualFunc(x.rs.paths, rs.paths, func(a, b ast.Ref) bool { return a.Equal(b) }) {
			s = x
			break
		}
	}
	if s == nil {
		if len(c.shapes) >= maxShapes {
			return false
		}
		s = &shape{rs: rs, m: map[int][]cached{}}
		c.shapes = append(c.shapes, s)
	}
	for _, e := range s.m[h] {
		if exactEqual(e.key, key) {
			return true
		}
	}
	s.m[h] = append(s.m[h], cached{key: key, d: d})
	c.n++
	c.bytes += sz
	return true
}

// tracer is a new recorder of what one evaluation reads.
func (c *decisionCache) tracer() *readTracer { return &readTracer{c: c} }

// readTracer records what one evaluation reads of the input document: the
// paths read by every expression OPA evaluates and by the head of every
// rule or function it enters. OPA evaluates every expression through one
// step that announces it (EvalOp), and enters every rule announcing it
// (EnterOp) before it unifies the head; with rule indexing off, which the
// indexer would otherwise read unannounced, nothing else of the input
// is read. A node the tracer does not know marks the evaluation as
// reading everything, so its decision is not kept.
type readTracer struct {
	c     *decisionCache
	seen  map[*reads]struct{}
	paths []ast.Ref
	whole bool
}

// Enabled is always true: the tracer is only given to evaluations whose
// reads are wanted.
func (t *readTracer) Enabled() bool { return true }

// Config asks OPA for no local variables: the tracer needs only nodes.
func (t *readTracer) Config() topdown.TraceConfig { return topdown.TraceConfig{} }

// TraceEvent records the reads of the node an expression evaluation or a
// rule entry announces.
func (t *readTracer) TraceEvent(e topdown.Event) {
	if t.whole || (e.Op != topdown.EvalOp && e.Op != topdown.EnterOp) {
		return
	}
	var key any
	switch n := e.Node.(type) {
	case ast.Body:
		return // a query or a rule body: each of its expressions is announced
	case *ast.Expr:
		key = n
	case *ast.Rule:
		key = n
	default:
		t.whole = true
		return
	}
	r := t.c.reads(key)
	if r.whole || r.impure {
		t.whole = true
		return
	}
	if len(r.paths) == 0 {
		return
	}
	if _, dup := t.seen[r]; dup {
		return
	}
	if t.seen == nil {
		t.seen = map[*reads]struct{}{}
	}
	t.seen[r] = struct{}{}
	t.paths = append(t.paths, r.paths...)
}

// reads is what node (an expression, or a rule's head) reads.
func (c *decisionCache) reads(node any) *reads {
	if r, ok := c.nodes[node]; ok {
		return r
	}
	var r reads
	switch n := node.(type) {
	case *ast.Expr:
		r = collect(n)
	case *ast.Rule:
		r = collect(n.Head)
	}
	return &r
}

// readSet is what the evaluation read; ok is false when it read the input
// whole.
func (t *readTracer) readSet() (readSet, bool) {
	if t.whole {
		return readSet{}, false
	}
	return normalize(t.paths), true
}

// clone is a copy of d that shares nothing a caller may change.
func (d Decision) clone() Decision {
	d.Reasons = append([]string(nil), d.Reasons...)
	if d.Approval != nil {
		a := *d.Approval
		a.Approvers = append([]string(nil), a.Approvers...)
		d.Approval = &a
	}
	return d
}

// exactEqual reports whether a and b are the same JSON text up to object
// key order: unlike ast.Compare, the numbers 1, 1.0 and 1e0 differ (a
// policy can tell them apart with json.marshal or sprintf).
func exactEqual(a, b ast.Value) bool {
	switch x := a.(type) {
	case ast.Number:
		y, ok := b.(ast.Number)
		return ok && x == y
	case ast.String:
		y, ok := b.(ast.String)
		return ok && x == y
	case ast.Boolean:
		y, ok := b.(ast.Boolean)
		return ok && x == y
	case ast.Null:
		_, ok := b.(ast.Null)
		return ok
	case *ast.Array:
		y, ok := b.(*ast.Array)
		if !ok || x.Len() != y.Len() {
			return false
		}
		for i := range x.Len() {
			if !exactEqual(x.Elem(i).Value, y.Elem(i).Value) {
				return false
			}
		}
		return true
	case ast.Object:
		y, ok := b.(ast.Object)
		if !ok || x.Len() != y.Len() {
			return false
		}
		same := true
		x.Foreach(func(k, v *ast.Term) {
			if !same {
				return
			}
			w := y.Get(k)
			same = w != nil && exactEqual(v.Value, w.Value) // keys are strings
		})
		return same
	}
	return false // sets and the rest never appear in an input document
}

// size is about how many bytes v holds, for the cache's budget.
func size(v ast.Value) int {
	switch x := v.(type) {
	case ast.String:
		return len(x) + 16
	case ast.Number:
		return len(x) + 16
	case *ast.Array:
		n := 24
		for i := range x.Len() {
			n += size(x.Elem(i).Value)
		}
		return n
	case ast.Object:
		n := 48
		x.Foreach(func(k, v *ast.Term) { n += size(k.Value) + size(v.Value) })
		return n
	}
	return 16
}
