// Package ship copies an audit log to Kafka and reads it back for
// verification.
//
// A Shipper follows an *audit.Log: each durable event goes to the events
// topic (key: the event's session id; value: the event's canonical JSON,
// byte for byte as stored in the log) and each signed checkpoint to the
// checkpoints topic (key: the log id; value: the signed note), once the
// events it covers were acknowledged. Writes wait for every in-sync replica
// (RequiredAcks: RequireAll). A cursor file in the log directory (CursorFile)
// records how far Kafka acknowledged; it is written atomically and advanced
// only after an acknowledgement, so a crash resends (the duplicates are
// harmless: every event names its log id and index) and never skips. While
// Kafka is down the log keeps accepting events (the shipper never blocks an
// append) and the backlog drains when Kafka returns.
//
// ReadTopics and VerifyTopics read both topics back from the beginning and
// verify them with audit.Checker, ordering events by (log id, index), never
// by partition or offset. TestOutageLosesNothing, TestRestartResumesFromCursor
// and TestVerifyTopicsTampered show the guarantees against kfake;
// TestRealKafka* against an Apache Kafka broker (audit/kafkatest).
package ship

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/custos-dev/custos/audit"
)

// Options configure a Shipper.
type Options struct {
	// Dir is the log's directory (audit.Options.Dir): events and
	// checkpoints are read from it, and the cursor is kept in it.
	Dir string
	// Topics names the brokers, the topics, TLS and the dial timeout.
	Topics
	// BatchTimeout is how long a partial batch waits for more events (5ms
	// if zero): a lone event is sent almost at once.
	BatchTimeout time.Duration
	// BatchSize is the most events sent in one write (1000 if zero).
	BatchSize int
	// WriteTimeout bounds one write, retries included (30s if zero); a write
	// that times out is sent again.
	WriteTimeout time.Duration
	// PollInterval is how often the log is checked for new events when
	// idle (5ms if zero).
	PollInterval time.Duration
	// RetryInterval is the first wait after a failed write (250ms if zero);
	// it doubles up to MaxRetryInterval (5s if zero) while writes fail.
	RetryInterval    time.Duration
	MaxRetryInterval time.Duration
	// Logger reports failed writes and recoveries (slog.Default() if nil).
	Logger *slog.Logger
}

// Shipper copies one audit log to Kafka. Its methods are safe for concurrent
// use.
type Shipper struct {
	log  *audit.Log
	opts Options
	src  eventSource

	events, checkpoints *kafka.Writer

	// Owned by Run.
	cur      cursor
	seenNote string // the log's latest checkpoint when the file was last read

	shipped atomic.Int64 // events acknowledged (cursor.Events)
	ckpts   atomic.Int64 // checkpoints acknowledged

	mu      sync.Mutex
	lastErr error
	running bool
	stop    chan struct{}
	done    chan struct{}
	closed  bool
}

// New returns a shipper for log, whose directory is opts.Dir, starting from
// the cursor file there (or from the first event). It does not connect:
// Run does.
func New(log *audit.Log, opts Options) (*Shipper, error) {
	if log == nil {
		return nil, errors.New("audit shipper: no log")
	}
	if opts.Dir == "" {
		return nil, errors.New("audit shipper: no log directory")
	}
	t, err := opts.Topics.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("audit shipper: %w", err)
	}
	opts.Topics = t
	if opts.BatchTimeout <= 0 {
		opts.BatchTimeout = 5 * time.Millisecond
	}
	if opts.BatchSize <= 0 {
		opts.BatchSize = 1000
	}
	if opts.WriteTimeout <= 0 {
		opts.WriteTimeout = 30 * time.Second
	}
	if opts.PollInterval <= 0 {
		opts.PollInterval = 5 * time.Millisecond
	}
	if opts.RetryInterval <= 0 {
		opts.RetryInterval = 250 * time.Millisecond
	}
	if opts.MaxRetryInterval < opts.RetryInterval {
		opts.MaxRetryInterval = max(5*time.Second, opts.RetryInterval)
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	opts.Logger = opts.Logger.With("log_id", log.ID())

	cur, ok, err := loadCursor(opts.Dir)
	if err != nil {
		return nil, fmt.Errorf("audit shipper: %w", err)
	}
	if !ok {
		opts.Logger.Warn("audit shipper: unreadable cursor, shipping again from the first event", "file", CursorFile)
	}
	if cur.LogID != log.ID() || cur.EventsTopic != t.EventsTopic {
		cur.Events = 0
	}
	if cur.LogID != log.ID() || cur.CheckpointsTopic != t.CheckpointsTopic {
		cur.CheckpointsOffset, cur.Checkpoints = 0, 0
	}
	cur.LogID, cur.EventsTopic, cur.CheckpointsTopic = log.ID(), t.EventsTopic, t.CheckpointsTopic
	if size := log.Size(); cur.Events > size {
		return nil, fmt.Errorf("audit shipper: %s says %d events were shipped but log %s holds %d", CursorFile, cur.Events, log.ID(), size)
	}

	s := &Shipper{log: log, opts: opts, cur: cur, src: eventSource{dir: opts.Dir, logID: log.ID()}}
	s.shipped.Store(cur.Events)
	s.ckpts.Store(cur.Checkpoints)
	s.events = s.writer(t.EventsTopic, opts.BatchSize)
	s.checkpoints = s.writer(t.CheckpointsTopic, 100)
	return s, nil
}

