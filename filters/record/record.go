// Package record is the last stage of a request: it turns what the other
// stages decided and saw into typed events and hands them on. Check records a
// decision for every request it answers, so no request goes unrecorded
// because of where it stopped; Process records how each exchange it saw
// ended, exactly once. Until the audit log lands, each event is one
// structured log line.
package record

import (
	"context"
	"log/slog"
	"time"
)

// Kind says what an event records.
type Kind string

// Event kinds.
const (
	// Decided: Check decided a request (allowed or denied).
	Decided Kind = "decision"
	// Completed: the upstream answered and the response went back to the agent.
	Completed Kind = "response"
	// Aborted: the exchange ended before its response was complete (client
	// gone, upstream reset, a local reply, a processing error).
	Aborted Kind = "aborted"
	// Held: a request is held for an approval.
	Held Kind = "approval_requested"
	// Approved: a held request's approval was resolved.
	Approved Kind = "approval_resolved"
	// Voted: an approver voted on an approval.
	Voted Kind = "approval_voted"
	// AuthFailed: a request's token was refused (401).
	AuthFailed Kind = "auth_failed"
	// PolicyChanged: a policy bundle was loaded (Revision) or refused
	// (Detail says why; Revision is the one still deciding).
	PolicyChanged Kind = "policy_changed"
	// ConfigChanged: a configuration was loaded (at start and on each
	// reload); Detail summarises it.
	ConfigChanged Kind = "config_changed"
)

// Claimed is what a refused token said about its caller, unverified: who
// tried, never who it was.
type Claimed struct {
	Issuer, Subject, KeyID string
}

// Event is one thing that happened to a request. It never holds credentials,
// bodies or unmasked values.
type Event struct {
	Kind      Kind
	RequestID string
	// SessionID is the session namespaced by principal; Session is the name
	// the agent gave or the derived one.
	SessionID string
	Session   string
	Principal string
	// PrincipalKind, Groups (readable names where the issuer gives them,
	// else ids), Roles and App describe the principal for the evidence.
	PrincipalKind string
	Groups        []string
	Roles         []string
	App           string
	Connection    string
	Method        string
	// Path is the path the upstream receives (prefix stripped), without the
	// query, which may carry credentials such as SAS signatures.
	Path string

	// Decision fields (Decided).
	DecisionID string
	Allow      bool
	// Status is the HTTP status: the denial's for a denied decision, the
	// agent's response for Completed, 0 if none was seen.
	Status   int
	Reasons  []string
	Revision string
	Action   string
	Risk     string
	// Summary is the action's one line for a human (masked before it gets
	// here).
	Summary string
	// Shadow is what an enforcing policy would have answered on a
	// connection in shadow mode ("forbidden", "approval_required: rule R"),
	// "" when the decision was enforced or allowed.
	Shadow string
	// MaskProfile is the effective masking profile, "" for none.
	MaskProfile string
	// Masked counts what was masked per entity type (Completed).
	Masked map[string]int
	// MaskedBy counts it per entity type and operator.
	MaskedBy map[string]map[string]int
	// MaskedPointers are the JSON pointers of the masked values (NDJSON:
	// the line first; CSV: /record/column), their tokens masked too, at
	// most 1,000; MaskedPointersDropped counts those left out.
	MaskedPointers        []string
	MaskedPointersDropped int
	// MaskUnread is set when a best_effort profile let a body the engine
	// cannot read pass unmasked.
	MaskUnread bool
	// BodySHA256 is the hex SHA-256 of the body the agent received, after
	// masking, when Custos saw the body (Completed).
	BodySHA256 string

	// Claimed is set on AuthFailed: the refused token's own claims, never
	// verified, and never the token.
	Claimed *Claimed

	Started  time.Time
	Finished time.Time
	// Detail explains an aborted exchange or a denial.
	Detail string
}

// Recorder receives events. An error means the event left no evidence; the
// caller fails the request.
type Recorder interface {
	Record(ctx context.Context, e Event) error
}

// Receipter is a Recorder that says where it recorded an event: the
// receipt the agent gets (x-custos-evidence), such as an audit log's
// LOG_ID/INDEX.
type Receipter interface {
	Recorder
	RecordReceipt(ctx context.Context, e Event) (receipt string, err error)
}

// Deferred is a Receipter that can start recording an event and let the
// caller wait for it later: the append is ordered at once and its fsync
// overlaps whatever the caller does next (audit.durability
// before_response).
type Deferred interface {
	Receipter
	// RecordDeferred starts recording e; wait returns once it is durable
	// (or failed), with its receipt.
	RecordDeferred(e Event) (wait func(ctx context.Context) (receipt string, err error))
}

// Log records events as structured log lines.
type Log struct {
	Logger *slog.Logger
}

// Record writes e as one log line.
func (l Log) Record(ctx context.Context, e Event) error {
	attrs := []slog.Attr{
		slog.String("kind", string(e.Kind)),
		slog.String("request_id", e.RequestID),
		slog.String("session_id", e.SessionID),
		slog.String("principal", e.Principal),
		slog.String("connection", e.Connection),
		slog.String("method", e.Method),
		slog.String("path", e.Path),
		slog.Int("status", e.Status),
	}
	switch e.Kind {
	case Decided:
		attrs = append(attrs,
			slog.String("decision_id", e.DecisionID),
			slog.Bool("allow", e.Allow),
			slog.Any("reasons", e.Reasons),
			slog.String("policy_revision", e.Revision),
			slog.String("action", e.Action),
			slog.String("risk", e.Risk),
			slog.String("mask_profile", e.MaskProfile))
		if e.Shadow != "" {
			attrs = append(attrs, slog.String("shadow", e.Shadow))
		}
	case Completed, Aborted:
		attrs = append(attrs, slog.Duration("duration", e.Finished.Sub(e.Started)))
		if len(e.Masked) > 0 {
			attrs = append(attrs, slog.Any("masked", e.Masked))
		}
		if len(e.MaskedBy) > 0 {
			// the pointers go to the audit log only: a thousand per line
			// would drown the service log
			attrs = append(attrs, slog.Any("masked_by", e.MaskedBy))
		}
		if e.MaskUnread {
			attrs = append(attrs, slog.Bool("mask_unread", true))
		}
	}
	if e.Claimed != nil {
		attrs = append(attrs, slog.Group("claimed", slog.String("issuer", e.Claimed.Issuer),
			slog.String("subject", e.Claimed.Subject), slog.String("key_id", e.Claimed.KeyID)))
	}
	if e.Detail != "" {
		attrs = append(attrs, slog.String("detail", e.Detail))
	}
	l.Logger.LogAttrs(ctx, slog.LevelInfo, string(e.Kind), attrs...)
	return nil
}
