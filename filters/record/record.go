// Package record is the last stage of a request: it turns what the other
// stages decided and saw into a record of the exchange and hands it on. Until
// the audit log lands, the record is one structured log line per request.
package record

import (
	"context"
	"log/slog"
	"time"
)

// Outcome says how an exchange ended.
type Outcome string

// Outcomes of an exchange.
const (
	// Completed: the upstream answered and the response went back to the agent.
	Completed Outcome = "completed"
	// Aborted: the stream ended before the response was seen (client gone,
	// upstream reset, processing error).
	Aborted Outcome = "aborted"
)

// Exchange is one request as the stages saw it. It never holds credentials,
// bodies or unmasked values.
type Exchange struct {
	RequestID  string
	SessionID  string
	Connection string
	Method     string
	// Path is the path the upstream received (prefix stripped), without the
	// query, which may carry credentials such as SAS signatures.
	Path string
	// Status is the response status the agent received, 0 if none was seen.
	Status   int
	Outcome  Outcome
	Started  time.Time
	Finished time.Time
	// Detail explains an aborted exchange.
	Detail string
}

// Recorder receives every finished exchange exactly once. An error means
// the exchange left no evidence; the caller fails the request.
type Recorder interface {
	Record(ctx context.Context, e Exchange) error
}

// Log records exchanges as structured log lines.
type Log struct {
	Logger *slog.Logger
}

// Record writes e as one log line.
func (l Log) Record(ctx context.Context, e Exchange) error {
	l.Logger.LogAttrs(ctx, slog.LevelInfo, "exchange",
		slog.String("request_id", e.RequestID),
		slog.String("session_id", e.SessionID),
		slog.String("connection", e.Connection),
		slog.String("method", e.Method),
		slog.String("path", e.Path),
		slog.Int("status", e.Status),
		slog.String("outcome", string(e.Outcome)),
		slog.Duration("duration", e.Finished.Sub(e.Started)),
		slog.String("detail", e.Detail),
	)
	return nil
}
