package extproc

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/custos-dev/custos/config"
	"github.com/custos-dev/custos/filters/record"
	"github.com/custos-dev/custos/names"
)

// checkRecordTimeout bounds the decision's record: half of Envoy's wait
// for Check, so a slow record fails the request with Custos' 503 rather
// than racing Envoy's status_on_error.
const checkRecordTimeout = names.AuthzTimeout / 2

// Check decides one request: the CheckRequest becomes the stages' request
// (request.go), the pipeline decides (decide.go), the decision is recorded,
// and the outcome becomes Envoy's CheckResponse (response.go). Every request
// Check answers leaves a decision record; a record that fails turns the
// answer into 503 unavailable: no evidence, no request.
func (s *Service) Check(ctx context.Context, cr *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	p := s.pipeline.Load()
	started := time.Now()
	in := requestFrom(cr, newRequestID())
	o := p.decide(ctx, in)
	if err := p.inject(ctx, o, in); err != nil {
		s.log.Error("upstream credential", "request_id", o.v.RequestID, "connection", o.v.Connection, "error", err)
		o.event.Detail = "upstream credential: " + err.Error()
		o.deny(Reply{Status: 503, Code: CodeUnavailable, Message: "the upstream credential could not be applied; nothing was forwarded"})
	}
	if err := s.recordDecision(ctx, p, o, started); err != nil {
		s.log.Error("record decision", "request_id", o.v.RequestID, "error", err)
		o.v.Hold = nil
		o.deny(Reply{Status: 503, Code: CodeUnavailable, Message: "the request could not be recorded; nothing was forwarded"})
	}
	resp := checkResponse(o, in.rawHeader)
	applyMutation(o.mutation, resp)
	s.metrics.Load().countCheck(o, started)
	return resp, nil
}

// recordDecision records the decision: durable before Check answers
// (audit.durability before_upstream, and always for a request Check
// refuses or a route without ext_proc), or, with before_response on an
// ext_proc route, started now and waited for by Process before the
// response goes back.
func (s *Service) recordDecision(ctx context.Context, p *Pipeline, o *outcome, started time.Time) error {
	d, ok := p.stages.Record.(record.Deferred)
	if !ok || o.reply != nil || !o.v.ExtProc || o.v.Hold != nil || p.cfg.Audit.Durability != config.DurabilityBeforeResponse {
		return p.recordDecision(ctx, o, started)
	}
	wait := d.RecordDeferred(p.decisionEvent(o, started))
	s.pending.put(o.v.RequestID, wait)
	o.v.EvidencePending = true
	return nil
}

// decisionEvent is the event that records o.
func (p *Pipeline) decisionEvent(o *outcome, started time.Time) record.Event {
	e := o.event
	if e.Kind != record.AuthFailed {
		e.Kind = record.Decided
	}
	e.RequestID, e.SessionID, e.Session = o.v.RequestID, o.v.SessionID, o.v.Session
	e.Principal, e.Connection, e.Method, e.Path = o.v.Principal, o.v.Connection, o.v.Method, o.v.Path
	e.DecisionID, e.Revision, e.Reasons = o.v.DecisionID, o.v.Revision, o.v.Reasons
	e.Allow = o.reply == nil
	if o.reply != nil {
		e.Status = o.reply.Status
		if e.Detail == "" {
			e.Detail = o.reply.Code + ": " + o.reply.Message
		}
	}
	e.MaskProfile = joinProfile(o.v.MaskProfile)
	e.Started, e.Finished = started, time.Now()
	return e
}

// recordDecision hands the decision to the record stage (an auth_failed
// event for a refused token) and waits until it is recorded, under
// recover: a recorder that panics is a record that failed.
func (p *Pipeline) recordDecision(ctx context.Context, o *outcome, started time.Time) (err error) {
	e := p.decisionEvent(o, started)
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), checkRecordTimeout)
	defer cancel()
	defer func() {
		if r := recover(); r != nil {
			p.logPanic(o.v.RequestID, r)
			err = errRecordPanic
		}
	}()
	if r, ok := p.stages.Record.(record.Receipter); ok {
		o.evidence, err = r.RecordReceipt(ctx, e)
		return err
	}
	return p.stages.Record.Record(ctx, e)
}

// newRequestID is a random (version 4) UUID. Custos never adopts an id from
// the request: behind a sidecar or for requests Envoy deems internal, the
// agent could choose x-request-id and reuse another request's id.
func newRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	var out [36]byte
	hex.Encode(out[0:8], b[0:4])
	out[8] = '-'
	hex.Encode(out[9:13], b[4:6])
	out[13] = '-'
	hex.Encode(out[14:18], b[6:8])
	out[18] = '-'
	hex.Encode(out[19:23], b[8:10])
	out[23] = '-'
	hex.Encode(out[24:], b[10:])
	return string(out[:])
}
