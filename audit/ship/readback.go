package ship

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"time"

	"github.com/segmentio/kafka-go"
	"golang.org/x/mod/sumdb/note"

	"github.com/custos-dev/custos/audit"
)

// Shipped is what the two topics hold, by log id.
type Shipped struct {
	// Logs are the logs found in either topic, by log id.
	Logs map[string]*ShippedLog
	// Messages and Duplicates count the events topic's messages and those
	// that repeated an event already read (after a shipper's restart).
	Messages   int64
	Duplicates int64
}

// ShippedLog is one log's events and checkpoints as read from Kafka.
type ShippedLog struct {
	LogID string
	// Events are the distinct events by index (the index each event names).
	Events map[int64][]byte
	// Checkpoints are the signed checkpoints, duplicates removed.
	Checkpoints [][]byte
	// conflict is the first index found with two different events.
	conflict int64
}

func (s *Shipped) logFor(id string) *ShippedLog {
	l := s.Logs[id]
	if l == nil {
		l = &ShippedLog{LogID: id, Events: map[int64][]byte{}, conflict: -1}
		s.Logs[id] = l
	}
	return l
}

// ReadTopics reads both topics from their first offsets up to the high
// watermarks they have when it starts, every partition, without a consumer
// group (nothing is committed). Events are filed under the log id and index
// they name; identical duplicates collapse. A message that is not an event
// is filed under the log id and index in its headers, when it has them, so
// that verification names that index; otherwise ReadTopics fails naming
// its partition and offset.
func ReadTopics(ctx context.Context, t Topics) (*Shipped, error) {
	t, err := t.withDefaults()
	if err != nil {
		return nil, err
	}
	out := &Shipped{Logs: map[string]*ShippedLog{}}
	err = readTopic(ctx, t, t.EventsTopic, func(m kafka.Message) error {
		out.Messages++
		id, idx, ok := "", int64(0), false
		if e, err := audit.DecodeEvent(m.Value); err == nil {
			id, idx, ok = e.LogID, e.Index, true
		} else {
			id, idx, ok = headerPosition(m)
		}
		if !ok {
			return fmt.Errorf("topic %s partition %d offset %d: not an audit event", m.Topic, m.Partition, m.Offset)
		}
		l := out.logFor(id)
		if prev, dup := l.Events[idx]; dup {
			if bytes.Equal(prev, m.Value) {
				out.Duplicates++
			} else if l.conflict < 0 || idx < l.conflict {
				l.conflict = idx
			}
			return nil
		}
		l.Events[idx] = m.Value
		return nil
	})
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	err = readTopic(ctx, t, t.CheckpointsTopic, func(m kafka.Message) error {
		id := string(m.Key)
		if cp, err := parseNote(m.Value); err == nil {
			id = cp.Origin
		}
		if id == "" {
			return fmt.Errorf("topic %s partition %d offset %d: not a signed checkpoint", m.Topic, m.Partition, m.Offset)
		}
		if seen[string(m.Value)] {
			return nil
		}
		seen[string(m.Value)] = true
		l := out.logFor(id)
		l.Checkpoints = append(l.Checkpoints, m.Value)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// headerPosition returns the log id and index a shipped message's headers
// name.
func headerPosition(m kafka.Message) (string, int64, bool) {
	var id string
	idx := int64(-1)
	for _, h := range m.Headers {
		switch h.Key {
		case "custos-log-id":
			id = string(h.Value)
		case "custos-index":
			if n, err := strconv.ParseInt(string(h.Value), 10, 64); err == nil && n >= 0 {
				idx = n
			}
		}
	}
	return id, idx, id != "" && idx >= 0
}

// readTopic calls fn for every message of every partition of topic, from
// the first offset to the high watermark read at the start.
func readTopic(ctx context.Context, t Topics, topic string, fn func(kafka.Message) error) error {
	c := t.client()
	md, err := c.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		return fmt.Errorf("read topic %s: metadata: %w", topic, err)
	}
	if len(md.Topics) != 1 || md.Topics[0].Error != nil {
		if len(md.Topics) == 1 {
			err = md.Topics[0].Error
		}
		return fmt.Errorf("read topic %s: %w", topic, errors.Join(err, errors.New("topic not found")))
	}
	var reqs []kafka.OffsetRequest
	for _, p := range md.Topics[0].Partitions {
		reqs = append(reqs, kafka.FirstOffsetOf(p.ID), kafka.LastOffsetOf(p.ID))
	}
	offs, err := c.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{topic: reqs}})
	if err != nil {
		return fmt.Errorf("read topic %s: list offsets: %w", topic, err)
	}
	parts := offs.Topics[topic]
	sort.Slice(parts, func(i, j int) bool { return parts[i].Partition < parts[j].Partition })
	for _, p := range parts {
		if p.Error != nil {
			return fmt.Errorf("read topic %s partition %d: list offsets: %w", topic, p.Partition, p.Error)
		}
		if p.LastOffset <= p.FirstOffset {
			continue
		}
		if err := readPartition(ctx, t, topic, p.Partition, p.FirstOffset, p.LastOffset, fn); err != nil {
			return err
		}
	}
	return nil
}

