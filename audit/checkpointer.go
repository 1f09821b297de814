package audit

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// checkpointer signs and stores checkpoints: at most one per
// MinCheckpointInterval, at least one per MaxCheckpointInterval while events
// arrive, sooner when a proof waits for one, and one at Close. Signing every
// batch would cost more than the appends.
type checkpointer struct {
	l    *Log
	file File // the checkpoints file, append-only

	mu  sync.Mutex // serialises writing checkpoints; guards key, file writes
	key *SigningKey

	stateMu sync.Mutex
	last    SignedCheckpoint
	have    bool
	lastAt  time.Time
	changed chan struct{} // closed and replaced at each new checkpoint

	demand chan struct{}
	stopc  chan struct{}
	done   chan struct{}
}

func (c *checkpointer) start() {
	c.demand = make(chan struct{}, 1)
	c.stopc = make(chan struct{})
	c.done = make(chan struct{})
	go c.loop()
}

func (c *checkpointer) loop() {
	defer close(c.done)
	t := time.NewTicker(c.l.opts.MinCheckpointInterval)
	defer t.Stop()
	demanded := false
	for {
		select {
		case <-c.stopc:
			return
		case <-c.demand:
			demanded = true
			continue
		case <-t.C:
		}
		last, have, at := c.latest()
		head := c.l.Head()
		if have && head.N == last.Size {
			demanded = false
			continue
		}
		if !demanded && have && time.Since(at) < c.l.opts.MaxCheckpointInterval-c.l.opts.MinCheckpointInterval/2 {
			continue
		}
		demanded = false
		if _, err := c.checkpoint(false); err != nil {
			c.l.fail(err)
		}
	}
}

func (c *checkpointer) stopLoop() {
	close(c.stopc)
	<-c.done
}

// latest returns the last checkpoint written, if any, and when.
func (c *checkpointer) latest() (SignedCheckpoint, bool, time.Time) {
	c.stateMu.Lock()
	defer c.stateMu.Unlock()
	return c.last, c.have, c.lastAt
}

// set records a checkpoint as the latest.
func (c *checkpointer) set(sc SignedCheckpoint) {
	c.stateMu.Lock()
	defer c.stateMu.Unlock()
	c.last, c.have, c.lastAt = sc, true, time.Now()
	if c.changed != nil {
		close(c.changed)
	}
	c.changed = make(chan struct{})
}

func (c *checkpointer) changedChan() chan struct{} {
	c.stateMu.Lock()
	defer c.stateMu.Unlock()
	if c.changed == nil {
		c.changed = make(chan struct{})
	}
	return c.changed
}

// checkpoint signs and stores a checkpoint of the durable head, unless the
// last one already covers it (and always when force is set and there is
// none).
func (c *checkpointer) checkpoint(force bool) (SignedCheckpoint, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	last, have, _ := c.latest()
	head := c.l.Head()
	if have && head.N == last.Size {
		return last, nil
	}
	if !have && head.N == 0 && !force {
		return last, nil
	}
	cp := Checkpoint{Origin: c.l.id, Size: head.N, Root: head.Hash}
	return c.write(cp, c.key)
}

// write signs cp with keys, appends it to the checkpoints file and fsyncs.
// The caller holds c.mu.
func (c *checkpointer) write(cp Checkpoint, keys ...*SigningKey) (SignedCheckpoint, error) {
	// Stored hashes up to cp.Size then need no recomputing at recovery.
	if err := c.l.hashes.Sync(); err != nil {
		return SignedCheckpoint{}, fmt.Errorf("audit log %s: fsync hashes: %w", c.l.id, err)
	}
	msg, err := signCheckpoint(cp, keys...)
	if err != nil {
		return SignedCheckpoint{}, fmt.Errorf("audit log %s: sign checkpoint: %w", c.l.id, err)
	}
	if _, err := c.file.Write(appendFrame(nil, msg)); err != nil {
		return SignedCheckpoint{}, fmt.Errorf("audit log %s: write checkpoint: %w", c.l.id, err)
	}
	if err := c.file.Sync(); err != nil {
		return SignedCheckpoint{}, fmt.Errorf("audit log %s: fsync checkpoints: %w", c.l.id, err)
	}
	sc := SignedCheckpoint{Checkpoint: cp, Note: msg}
	c.set(sc)
	return sc, nil
}

// Checkpoint signs a checkpoint covering every durable event now (unless the
// last one does) and returns it.
func (l *Log) Checkpoint() (SignedCheckpoint, error) {
	if err := l.Err(); err != nil {
		return SignedCheckpoint{}, err
	}
	return l.ck.checkpoint(true)
}

// LastCheckpoint returns the latest checkpoint; ok is false before the first.
func (l *Log) LastCheckpoint() (cp SignedCheckpoint, ok bool) {
	cp, ok, _ = l.ck.latest()
	return cp, ok
}

// WaitCheckpoint waits until a checkpoint covers index (asking for one
// sooner than MaxCheckpointInterval) and returns it.
func (l *Log) WaitCheckpoint(ctx context.Context, index int64) (SignedCheckpoint, error) {
	for {
		ch := l.ck.changedChan()
		if cp, ok, _ := l.ck.latest(); ok && cp.Size > index {
			return cp, nil
		}
		if index >= l.Size() {
			return SignedCheckpoint{}, fmt.Errorf("audit log %s: index %d is not in the log (size %d)", l.id, index, l.Size())
		}
		if err := l.Err(); err != nil {
			return SignedCheckpoint{}, err
		}
		select {
		case l.ck.demand <- struct{}{}:
		default:
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return SignedCheckpoint{}, fmt.Errorf("audit log %s: wait for a checkpoint: %w", l.id, ctx.Err())
		}
	}
}

// RotateKey hands the log over to next: it writes a checkpoint of the durable
// head that announces next's verifier key and is signed by the current key
// and by next; later checkpoints are signed by next alone. Verify follows the
// hand-over from the first key. next must have the same name (the log id).
func (l *Log) RotateKey(next *SigningKey) (SignedCheckpoint, error) {
	if next.Name() != l.id {
		return SignedCheckpoint{}, fmt.Errorf("audit log %s: rotate to a key for log %q", l.id, next.Name())
	}
	if err := l.Err(); err != nil {
		return SignedCheckpoint{}, err
	}
	c := &l.ck
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.rotate(next)
}

// rotate writes the hand-over checkpoint. The caller holds c.mu.
func (c *checkpointer) rotate(next *SigningKey) (SignedCheckpoint, error) {
	head := c.l.Head()
	cp := Checkpoint{Origin: c.l.id, Size: head.N, Root: head.Hash, NextKey: next.VerifierKey()}
	sc, err := c.write(cp, c.key, next)
	if err != nil {
		return sc, err
	}
	c.key = next
	return sc, nil
}
