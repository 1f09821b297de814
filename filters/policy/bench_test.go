package policy_test

import (
	"context"
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