func readPartition(ctx context.Context, t Topics, topic string, partition int, first, high int64, fn func(kafka.Message) error) error {
	r := kafka.NewReader(kafka.ReaderConfig{
		Brokers:   t.Brokers,
		Topic:     topic,
		Partition: partition,
		Dialer:    t.dialer(),
		MinBytes:  1,
		MaxBytes:  16 << 20,
		MaxWait:   250 * time.Millisecond,
	})
	defer r.Close()
	if err := r.SetOffset(first); err != nil {
		return fmt.Errorf("read topic %s partition %d: %w", topic, partition, err)
	}
	for {
		m, err := r.ReadMessage(ctx)
		if err != nil {
			return fmt.Errorf("read topic %s partition %d: %w", topic, partition, err)
		}
		if err := fn(m); err != nil {
			return err
		}
		if m.Offset >= high-1 {
			return nil
		}
	}
}

// Verify checks each log in s with audit.Checker: every checkpoint (those in
// the topic and extra ones, e.g. from a log directory) against keys, then
// every event in index order. keys holds one or more verifier keys per log
// id; a log with no key is an error, and so is a key whose log has nothing
// in the topics. It returns a summary per log, by log id, and the first
// failure (an *audit.VerifyError naming the log id and index when the fault
// is in the log).
func (s *Shipped) Verify(keys []string, extra ...[]byte) ([]*audit.Summary, error) {
	ids := map[string]bool{}
	for id := range s.Logs {
		ids[id] = true
	}
	for _, k := range keys {
		v, err := note.NewVerifier(k)
		if err != nil {
			return nil, fmt.Errorf("verifier key: %w", err)
		}
		ids[v.Name()] = true
	}
	sorted := make([]string, 0, len(ids))
	for id := range ids {
		sorted = append(sorted, id)
	}
	sort.Strings(sorted)
	var out []*audit.Summary
	for _, id := range sorted {
		l := s.Logs[id]
		if l == nil {
			return out, fmt.Errorf("audit log %s: nothing in the topics", id)
		}
		sum, err := l.verify(keys, extra)
		if err != nil {
			return out, err
		}
		out = append(out, sum)
	}
	return out, nil
}

func (l *ShippedLog) verify(keys []string, extra [][]byte) (*audit.Summary, error) {
	c, err := audit.NewChecker(l.LogID, keys)
	if err != nil {
		return nil, fmt.Errorf("audit log %s: %w", l.LogID, err)
	}
	for _, m := range l.Checkpoints {
		if err := c.AddCheckpoint(m); err != nil {
			return nil, err
		}
	}
	for _, m := range extra {
		if cp, err := parseNote(m); err == nil && cp.Origin != l.LogID {
			continue
		}
		if err := c.AddCheckpoint(m); err != nil {
			return nil, err
		}
	}
	idxs := make([]int64, 0, len(l.Events))
	for i := range l.Events {
		idxs = append(idxs, i)
	}
	sort.Slice(idxs, func(i, j int) bool { return idxs[i] < idxs[j] })
	for _, i := range idxs {
		if l.conflict >= 0 && i == l.conflict {
			return nil, &audit.VerifyError{LogID: l.LogID, Index: i, Checkpoint: -1, Reason: "two different events at this index in the topic"}
		}
		if err := c.AddEvent(l.Events[i]); err != nil {
			return nil, err
		}
	}
	return c.Finish()
}

// VerifyTopics reads both topics (ReadTopics) and verifies every log in
// them (Shipped.Verify) with keys and the extra checkpoints: what `custos
// audit verify --kafka` does. With --dir too, pass the directory's
// checkpoints (audit.Checkpoints) as extra, and the topics' checkpoints
// (CheckpointsOf) to audit.Verify.
func VerifyTopics(ctx context.Context, t Topics, keys []string, extra ...[]byte) ([]*audit.Summary, error) {
	s, err := ReadTopics(ctx, t)
	if err != nil {
		return nil, err
	}
	return s.Verify(keys, extra...)
}

// CheckpointsOf returns every checkpoint in the topics, for
// audit.VerifyOptions.Checkpoints.
func (s *Shipped) CheckpointsOf(logID string) [][]byte {
	if l := s.Logs[logID]; l != nil {
		return l.Checkpoints
	}
	return nil
}
