package audit

import (
	"context"
	"errors"
	"fmt"

	"golang.org/x/mod/sumdb/tlog"
)

// Proof ties one event to a signed checkpoint: the event's bytes, its
// inclusion proof, and the checkpoint. Anyone holding the log's verifier key
// can check it offline with VerifyProof. Its JSON is what `custos audit
// proof` prints and GET /v1/audit/proof returns.
type Proof struct {
	LogID string `json:"log_id"`
	Index int64  `json:"index"`
	// Event is the event's canonical JSON (base64 in JSON, so that no
	// re-encoding changes a byte).
	Event []byte `json:"event"`
	// Inclusion is the RFC 6962 audit path from the event's leaf to the
	// checkpoint's root.
	Inclusion tlog.RecordProof `json:"inclusion"`
	// Checkpoint is the signed note of a checkpoint covering Index.
	Checkpoint string `json:"checkpoint"`
}

// Proof returns event index with its inclusion proof in a checkpoint that
// covers it, waiting for such a checkpoint (at most about
// MinCheckpointInterval after asking) if the latest does not.
func (l *Log) Proof(ctx context.Context, index int64) (*Proof, error) {
	if index < 0 {
		return nil, fmt.Errorf("audit log %s: negative index", l.id)
	}
	cp, err := l.WaitCheckpoint(ctx, index)
	if err != nil {
		return nil, err
	}
	rec, err := l.Read(index)
	if err != nil {
		return nil, err
	}
	p, err := tlog.ProveRecord(cp.Size, index, fileHashReader{l.hashes})
	if err != nil {
		return nil, fmt.Errorf("audit log %s: prove index %d: %w", l.id, index, err)
	}
	return &Proof{LogID: l.id, Index: index, Event: rec, Inclusion: p, Checkpoint: string(cp.Note)}, nil
}

// Read returns the bytes of a durable event.
func (l *Log) Read(index int64) ([]byte, error) {
	if index < 0 || index >= l.Size() {
		return nil, fmt.Errorf("audit log %s: index %d is not in the log", l.id, index)
	}
	var rec []byte
	err := l.scanEvents(index, index+1, func(_ int64, b []byte) error {
		rec = append([]byte(nil), b...)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("audit log %s: read index %d: %w", l.id, index, err)
	}
	return rec, nil
}

// VerifyProof checks p with the log's verifier keys alone: the checkpoint's
// signature, that its origin is p's log, that the event's leaf hash is in its
// tree at p.Index, and that the event says it is that log's event at that
// index. It returns the event and the checkpoint.
func VerifyProof(p *Proof, keys ...string) (Event, SignedCheckpoint, error) {
	cp, err := OpenCheckpoint([]byte(p.Checkpoint), keys...)
	if err != nil {
		return Event{}, SignedCheckpoint{}, fmt.Errorf("verify proof: %w", err)
	}
	if cp.Origin != p.LogID {
		return Event{}, SignedCheckpoint{}, fmt.Errorf("verify proof: checkpoint is for log %q, proof for %q", cp.Origin, p.LogID)
	}
	if p.Index < 0 || p.Index >= cp.Size {
		return Event{}, SignedCheckpoint{}, fmt.Errorf("verify proof: index %d is not covered by the checkpoint (size %d)", p.Index, cp.Size)
	}
	if err := tlog.CheckRecord(p.Inclusion, cp.Size, cp.Root, p.Index, tlog.RecordHash(p.Event)); err != nil {
		return Event{}, SignedCheckpoint{}, fmt.Errorf("verify proof: index %d: %w", p.Index, err)
	}
	e, err := DecodeEvent(p.Event)
	if err != nil {
		return Event{}, SignedCheckpoint{}, fmt.Errorf("verify proof: %w", err)
	}
	if e.LogID != p.LogID || e.Index != p.Index {
		return Event{}, SignedCheckpoint{}, errors.New("verify proof: the event names another position")
	}
	return e, cp, nil
}

// ProveConsistency returns the proof that the tree of size older is a prefix
// of the tree of size newer (both at most the durable size).
func (l *Log) ProveConsistency(older, newer int64) (tlog.TreeProof, error) {
	if older < 0 || older > newer || newer > l.Size() {
		return nil, fmt.Errorf("audit log %s: cannot prove %d against %d (size %d)", l.id, older, newer, l.Size())
	}
	return tlog.ProveTree(newer, older, fileHashReader{l.hashes})
}

// VerifyConsistency checks that checkpoint newer extends checkpoint older by
// the consistency proof p: what older committed to is still there.
func VerifyConsistency(older, newer Checkpoint, p tlog.TreeProof) error {
	if older.Origin != newer.Origin {
		return fmt.Errorf("verify consistency: checkpoints of logs %q and %q", older.Origin, newer.Origin)
	}
	if older.Size > newer.Size {
		return fmt.Errorf("verify consistency: size %d after size %d", newer.Size, older.Size)
	}
	if older.Size == 0 {
		return nil
	}
	if err := tlog.CheckTree(p, newer.Size, newer.Root, older.Size, older.Root); err != nil {
		return fmt.Errorf("verify consistency: size %d against %d: %w", older.Size, newer.Size, err)
	}
	return nil
}
