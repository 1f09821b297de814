// Package audit is Custos' evidence: audit events (OCSF API Activity with a
// custos block) appended to a tamper-evident log, a Merkle tree as in
// Certificate Transparency (RFC 6962, through golang.org/x/mod/sumdb/tlog),
// whose checkpoints are signed notes (golang.org/x/mod/sumdb/note, Ed25519).
//
// Appends from many requests are group-committed: one write and one fsync per
// batch, and Append returns only once its event is durable. Verify rebuilds
// the tree from the event bytes and checks every checkpoint; Proof and
// VerifyProof give an inclusion proof that anyone holding the verifier key
// can check offline. docs/audit.md describes the format and what a checkpoint
// proves. TestTamper* show which alterations are found.
package audit

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"golang.org/x/mod/sumdb/tlog"
)

// Options configure a log.
type Options struct {
	// Dir is the log directory; it is created if missing.
	Dir string
	// Key signs checkpoints; its name is the log id.
	Key *SigningKey
	// PreviousKey, when the last checkpoint was signed by it rather than Key,
	// hands the log over to Key: Open writes a checkpoint signed by both.
	PreviousKey *SigningKey
	// FS is the file system; nil means the operating system's.
	FS FS
	// SegmentSize is the size past which a new segment file starts (64 MiB
	// if zero).
	SegmentSize int64
	// MinCheckpointInterval is the least time between two checkpoints (200ms
	// if zero); MaxCheckpointInterval the most while events arrive (2s if
	// zero).
	MinCheckpointInterval time.Duration
	MaxCheckpointInterval time.Duration
}

// ErrClosed is returned by Append after Close.
var ErrClosed = errors.New("audit log closed")

// Log is an open audit log. Its methods are safe for concurrent use.
type Log struct {
	opts Options
	fs   FS
	dir  string
	id   string

	mu     sync.Mutex
	cur    *batch // the batch appends join
	closed bool
	broken error // a write or fsync failed: nothing more is acknowledged
	segs   []int64
	wake   chan struct{}
	stop   chan struct{}
	done   chan struct{}

	// Owned by the committer goroutine.
	seg      File
	segFirst int64
	segSize  int64
	hashes   File
	n        int64
	front    frontier
	wbuf     []byte
	hbuf     []tlog.Hash
	rbuf     []byte

	headMu sync.Mutex
	head   tlog.Tree // durable size and its root

	ck      checkpointer
	recover Recovery
}

// Recovery says what Open found.
type Recovery struct {
	// Events is how many events the log holds.
	Events int64
	// TornBytes is how many bytes of a partly written tail were cut.
	TornBytes int64
	// RehashedEvents is how many events' stored hashes were recomputed.
	RehashedEvents int64
	// Checkpoint is the last checkpoint, the one the tree was checked against
	// (Size 0 if none).
	Checkpoint Checkpoint
	// Rotated is set when Open handed the log over from PreviousKey to Key.
	Rotated bool
}

type batch struct {
	items []item
	first int64
	err   error
	done  chan struct{}
}

type item struct {
	buf  []byte
	hole int
}

// Open opens (or creates) the log in opts.Dir, recovering from a crash: a
// torn tail is cut, stored hashes missing after the last checkpoint are
// recomputed from the events, and the tree is checked against the last
// checkpoint. Open fails if they disagree or if the checkpoint covers events
// the log no longer holds.
func Open(opts Options) (*Log, error) {
	if opts.Key == nil {
		return nil, errors.New("open audit log: no signing key")
	}
	if opts.PreviousKey != nil && opts.PreviousKey.Name() != opts.Key.Name() {
		return nil, fmt.Errorf("open audit log: previous key is for log %q, key for %q", opts.PreviousKey.Name(), opts.Key.Name())
	}
	if opts.FS == nil {
		opts.FS = OSFS{}
	}
	if opts.SegmentSize <= 0 {
		opts.SegmentSize = 64 << 20
	}
	if opts.MinCheckpointInterval <= 0 {
		opts.MinCheckpointInterval = 200 * time.Millisecond
	}
	if opts.MaxCheckpointInterval <= 0 {
		opts.MaxCheckpointInterval = 2 * time.Second
	}
	if opts.MaxCheckpointInterval < opts.MinCheckpointInterval {
		opts.MaxCheckpointInterval = opts.MinCheckpointInterval
	}
	l := &Log{
		opts: opts,
		fs:   opts.FS,
		dir:  opts.Dir,
		id:   opts.Key.Name(),
		wake: make(chan struct{}, 1),
		stop: make(chan struct{}),
		done: make(chan struct{}),
	}
	l.ck.l = l
	if err := l.open(); err != nil {
		l.closeFiles()
		return nil, fmt.Errorf("open audit log %s: %w", opts.Dir, err)
	}
	go l.commitLoop()
	l.ck.start()
	return l, nil
}

