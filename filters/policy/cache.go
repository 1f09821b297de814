package policy

import (
	"sync"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/bundle"
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
	ok = true
	var paths []ast.Ref
	var vis *ast.GenericVisitor
	record := func(ref ast.Ref) {
		prefix := ast.Ref{inputRoot}
		for _, t := range ref[1:] {
			if _, isStr := t.Value.(ast.String); !isStr {
				break
			}
			prefix = append(prefix, t)
		}
		if len(prefix) == 1 {
			ok = false
			return
		}
		paths = append(paths, prefix)
	}
	vis = ast.NewGenericVisitor(func(x any) bool {
		if !ok {
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
					ok = false // called, or named as a with value
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
				ok = false // the input read whole
			}
		case *ast.Expr:
			if x.IsCall() && impure(x.Operator().String()) {
				ok = false
			}
		case *ast.Term:
			if call, isCall := x.Value.(ast.Call); isCall && len(call) > 0 && impure(call[0].String()) {
				ok = false
			}
		}
		return false
	})
	for _, m := range b.Modules {
		if m.Parsed == nil {
			return readSet{}, false
		}
		vis.Walk(m.Parsed)
		if !ok {
			return readSet{}, false
		}
	}
	// A path under another path adds nothing to the key.
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
	return readSet{paths: kept}, true
}

func containsRef(list []ast.Ref, r ast.Ref) bool {
	for _, x := range list {
		if x.Equal(r) {
			return true
		}
	}
	return false
}

// key is in seen through the read set: for each path, [] when the input
// document has nothing there, else [value]. It builds only the sections of
// the document the paths go into, and returns them for the evaluation.
func (rs readSet) key(in Input) (*ast.Array, map[string]ast.Value, error) {
	built := make(map[string]ast.Value, len(sections))
	terms := make([]*ast.Term, len(rs.paths))
	for i, p := range rs.paths {
		name := string(p[1].Value.(ast.String))
		v, ok := built[name]
		if !ok {
			var err error
			if v, err = sectionValue(in, name); err != nil {
				return nil, nil, err
			}
			built[name] = v
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
	return ast.NewArray(terms...), built, nil
}

// Bounds of a decision cache beside its entry count: a key bigger than
// maxKeyBytes (a long SQL statement in the action) is not kept, and the
// keys kept hold at most maxCacheBytes.
const (
	maxKeyBytes   = 16 << 10
	maxCacheBytes = 32 << 20
)

// decisionCache holds the decisions of one bundle revision by the input
// seen through its read set. It is bounded: when full it starts again
// empty, so a burst of distinct inputs costs one evaluation each, as
// without a cache.
type decisionCache struct {
	rs    readSet
	max   int
	mu    sync.Mutex
	m     map[int][]cached
	n     int
	bytes int
}

type cached struct {
	key *ast.Array
	d   Decision
}

func newDecisionCache(rs readSet, max int) *decisionCache {
	return &decisionCache{rs: rs, max: max, m: map[int][]cached{}}
}

// get returns the decision kept for key.
func (c *decisionCache) get(key *ast.Array, h int) (Decision, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, e := range c.m[h] {
		if exactEqual(e.key, key) {
			return e.d.clone(), true
		}
	}
	return Decision{}, false
}

// put keeps d (without its id) for key.
func (c *decisionCache) put(key *ast.Array, h int, d Decision) {
	sz := size(key)
	if sz > maxKeyBytes {
		return
	}
	d.ID = ""
	d = d.clone()
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, e := range c.m[h] {
		if exactEqual(e.key, key) {
			return
		}
	}
	if c.n >= c.max || c.bytes+sz > maxCacheBytes {
		clear(c.m)
		c.n, c.bytes = 0, 0
	}
	c.m[h] = append(c.m[h], cached{key: key, d: d})
	c.n++
	c.bytes += sz
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
