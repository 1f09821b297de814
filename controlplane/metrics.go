package controlplane

import (
	"github.com/custos-dev/custos/extproc"
	"github.com/custos-dev/custos/filters/mask"
	"github.com/custos-dev/custos/filters/policy"
	"github.com/custos-dev/custos/metrics"
)

// MetricsPath is where listen.http serves the metrics.
const MetricsPath = "/metrics"

// registerMetrics makes cp's families: the services' counters and gauges
// read from the audit log, the shipper and the pipeline in force at each
// scrape (docs/contract.md, "Metrics").
func (cp *ControlPlane) registerMetrics(r *metrics.Registry) {
	cp.Services.SetMetrics(extproc.NewMetrics(r))
	one := func(ok bool) []metrics.Sample {
		if ok {
			return []metrics.Sample{{Value: 1}}
		}
		return []metrics.Sample{{Value: 0}}
	}
	if cp.Audit != nil {
		r.GaugeFunc("custos_audit_log_events", "Events durable in the audit log.", func() []metrics.Sample {
			return []metrics.Sample{{Value: float64(cp.Audit.Size())}}
		})
		r.GaugeFunc("custos_audit_log_healthy", "1 while the audit log acknowledges appends, 0 after it stopped (every request is then refused or let through as audit.on_failure says).", func() []metrics.Sample {
			return one(cp.Audit.Err() == nil)
		})
	}
	if cp.Shipper != nil {
		r.GaugeFunc("custos_audit_ship_lag_events", "Durable audit events Kafka has not acknowledged yet: alert when it grows.", func() []metrics.Sample {
			return []metrics.Sample{{Value: float64(cp.Shipper.Lag())}}
		})
		r.GaugeFunc("custos_audit_ship_healthy", "1 while writes to Kafka succeed, 0 while the shipper retries a failure.", func() []metrics.Sample {
			return one(cp.Shipper.Err() == nil)
		})
	}
	r.GaugeFunc("custos_policy_bundle_info", "The policy bundle revision in force (value 1).", func() []metrics.Sample {
		if rg, ok := cp.Services.Pipeline().Stages().Policy.(*policy.Rego); ok {
			return []metrics.Sample{{Labels: []string{rg.Revision()}, Value: 1}}
		}
		return nil
	}, "revision")
	r.GaugeFunc("custos_policy_cache_entries", "Decisions the decision cache of the bundle revision in force keeps (policy.decision_cache).", func() []metrics.Sample {
		if rg, ok := cp.Services.Pipeline().Stages().Policy.(*policy.Rego); ok {
			return []metrics.Sample{{Value: float64(rg.CacheStats().Entries)}}
		}
		return nil
	})
	r.CounterFunc("custos_policy_cache_learning_total", "Decided inputs the decision cache's learner evaluated again and kept (learnt) or did not keep (unlearnt), or did not evaluate again (skipped: its share of a core spent, or its queue full).", func() []metrics.Sample {
		rg, ok := cp.Services.Pipeline().Stages().Policy.(*policy.Rego)
		if !ok {
			return nil
		}
		st := rg.CacheStats()
		return []metrics.Sample{{Labels: []string{"learnt"}, Value: float64(st.Learnt)}, {Labels: []string{"unlearnt"}, Value: float64(st.Unlearnt)}, {Labels: []string{"skipped"}, Value: float64(st.Skipped)}}
	}, "outcome")
	r.GaugeFunc("custos_masking_module_instances", "Instances of the masking module the engine in force created and discarded (after a trap, an exit or a deadline); a reload starts a new engine.", func() []metrics.Sample {
		w, ok := cp.Services.Pipeline().Stages().Mask.(*mask.WASM)
		if !ok {
			return nil
		}
		s := w.Stats()
		return []metrics.Sample{{Labels: []string{"created"}, Value: float64(s.Instances)}, {Labels: []string{"discarded"}, Value: float64(s.Discarded)}}
	}, "state")
}
