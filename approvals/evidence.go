package approvals

import (
	"context"
	"fmt"

	"github.com/custos-dev/custos/filters/record"
)

// event is the record of a step of approval a: about its requester, naming
// the approval id, its fingerprint, its rule and its state in Detail (the
// record stage has no fields of its own for them).
func (s *Service) event(kind record.Kind, a Approval) record.Event {
	now := s.now()
	return record.Event{
		Kind: kind, RequestID: a.RequestID,
		Principal: a.Requester.ID(), PrincipalKind: a.Requester.Kind,
		Connection: a.Connection, Method: a.Method, Path: a.Path,
		Risk: a.Risk, Summary: a.Summary,
		Started: now, Finished: now,
		Detail: fmt.Sprintf("approval=%s fingerprint=%s rule=%s scope=%s state=%s", a.ID, a.Fingerprint, a.Rule, a.Scope, a.State),
	}
}

// record hands e to the recorder; an error means the step left no
// evidence, and the caller is told.
func (s *Service) record(ctx context.Context, e record.Event) error {
	if s.recorder == nil {
		return nil
	}
	if err := s.recorder.Record(ctx, e); err != nil {
		return fmt.Errorf("record %s: %w", e.Kind, err)
	}
	return nil
}
