package policy_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/custos-dev/custos/filters/inspect"
	"github.com/custos-dev/custos/filters/policy"
	"github.com/custos-dev/custos/policies"

	"github.com/custos-dev/custos/bench/latency"
)

// BenchmarkDecide is one decision of the default bundle (a reader reading,
// and a writer's destructive action that needs an approval), evaluated by
// OPA every time and found in the decision cache, beside the
// allow-by-connection stand-in as the baseline, with p50/p99 per decision.
// Goal: p99 under 100 µs on 2 cores.
func BenchmarkDecide(b *testing.B) {
	r, err := policy.NewRego(context.Background(), policy.RegoOptions{Source: policy.FS(policies.Builtin, policies.Bundle), PollInterval: time.Hour, DecisionCache: -1})
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	cached, err := policy.NewRego(context.Background(), policy.RegoOptions{Source: policy.FS(policies.Builtin, policies.Bundle), PollInterval: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	defer cached.Close()
	trivial := b.TempDir()
	writeBundle(b, trivial, `decision := {"allow": true}`, "")
	floor, err := policy.NewRego(context.Background(), policy.RegoOptions{Source: policy.Dir(trivial), PollInterval: time.Hour, DecisionCache: -1})
	if err != nil {
		b.Fatal(err)
	}
	defer floor.Close()
	for _, tc := range []struct {
		name string
		ev   policy.Evaluator
		in   policy.Input
	}{
		{"baseline-allow-by-connection", policy.AllowConnection{}, input([]string{"customers-readers"}, inspect.RiskRead)},
		{"floor-one-line-bundle", floor, input([]string{"customers-readers"}, inspect.RiskRead)},
		{"default-bundle-read", r, input([]string{"customers-readers"}, inspect.RiskRead)},
		{"default-bundle-destructive", r, input([]string{"customers-writers"}, inspect.RiskDestructive)},
		{"default-bundle-denied", r, input([]string{"marketing"}, inspect.RiskWrite)},
		{"cached-default-bundle-read", cached, input([]string{"customers-readers"}, inspect.RiskRead)},
		{"cached-default-bundle-destructive", cached, input([]string{"customers-writers"}, inspect.RiskDestructive)},
	} {
		b.Run(tc.name, func(b *testing.B) {
			ctx := context.Background()
			latency.Measure(b, func() error {
				_, err := tc.ev.Decide(ctx, tc.in)
				return err
			})
		})
	}
}

// BenchmarkDecideStream decides a stream of requests as agents send them:
// four workloads (a reader, a writer, an admin, an unmapped group) over
// 100,000 distinct paths, nine reads in ten, the rest writes, deletions
// and admin actions, with a fresh request id each. The decision cache
// answers every request whose evaluation would read what an earlier one
// read: a reader's allowed GET reads neither the path nor the summary, so
// one evaluation serves all its reads. Beside it, the same stream evaluated
// by OPA every time (the baseline), the same stream from a new workload
// every time (every decision a miss: what the cache's tracing costs), and
// the cache's hit ratio.
func BenchmarkDecideStream(b *testing.B) {
	for _, tc := range []struct {
		name   string
		cache  int
		unique bool
	}{{"evaluated", -1, false}, {"cached", 0, false}, {"cached-every-workload-new", 0, true}} {
		b.Run(tc.name, func(b *testing.B) {
			r, err := policy.NewRego(context.Background(), policy.RegoOptions{Source: policy.FS(policies.Builtin, policies.Bundle), PollInterval: time.Hour, DecisionCache: tc.cache})
			if err != nil {
				b.Fatal(err)
			}
			defer r.Close()
			rng := rand.New(rand.NewPCG(1, 2))
			groups := []string{"customers-readers", "customers-writers", "customers-admins", "marketing"}
			ctx := context.Background()
			var n, hits int
			latency.Measure(b, func() error {
				n++
				in := input([]string{groups[rng.IntN(len(groups))]}, inspect.RiskRead)
				method := "GET"
				switch x := rng.IntN(100); {
				case x >= 97:
					method, in.Action.Risk = "POST", inspect.RiskAdmin
				case x >= 94:
					method, in.Action.Risk = "DELETE", inspect.RiskDestructive
				case x >= 90:
					method, in.Action.Risk = "PUT", inspect.RiskWrite
				}
				in.Request.ID = fmt.Sprintf("r-%d", n)
				if tc.unique {
					in.Principal.Subject = fmt.Sprintf("agent-%d", n)
				}
				in.Request.Method = method
				in.Request.Path = fmt.Sprintf("/%d", rng.IntN(100_000))
				in.Request.OriginalPath = "/customers" + in.Request.Path
				in.Action.Summary = method + " " + in.Request.Path
				d, err := r.Decide(ctx, in)
				if d.Cached {
					hits++
				}
				return err
			})
			b.ReportMetric(100*float64(hits)/float64(n), "hit-%")
		})
	}
}
