package approvals

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
)

// ErrNotFound says no approval has that id.
var ErrNotFound = errors.New("no such approval")

// Store keeps approvals. Every change is one atomic read-modify-write, so
// the rules (one use of a one-shot grant, one vote per person, no vote
// after resolution) live in the Service once, for every store.
type Store interface {
	// Create stores a as a new pending approval, unless a pending one with
	// the same dedupe key that has not expired by now exists: that one is
	// returned instead, with created false.
	Create(ctx context.Context, a Approval, now time.Time) (_ Approval, created bool, _ error)
	// Get returns approval id, or ErrNotFound.
	Get(ctx context.Context, id string) (Approval, error)
	// List returns approvals, newest first, in state (all when ""), at
	// most limit of them.
	List(ctx context.Context, state string, limit int) ([]Approval, error)
	// Update reads approval id, applies change and stores the result, all
	// in one transaction; an error from change aborts it and is returned.
	// Watchers of id are woken once the change is committed.
	Update(ctx context.Context, id string, change func(a *Approval) error) (Approval, error)
	// Watch returns a channel that receives after approval id changes
	// (possibly spuriously: the caller reads the approval again), and a
	// function that stops the watch.
	Watch(id string) (changed <-chan struct{}, stop func())
	// Close releases the store.
	Close() error
}

// Open opens the store spec names: a postgres:// or postgresql:// URL is
// PostgreSQL; anything else is the path of the embedded file (a leading
// "file:" or "bolt:" is dropped).
func Open(ctx context.Context, spec string) (Store, error) {
	switch {
	case spec == "":
		return nil, errors.New("open approvals store: no store named")
	case strings.HasPrefix(spec, "postgres://"), strings.HasPrefix(spec, "postgresql://"):
		s, err := OpenPostgres(ctx, spec)
		if err != nil {
			return nil, fmt.Errorf("open approvals store %s: %w", redactURL(spec), err)
		}
		return s, nil
	}
	path := strings.TrimPrefix(strings.TrimPrefix(spec, "file:"), "bolt:")
	return OpenFile(path)
}
