package audit

import (
	"context"

	"github.com/custos-dev/custos/filters/record"
)

// Recorder is a record.Recorder that appends to a log: Record returns once
// the event is durable.
type Recorder struct {
	Log *Log
}

var _ record.Recorder = Recorder{}

// Record appends e and waits until it is durable.
func (r Recorder) Record(ctx context.Context, e record.Event) error {
	_, err := r.Log.Append(ctx, FromRecord(e))
	return err
}

// RecordAt appends e, waits until it is durable, and returns its position
// (the x-custos-evidence value).
func (r Recorder) RecordAt(ctx context.Context, e record.Event) (Position, error) {
	return r.Log.Append(ctx, FromRecord(e))
}

// FromRecord converts a record stage event to an audit event. The record
// event's Principal (ISSUER/SUBJECT) becomes actor.user.uid.
func FromRecord(e record.Event) Event {
	a := Event{
		Kind:       Kind(e.Kind),
		Time:       e.Finished,
		SessionID:  e.SessionID,
		Session:    e.Session,
		RequestID:  e.RequestID,
		Connection: e.Connection,
		Actor:      Actor{UID: e.Principal, Type: e.PrincipalKind, Groups: e.Groups, Roles: e.Roles, App: e.App},
		Detail:     e.Detail,
	}
	if c := e.Claimed; c != nil {
		a.Claimed = &Claimed{Issuer: c.Issuer, Subject: c.Subject, KeyID: c.KeyID}
	}
	if a.Time.IsZero() {
		a.Time = e.Started
	}
	if e.Method != "" || e.Path != "" {
		a.Request = &HTTPRequest{Method: e.Method, Path: e.Path}
	}
	switch e.Kind {
	case record.AuthFailed:
		if e.Status != 0 {
			a.Response = &HTTPResponse{Code: e.Status}
		}
	case record.PolicyChanged:
		a.Change = &Change{Revision: e.Revision}
	case record.Decided:
		a.Decision = &DecisionInfo{ID: e.DecisionID, Allow: e.Allow, Reasons: e.Reasons, PolicyRevision: e.Revision, Shadow: e.Shadow != ""}
		if e.Shadow != "" {
			a.Detail = "shadow mode: enforcing would have answered " + e.Shadow
		}
		if e.Action != "" || e.Risk != "" {
			a.Action = &Action{Kind: e.Action, Risk: e.Risk, Summary: e.Summary}
		}
		if e.Status != 0 {
			a.Response = &HTTPResponse{Code: e.Status}
		}
		if e.MaskProfile != "" {
			a.Masking = &Masking{Profile: e.MaskProfile, Counts: map[string]int{}}
		}
	case record.Completed, record.Aborted:
		a.Started, a.Finished = e.Started, e.Finished
		a.BodySHA256 = e.BodySHA256
		if e.Status != 0 {
			a.Response = &HTTPResponse{Code: e.Status}
		}
		if e.MaskProfile != "" || len(e.Masked) > 0 {
			a.Masking = &Masking{Profile: e.MaskProfile, Counts: e.Masked, Operators: e.MaskedBy,
				Pointers: e.MaskedPointers, PointersDropped: e.MaskedPointersDropped, Unread: e.MaskUnread}
		}
	case record.Held, record.Approved:
		a.Approval = &Approval{ID: e.DecisionID, State: approvalState(e)}
	}
	return a
}

func approvalState(e record.Event) string {
	if e.Kind == record.Held {
		return "pending"
	}
	if e.Allow {
		return "approved"
	}
	return "denied"
}
