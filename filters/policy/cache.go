package policy

import (
	"sync"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/bundle"
)

// DefaultDecisionCache is how many decisions a bundle revision keeps by
// default (RegoOptions.DecisionCache).
const DefaultDecisionCache = 4096

// inputRoot is the head of every reference into the input document.
var inputRoot = ast.VarTerm("input")

// readSet is what a bundle's Rego can read of the input document: the
// constant prefixes of every reference into it. Two inputs equal on every
// path of the set get the same decision from the same bundle, provided no
// rule calls a builtin whose result is not a function of its arguments
// (time, randomness, the network): a bundle that does, or that reads the
// input whole (`x := input`, `object.get(input, ...)`, `input[k]`), has no
// read set and its decisions are never cached. OPA's catalogue marks every
// such builtin nondeterministic: time.now_ns, io.jwt.decode_verify (it
// checks exp and nbf against the clock), rand.*, uuid.*, http.send,
// net.lookup_ip_addr, opa.runtime.
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
		case ast.Ref:
			if len(x) == 0 || !x[0].Equal(inputRoot) {
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
			if x.IsCall() {
				name := x.Operator().String()
				if bi, known := ast.BuiltinMap[name]; known && bi.Nondeterministic {
					ok = false
				}
			}
		case *ast.Term:
			if call, isCall := x.Value.(ast.Call); isCall && len(call) > 0 {
				name := call[0].String()
				if bi, known := ast.BuiltinMap[name]; known && bi.Nondeterministic {
					ok = false
				}
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

// decisionCache holds the decisions of one bundle revision by the input
// seen through its read set. It is bounded: when full it starts again
// empty, so a burst of distinct inputs costs one evaluation each, as
// without a cache.
type decisionCache struct {
	rs  readSet
	max int
	mu  sync.Mutex
	m   map[int][]cached
	n   int
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
		if e.key.Compare(key) == 0 {
			return e.d.clone(), true
		}
	}
	return Decision{}, false
}

// put keeps d (without its id) for key.
func (c *decisionCache) put(key *ast.Array, h int, d Decision) {
	d.ID = ""
	d = d.clone()
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, e := range c.m[h] {
		if e.key.Compare(key) == 0 {
			return
		}
	}
	if c.n >= c.max {
		clear(c.m)
		c.n = 0
	}
	c.m[h] = append(c.m[h], cached{key: key, d: d})
	c.n++
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