// ID returns the log id.
func (l *Log) ID() string { return l.id }

// Recovery returns what Open found.
func (l *Log) Recovery() Recovery { return l.recover }

// Size returns how many events are durable.
func (l *Log) Size() int64 {
	l.headMu.Lock()
	defer l.headMu.Unlock()
	return l.head.N
}

// Head returns the durable size and the tree hash at that size.
func (l *Log) Head() tlog.Tree {
	l.headMu.Lock()
	defer l.headMu.Unlock()
	return l.head
}

// Append adds e to the log and returns its position once it is durable.
// The log sets e's LogID, Index and (when zero) Time. An error means the
// event may not be in the log; if ctx ends first, the event may still become
// durable later.
func (l *Log) Append(ctx context.Context, e Event) (Position, error) {
	if !e.Kind.Valid() {
		return Position{}, fmt.Errorf("append audit event: unknown kind %q", e.Kind)
	}
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	e.LogID = l.id
	buf, at := e.encodeWithHole()
	if len(buf)+20 > MaxRecordSize {
		return Position{}, fmt.Errorf("append audit event: %d bytes, more than %d", len(buf), MaxRecordSize)
	}
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return Position{}, ErrClosed
	}
	if l.broken != nil {
		err := l.broken
		l.mu.Unlock()
		return Position{}, err
	}
	b := l.cur
	if b == nil {
		b = &batch{done: make(chan struct{})}
		l.cur = b
	}
	pos := len(b.items)
	b.items = append(b.items, item{buf, at})
	l.mu.Unlock()
	select {
	case l.wake <- struct{}{}:
	default:
	}
	select {
	case <-b.done:
	case <-ctx.Done():
		return Position{}, fmt.Errorf("append audit event: %w", ctx.Err())
	}
	if b.err != nil {
		return Position{}, b.err
	}
	return Position{LogID: l.id, Index: b.first + int64(pos)}, nil
}

// commitLoop writes batches until Close.
func (l *Log) commitLoop() {
	defer close(l.done)
	for {
		select {
		case <-l.wake:
		case <-l.stop:
		}
		l.mu.Lock()
		b := l.cur
		l.cur = nil
		closed := l.closed
		l.mu.Unlock()
		if b != nil {
			l.commit(b)
			close(b.done)
		}
		if closed && b == nil {
			return
		}
	}
}

