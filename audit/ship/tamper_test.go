package ship_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"golang.org/x/mod/sumdb/note"

	"github.com/custos-dev/custos/audit"
	"github.com/custos-dev/custos/audit/ship"
)

// TestVerifyTopicsTampered copies a shipped log into fresh topics with one
// change each and verifies those topics alone.
func TestVerifyTopicsTampered(t *testing.T) {
	_, topics := newKfake(t)
	tl := newLog(t, "replica-1")
	s := startShipper(t, tl, topics, nil)
	const n = 40
	for i := range n {
		if _, err := tl.Append(context.Background(), event(i)); err != nil {
			t.Fatal(err)
		}
		if i%10 == 9 {
			// A checkpoint every ten events: a change is pinned to its ten.
			if _, err := tl.Checkpoint(); err != nil {
				t.Fatal(err)
			}
		}
	}
	waitDrained(t, tl, s)
	orig := readBack(t, topics, tl).Logs["replica-1"]
	events := make([][]byte, n)
	for i := range int64(n) {
		events[i] = orig.Events[i]
	}

	other, _, err := audit.GenerateSigningKey("replica-1")
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name   string
		change func(ev [][]byte, cps [][]byte) ([][]byte, [][]byte)
		index  int64 // the index the error names; -1: it names none
		ok     bool
	}{
		{"unchanged", func(ev, cps [][]byte) ([][]byte, [][]byte) { return ev, cps }, -1, true},
		{"offsets reversed", func(ev, cps [][]byte) ([][]byte, [][]byte) {
			slices.Reverse(ev)
			slices.Reverse(cps)
			return ev, cps
		}, -1, true},
		{"every event twice", func(ev, cps [][]byte) ([][]byte, [][]byte) { return append(ev, ev...), append(cps, cps...) }, -1, true},
		{"one byte changed", func(ev, cps [][]byte) ([][]byte, [][]byte) {
			ev[13] = bytes.Replace(ev[13], []byte("/customers/13"), []byte("/customers/99"), 1)
			return ev, cps
		}, 10, false},
		{"one event deleted", func(ev, cps [][]byte) ([][]byte, [][]byte) { return slices.Delete(ev, 17, 18), cps }, 17, false},
		{"two indexes swapped", func(ev, cps [][]byte) ([][]byte, [][]byte) {
			ev[21] = bytes.Replace(ev[21], []byte(`"index":21`), []byte(`"index":22`), 1)
			ev[22] = bytes.Replace(ev[22], []byte(`"index":22`), []byte(`"index":21`), 1)
			return ev, cps
		}, 20, false},
		{"a different event at an index", func(ev, cps [][]byte) ([][]byte, [][]byte) {
			return append(ev, bytes.Replace(ev[5], []byte("/customers/5"), []byte("/customers/6"), 1)), cps
		}, 5, false},
		{"tail cut after a checkpoint", func(ev, cps [][]byte) ([][]byte, [][]byte) { return ev[:35], cps }, 35, false},
		{"checkpoint signed by another key", func(ev, cps [][]byte) ([][]byte, [][]byte) {
			return ev, append(cps, resign(t, cps[len(cps)-1], other))
		}, -1, false},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ev, cps := tc.change(clone(events), clone(orig.Checkpoints))
			tt := topics
			tt.EventsTopic, tt.CheckpointsTopic = fmt.Sprintf("t%d.events", i), fmt.Sprintf("t%d.checkpoints", i)
			publish(t, tt, ev, cps)
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			sums, err := ship.VerifyTopics(ctx, tt, []string{tl.vkey})
			if tc.ok {
				if err != nil {
					t.Fatal(err)
				}
				if sums[0].Events != n {
					t.Fatalf("summary %v", sums[0])
				}
				return
			}
			var ve *audit.VerifyError
			if !errors.As(err, &ve) {
				t.Fatalf("want a VerifyError, got %v", err)
			}
			if ve.Index != tc.index || ve.LogID != "replica-1" {
				t.Fatalf("error names index %d, want %d: %v", ve.Index, tc.index, err)
			}
			t.Log(err)
		})
	}
}

func clone(in [][]byte) [][]byte {
	out := make([][]byte, len(in))
	for i, b := range in {
		out[i] = bytes.Clone(b)
	}
	return out
}

// resign returns the checkpoint msg's text signed by key instead.
func resign(t *testing.T, msg []byte, key *audit.SigningKey) []byte {
	t.Helper()
	text := string(msg[:bytes.LastIndex(msg, []byte("\n\n"))+1])
	cp, err := audit.ParseCheckpoint(text)
	if err != nil {
		t.Fatal(err)
	}
	cp.Root[0] ^= 1
	signed, err := signNote(cp.Text(), key)
	if err != nil {
		t.Fatal(err)
	}
	return signed
}

// publish writes events and checkpoints to fresh topics, as the shipper
// would (key: session id, log id).
func publish(t *testing.T, tt ship.Topics, events, cps [][]byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := ship.CreateTopics(ctx, tt, ship.TopicSettings{Partitions: 3}); err != nil {
		t.Fatal(err)
	}
	write := func(topic string, vals [][]byte, key func([]byte) []byte) {
		w := &kafka.Writer{Addr: kafka.TCP(tt.Brokers...), Topic: topic, RequiredAcks: kafka.RequireAll, Balancer: kafka.Murmur2Balancer{Consistent: true}, BatchTimeout: time.Millisecond, Transport: &kafka.Transport{}}
		defer w.Close()
		var msgs []kafka.Message
		for _, v := range vals {
			msgs = append(msgs, kafka.Message{Key: key(v), Value: v})
		}
		if err := w.WriteMessages(ctx, msgs...); err != nil {
			t.Fatal(err)
		}
	}
	write(tt.EventsTopic, events, func(v []byte) []byte {
		e, err := audit.DecodeEvent(v)
		if err != nil {
			return nil
		}
		return []byte(e.SessionID)
	})
	write(tt.CheckpointsTopic, cps, func([]byte) []byte { return []byte("replica-1") })
}

func signNote(text string, key *audit.SigningKey) ([]byte, error) {
	return note.Sign(&note.Note{Text: text}, key.Signer())
}