func (s *Shipper) writer(topic string, batch int) *kafka.Writer {
	return &kafka.Writer{
		Addr:         kafka.TCP(s.opts.Brokers...),
		Topic:        topic,
		Balancer:     kafka.Murmur2Balancer{Consistent: true}, // the Java client's partitioner
		RequiredAcks: kafka.RequireAll,
		BatchSize:    batch,
		BatchBytes:   16 << 20,
		BatchTimeout: s.opts.BatchTimeout,
		// A few quick retries inside the writer; Run retries for ever.
		MaxAttempts:     3,
		WriteBackoffMin: 50 * time.Millisecond,
		WriteBackoffMax: 500 * time.Millisecond,
		Transport:       s.opts.transport(),
	}
}

// Run ships until ctx is done or Close is called, and then returns nil.
// Failures (Kafka unreachable or refusing, the log directory unreadable, the
// cursor unwritable) are retried for ever with a growing wait, and Err
// reports the last one; the events stay in the log meanwhile.
func (s *Shipper) Run(ctx context.Context) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return errors.New("audit shipper: closed")
	}
	if s.running {
		s.mu.Unlock()
		return errors.New("audit shipper: already running")
	}
	s.running = true
	s.stop, s.done = make(chan struct{}), make(chan struct{})
	stop, done := s.stop, s.done
	s.mu.Unlock()
	defer func() {
		s.src.close()
		s.mu.Lock()
		s.running = false
		s.mu.Unlock()
		close(done)
	}()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-stop:
			cancel()
		case <-ctx.Done():
		}
	}()

	retry := s.opts.RetryInterval
	idle := time.NewTimer(0)
	defer idle.Stop()
	for {
		moved, err := s.step(ctx)
		if ctx.Err() != nil {
			return nil
		}
		wait := s.opts.PollInterval
		if err != nil {
			if s.setErr(err) {
				s.opts.Logger.Warn("audit shipper: shipping failed; retrying", "err", err, "lag", s.Lag())
			}
			wait, retry = retry, min(2*retry, s.opts.MaxRetryInterval)
		} else {
			if s.setErr(nil) {
				s.opts.Logger.Info("audit shipper: shipping again", "lag", s.Lag())
			}
			retry = s.opts.RetryInterval
			if moved {
				continue
			}
		}
		idle.Reset(wait)
		select {
		case <-idle.C:
		case <-ctx.Done():
			return nil
		}
	}
}