// commit writes one batch, fsyncs it, and stores its hashes.
func (l *Log) commit(b *batch) {
	l.mu.Lock()
	broken := l.broken
	l.mu.Unlock()
	if broken != nil {
		b.err = broken
		return
	}
	b.first = l.n
	front := l.front
	w := l.wbuf[:0]
	hs := l.hbuf[:0]
	for i, it := range b.items {
		idx := b.first + int64(i)
		rec := append(l.rbuf[:0], it.buf[:it.hole]...)
		rec = strconv.AppendInt(rec, idx, 10)
		rec = append(rec, it.buf[it.hole:]...)
		l.rbuf = rec
		w = appendFrame(w, rec)
		hs = front.add(idx, tlog.RecordHash(rec), hs)
	}
	l.wbuf, l.hbuf = w, hs

	if l.segSize > headerSize && l.segSize+int64(len(w)) > l.opts.SegmentSize {
		if err := l.rotate(b.first); err != nil {
			b.err = l.fail(fmt.Errorf("start segment %d: %w", b.first, err))
			return
		}
	}
	if _, err := l.seg.Write(w); err != nil {
		// Take the partial write back so that the next batch starts at a
		// frame boundary; if that fails, stop acknowledging.
		if terr := l.seg.Truncate(l.segSize); terr != nil {
			b.err = l.fail(fmt.Errorf("write segment: %w (and truncating it back: %v)", err, terr))
			return
		}
		b.err = fmt.Errorf("append audit events: write segment: %w", err)
		return
	}
	if err := l.seg.Sync(); err != nil {
		// After a failed fsync the kernel may have dropped the pages: what is
		// on disk is unknown, so nothing more is acknowledged.
		b.err = l.fail(fmt.Errorf("fsync segment: %w", err))
		return
	}
	l.segSize += int64(len(w))
	l.n += int64(len(b.items))
	l.front = front
	hb := make([]byte, 0, len(hs)*tlog.HashSize)
	for _, h := range hs {
		hb = append(hb, h[:]...)
	}
	if _, err := l.hashes.Write(hb); err != nil {
		// The events are durable (and acknowledged); their hashes can be
		// recomputed at the next Open, but the tree on disk is now behind.
		l.fail(fmt.Errorf("write hashes: %w", err))
	}
	l.headMu.Lock()
	l.head = tlog.Tree{N: l.n, Hash: front.root(l.n)}
	l.headMu.Unlock()

}

// fail marks the log broken and returns the error Append reports.
func (l *Log) fail(err error) error {
	err = fmt.Errorf("audit log %s: %w", l.id, err)
	l.mu.Lock()
	if l.broken == nil {
		l.broken = err
	}
	l.mu.Unlock()
	return err
}

// Err returns the error that stopped the log from acknowledging appends, if any.
func (l *Log) Err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.broken
}

// rotate seals the current segment and starts one at index first.
func (l *Log) rotate(first int64) error {
	if err := l.seg.Sync(); err != nil {
		return err
	}
	if err := l.seg.Close(); err != nil {
		return err
	}
	l.seg = nil
	f, err := l.createSegment(first)
	if err != nil {
		return err
	}
	l.seg, l.segFirst, l.segSize = f, first, headerSize
	l.mu.Lock()
	l.segs = append(l.segs, first)
	l.mu.Unlock()
	return nil
}

// createSegment creates a segment file with its header, durably.
func (l *Log) createSegment(first int64) (File, error) {
	f, err := l.fs.OpenFile(filepath.Join(l.dir, segmentName(first)), os.O_RDWR|os.O_CREATE|os.O_EXCL|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	if _, err := f.Write(fileHeader(segmentMagic, uint64(first))); err != nil {
		f.Close()
		return nil, err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return nil, err
	}
	if err := l.fs.SyncDir(l.dir); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// Close stops accepting appends, waits for those under way, writes a last
// checkpoint and closes the files.
func (l *Log) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return ErrClosed
	}
	l.closed = true
	l.mu.Unlock()
	close(l.stop)
	<-l.done
	l.ck.stopLoop()
	var errs []error
	if l.Err() == nil {
		if _, err := l.ck.checkpoint(true); err != nil {
			errs = append(errs, err)
		}
		if err := l.hashes.Sync(); err != nil {
			errs = append(errs, fmt.Errorf("audit log %s: fsync hashes: %w", l.id, err))
		}
	}
	errs = append(errs, l.closeFiles())
	return errors.Join(errs...)
}

func (l *Log) closeFiles() error {
	var errs []error
	for _, f := range []File{l.seg, l.hashes, l.ck.file} {
		if f != nil {
			errs = append(errs, f.Close())
		}
	}
	l.seg, l.hashes, l.ck.file = nil, nil, nil
	return errors.Join(errs...)
}
