package policy

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/topdown"
)

// Fired is a rule that produced a value while a decision was evaluated.
type Fired struct {
	// Rule is the rule's full name (data.custos.authz.deny).
	Rule string
	// Location is file:line of the rule body that fired.
	Location string
}

// Explain evaluates the decision for doc, a policy input document as JSON
// values (what `custos policy eval --input` reads), and returns the rules
// that fired, each once, in the order they first completed.
func (r *Rego) Explain(ctx context.Context, doc any) (Decision, []Fired, error) {
	c := r.cur.Load()
	tracer := topdown.NewBufferTracer()
	rs, err := c.pq.Eval(ctx, rego.EvalInput(doc), rego.EvalQueryTracer(tracer))
	if err != nil {
		return Decision{}, nil, fmt.Errorf("policy %s: evaluation failed: %w", c.revision, err)
	}
	var fired []Fired
	seen := map[string]bool{}
	for _, e := range *tracer {
		if e.Op != topdown.ExitOp {
			continue
		}
		rule, ok := e.Node.(*ast.Rule)
		if !ok || rule.Module == nil {
			continue
		}
		name := rule.Module.Package.Path.String() + "." + rule.Head.Ref().String()
		loc := ""
		if rule.Location != nil {
			loc = fmt.Sprintf("%s:%d", rule.Location.File, rule.Location.Row)
		}
		if key := name + "@" + loc; !seen[key] {
			seen[key] = true
			fired = append(fired, Fired{Rule: name, Location: loc})
		}
	}
	if len(rs) != 1 || len(rs[0].Expressions) != 1 {
		return Decision{}, fired, fmt.Errorf("policy %s: %w: %s is undefined for this input", c.revision, ErrMalformed, Query)
	}
	d, err := ParseDecision(rs[0].Expressions[0].Value)
	if err != nil {
		return Decision{}, fired, fmt.Errorf("policy %s: %w", c.revision, err)
	}
	d.ID, d.Revision = newDecisionID(), c.revision
	return d, fired, nil
}

// ErrNotCached says a bundle's decisions are never cached: it calls or
// names a builtin whose result is not a function of its arguments, or
// reads the input whole.
var ErrNotCached = errors.New("this bundle's decisions are never cached: a rule calls or names a builtin whose result is not a function of its arguments (the clock, randomness, the network), or reads the input whole")

// Reads evaluates the decision for doc (JSON values, as for Explain) the
// way the decision cache learns it, and returns the parts of the input the
// evaluation read: requests equal on all of them share the decision. It
// is ErrNotCached for a bundle that is never cached, or when the cache is
// off.
func (r *Rego) Reads(ctx context.Context, doc any) ([]string, error) {
	c := r.cur.Load()
	if c.cache == nil {
		return nil, ErrNotCached
	}
	v, err := ast.InterfaceToValue(doc)
	if err != nil {
		return nil, fmt.Errorf("policy input: %w", err)
	}
	_, rs, ok, err := c.traceReads(ctx, v, time.Now())
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, ErrNotCached
	}
	out := make([]string, len(rs.paths))
	for i, p := range rs.paths {
		out[i] = p.String()
	}
	return out, nil
}
