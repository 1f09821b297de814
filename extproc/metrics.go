package extproc

import (
	"time"

	"github.com/custos-dev/custos/metrics"
)

// Metrics are the service's families on /metrics (docs/contract.md,
// "Metrics"). Label values are connection names from the configuration and
// fixed vocabularies (outcomes, error codes, entity types), never bytes of
// a request.
type Metrics struct {
	checks   *metrics.CounterVec
	checkDur *metrics.HistogramVec
	policy   *metrics.CounterVec
	exchange *metrics.CounterVec
	masked   *metrics.CounterVec
}

// NewMetrics registers the service's families in r.
func NewMetrics(r *metrics.Registry) *Metrics {
	return &Metrics{
		checks: r.Counter("custos_check_requests_total",
			"Requests Check decided, by connection and outcome: allowed, held (for an approval in Process), or the error code the agent got.",
			"connection", "outcome"),
		checkDur: r.Histogram("custos_check_duration_seconds",
			"Time Check took to decide and record a request (identity, inspection, policy, grants, the decision's record).",
			metrics.LatencyBuckets),
		policy: r.Counter("custos_policy_decisions_total",
			"Policy decisions, by source: evaluated by OPA, or found in the bundle revision's decision cache.",
			"source"),
		exchange: r.Counter("custos_responses_total",
			"Exchanges Process saw to their end, by connection and outcome: completed, aborted, or the error code of the reply Custos sent instead of the upstream's.",
			"connection", "outcome"),
		masked: r.Counter("custos_masked_values_total",
			"Values masked in responses, by connection and entity type (never a value).",
			"connection", "entity"),
	}
}

// SetMetrics makes s count into m from now on.
func (s *Service) SetMetrics(m *Metrics) { s.metrics.Store(m) }

// countCheck counts one Check answer.
func (m *Metrics) countCheck(o *outcome, started time.Time) {
	if m == nil {
		return
	}
	outcome := "allowed"
	switch {
	case o.reply != nil:
		outcome = o.reply.Code
	case o.v.Hold != nil:
		outcome = "held"
	}
	m.checks.With(o.v.Connection, outcome).Inc()
	m.checkDur.With().Observe(time.Since(started).Seconds())
	if o.policySource != "" {
		m.policy.With(o.policySource).Inc()
	}
}

// countEnd counts an exchange's end and what its response had masked.
func (m *Metrics) countEnd(connection, outcome string, masked map[string]int) {
	if m == nil {
		return
	}
	m.exchange.With(connection, outcome).Inc()
	for ent, n := range masked {
		if n > 0 {
			m.masked.With(connection, ent).Add(uint64(n))
		}
	}
}