// step ships what it can and reports whether anything moved.
func (s *Shipper) step(ctx context.Context) (bool, error) {
	moved := false
	size := s.log.Size()
	if s.cur.Events < size {
		recs, err := s.src.read(s.cur.Events, size, s.opts.BatchSize)
		if err != nil && len(recs) == 0 {
			return false, err
		}
		n, werr := s.writeEvents(ctx, recs)
		if n > 0 {
			moved = true
			s.cur.Events += int64(n)
			if err := s.cur.save(s.opts.Dir); err != nil {
				return moved, err
			}
			s.shipped.Store(s.cur.Events)
		}
		if werr != nil {
			return moved, werr
		}
		if err != nil {
			return moved, err
		}
	}
	cp, ok := s.log.LastCheckpoint()
	if !moved && (!ok || string(cp.Note) == s.seenNote) {
		return moved, nil
	}
	cps, err := readCheckpoints(s.opts.Dir, s.cur.CheckpointsOffset, 100)
	if err != nil && len(cps) == 0 {
		return moved, err
	}
	var msgs []kafka.Message
	for _, c := range cps {
		if c.Size > s.cur.Events {
			break // its events are not all acknowledged yet
		}
		msgs = append(msgs, kafka.Message{
			Key:     []byte(c.Origin),
			Value:   c.note,
			Headers: []kafka.Header{{Key: "custos-log-id", Value: []byte(c.Origin)}, {Key: "custos-size", Value: strconv.AppendInt(nil, c.Size, 10)}},
		})
	}
	if len(msgs) == len(cps) && len(cps) < 100 && err == nil {
		// Everything in the file up to the checkpoint the log announced
		// (written before it is announced) is in hand.
		s.seenNote = string(cp.Note)
	}
	if len(msgs) == 0 {
		return moved, nil
	}
	n, werr := s.write(ctx, s.checkpoints, msgs)
	if n > 0 {
		moved = true
		s.cur.CheckpointsOffset = cps[n-1].end
		s.cur.Checkpoints += int64(n)
		if err := s.cur.save(s.opts.Dir); err != nil {
			return moved, err
		}
		s.ckpts.Store(s.cur.Checkpoints)
	}
	if werr != nil {
		s.seenNote = ""
	}
	return moved, werr
}

// writeEvents sends events and returns how many, from the first, Kafka
// acknowledged.
func (s *Shipper) writeEvents(ctx context.Context, recs []record) (int, error) {
	msgs := make([]kafka.Message, len(recs))
	logID := []byte(s.log.ID())
	for i, r := range recs {
		msgs[i] = kafka.Message{
			Key:   []byte(r.session),
			Value: r.value,
			Headers: []kafka.Header{
				{Key: "custos-log-id", Value: logID},
				{Key: "custos-index", Value: strconv.AppendInt(nil, r.index, 10)},
			},
		}
	}
	n, err := s.write(ctx, s.events, msgs)
	if n < len(recs) {
		s.src.close() // read again from the cursor
	}
	return n, err
}

// write sends msgs and returns the length of the acknowledged prefix.
func (s *Shipper) write(ctx context.Context, w *kafka.Writer, msgs []kafka.Message) (int, error) {
	if len(msgs) == 0 {
		return 0, nil
	}
	ctx, cancel := context.WithTimeout(ctx, s.opts.WriteTimeout)
	defer cancel()
	err := w.WriteMessages(ctx, msgs...)
	if err == nil {
		return len(msgs), nil
	}
	n := 0
	var we kafka.WriteErrors
	if errors.As(err, &we) && len(we) == len(msgs) {
		for n < len(we) && we[n] == nil {
			n++
		}
	}
	if len(we) > 0 {
		// One line, not one error per message.
		var first error
		for _, e := range we {
			if e != nil {
				first = e
				break
			}
		}
		return n, fmt.Errorf("write %d messages to %s: %d refused, the first: %w", len(msgs), w.Topic, we.Count(), first)
	}
	return n, fmt.Errorf("write %d messages to %s: %w", len(msgs), w.Topic, err)
}

// setErr records the last failure and reports whether the state changed
// from healthy to failing or back.
func (s *Shipper) setErr(err error) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	changed := (s.lastErr == nil) != (err == nil)
	s.lastErr = err
	return changed
}

// Lag returns how many durable events Kafka has not acknowledged yet.
func (s *Shipper) Lag() int64 {
	return max(0, s.log.Size()-s.shipped.Load())
}

// Shipped returns how many events and checkpoints Kafka acknowledged (as
// the cursor records them).
func (s *Shipper) Shipped() (events, checkpoints int64) {
	return s.shipped.Load(), s.ckpts.Load()
}

// Err returns the last write failure, or nil once writes succeed again.
func (s *Shipper) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastErr
}

// Close stops Run, waits for it to return and closes the connections.
// Events not yet shipped stay in the log; the next shipper on the directory
// sends them.
func (s *Shipper) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	stop, done, running := s.stop, s.done, s.running
	s.mu.Unlock()
	if running {
		close(stop)
		<-done
	}
	return errors.Join(s.events.Close(), s.checkpoints.Close())
}
