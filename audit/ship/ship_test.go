package ship_test

import (
	"context"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/custos-dev/custos/audit"
	"github.com/custos-dev/custos/audit/ship"
)

func TestEveryEventArrives(t *testing.T) {
	_, topics := newKfake(t)
	tl := newLog(t, "replica-1")
	s := startShipper(t, tl, topics, nil)
	appendN(t, tl.Log, 600, 8)
	waitDrained(t, tl, s)

	got := readBack(t, topics, tl)
	if got.Duplicates != 0 {
		t.Errorf("%d duplicates without a restart", got.Duplicates)
	}
	if n := len(got.Logs["replica-1"].Checkpoints); int64(n) != checkpointCount(t, tl) {
		t.Errorf("%d checkpoints in the topic, %d in the log", n, checkpointCount(t, tl))
	}
	sums, err := got.Verify([]string{tl.vkey})
	if err != nil {
		t.Fatal(err)
	}
	if len(sums) != 1 || sums[0].Events != 600 || sums[0].Covered != 600 {
		t.Fatalf("summary %v", sums)
	}
}

// TestMessageShape pins what a consumer sees: the key is the session id,
// the value the event's bytes as stored, checkpoints keyed by log id.
func TestMessageShape(t *testing.T) {
	_, topics := newKfake(t)
	tl := newLog(t, "replica-1")
	s := startShipper(t, tl, topics, nil)
	appendN(t, tl.Log, 14, 1)
	waitDrained(t, tl, s)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for p := range 3 {
		r := kafka.NewReader(kafka.ReaderConfig{Brokers: topics.Brokers, Topic: ship.DefaultEventsTopic, Partition: p, MaxWait: 100 * time.Millisecond})
		conn, err := kafka.DialLeader(ctx, "tcp", topics.Brokers[0], ship.DefaultEventsTopic, p)
		if err != nil {
			t.Fatal(err)
		}
		last, err := conn.ReadLastOffset()
		conn.Close()
		if err != nil {
			t.Fatal(err)
		}
		for off := int64(0); off < last; off++ {
			m, err := r.ReadMessage(ctx)
			if err != nil {
				t.Fatal(err)
			}
			e, err := audit.DecodeEvent(m.Value)
			if err != nil {
				t.Fatal(err)
			}
			if string(m.Key) != e.SessionID {
				t.Errorf("key %q, session id %q", m.Key, e.SessionID)
			}
			want, _ := tl.Read(e.Index)
			if string(m.Value) != string(want) {
				t.Errorf("value of event %d is not the stored bytes", e.Index)
			}
		}
		r.Close()
	}
	got := readBack(t, topics, tl)
	for _, cp := range got.Logs["replica-1"].Checkpoints {
		if _, err := audit.OpenCheckpoint(cp, tl.vkey); err != nil {
			t.Fatal(err)
		}
	}
}

// outage makes kfake answer every produce request with a retriable error
// (as a cluster short of in-sync replicas does) until lifted, and counts
// the requests refused.
type outage struct {
	on      atomic.Bool
	refused atomic.Int64
}

func (o *outage) install(c interface {
	ControlKey(int16, func(kmsg.Request) (kmsg.Response, error, bool))
	KeepControl()
}) {
	o.on.Store(true)
	c.ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		if !o.on.Load() {
			return nil, nil, false
		}
		o.refused.Add(1)
		preq := req.(*kmsg.ProduceRequest)
		resp := preq.ResponseKind().(*kmsg.ProduceResponse)
		for _, rt := range preq.Topics {
			st := kmsg.NewProduceResponseTopic()
			st.Topic = rt.Topic
			for _, rp := range rt.Partitions {
				sp := kmsg.NewProduceResponseTopicPartition()
				sp.Partition = rp.Partition
				sp.ErrorCode = kerr.NotEnoughReplicas.Code
				st.Partitions = append(st.Partitions, sp)
			}
			resp.Topics = append(resp.Topics, st)
		}
		return resp, nil, true
	})
}

func TestOutageLosesNothing(t *testing.T) {
	c, topics := newKfake(t)
	tl := newLog(t, "replica-1")
	s := startShipper(t, tl, topics, nil)
	appendN(t, tl.Log, 100, 4)
	waitDrained(t, tl, s)

	var o outage
	o.install(c)
	// The log accepts while Kafka refuses.
	appendN(t, tl.Log, 300, 4)
	waitFor(t, "a refused produce request", func() bool { return o.refused.Load() > 0 && s.Err() != nil })
	if ev, _ := s.Shipped(); ev >= 400 {
		t.Fatalf("%d events acknowledged during the outage", ev)
	}
	if s.Lag() == 0 {
		t.Fatal("no lag during the outage")
	}
	appendN(t, tl.Log, 100, 4)
	o.on.Store(false)
	waitDrained(t, tl, s)
	// The shipper clears its error once the step that drained returns:
	// just after waitDrained can see the drain.
	waitFor(t, "Err cleared after recovery", func() bool { return s.Err() == nil })
	got := readBack(t, topics, tl)
	if _, err := got.Verify([]string{tl.vkey}); err != nil {
		t.Fatal(err)
	}
}

// TestStallLosesNothing holds produce requests unanswered (a broker that
// hangs) until released; writes time out and are sent again.
func TestStallLosesNothing(t *testing.T) {
	c, topics := newKfake(t)
	tl := newLog(t, "replica-1")
	s := startShipper(t, tl, topics, func(o *ship.Options) { o.WriteTimeout = 300 * time.Millisecond })
	appendN(t, tl.Log, 50, 2)
	waitDrained(t, tl, s)

	release := make(chan struct{})
	var stalled atomic.Int64
	c.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		select {
		case <-release:
			c.DropControl()
			return nil, nil, false
		default:
		}
		stalled.Add(1)
		c.SleepControl(func() { <-release })
		return nil, nil, false
	})
	appendN(t, tl.Log, 200, 4)
	waitFor(t, "a stalled produce request", func() bool { return stalled.Load() > 0 && s.Err() != nil })
	if s.Lag() == 0 {
		t.Fatal("no lag during the stall")
	}
	appendN(t, tl.Log, 50, 2)
	close(release)
	waitDrained(t, tl, s)
	got := readBack(t, topics, tl)
	if _, err := got.Verify([]string{tl.vkey}); err != nil {
		t.Fatal(err)
	}
}

func TestRestartResumesFromCursor(t *testing.T) {
	_, topics := newKfake(t)
	tl := newLog(t, "replica-1")
	s, err := ship.New(tl.Log, ship.Options{Dir: tl.dir, Topics: topics})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Run(context.Background()) }()
	appendN(t, tl.Log, 150, 4)
	waitDrained(t, tl, s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	// Shipper down: the log keeps accepting; the cursor file says where
	// the next shipper starts.
	appendN(t, tl.Log, 150, 4)
	s2 := startShipper(t, tl, topics, nil)
	if ev, _ := s2.Shipped(); ev != 150 {
		t.Fatalf("a new shipper starts at %d, the cursor said 150", ev)
	}
	waitDrained(t, tl, s2)
	got := readBack(t, topics, tl)
	if got.Duplicates != 0 || got.Messages != 300 {
		t.Fatalf("%d messages, %d duplicates after a clean restart", got.Messages, got.Duplicates)
	}
	if _, err := got.Verify([]string{tl.vkey}); err != nil {
		t.Fatal(err)
	}
}

// TestCrashResendsDuplicates: a shipper that crashed after Kafka
// acknowledged but before its cursor was written sends those events again;
// the duplicates collapse and verification passes.
func TestCrashResendsDuplicates(t *testing.T) {
	_, topics := newKfake(t)
	tl := newLog(t, "replica-1")
	s, err := ship.New(tl.Log, ship.Options{Dir: tl.dir, Topics: topics})
	if err != nil {
		t.Fatal(err)
	}
	go s.Run(context.Background())
	appendN(t, tl.Log, 120, 4)
	waitDrained(t, tl, s)
	old, err := os.ReadFile(filepath.Join(tl.dir, ship.CursorFile))
	if err != nil {
		t.Fatal(err)
	}
	appendN(t, tl.Log, 80, 4)
	waitDrained(t, tl, s)
	s.Close()
	// The crash: the cursor is as it was before the last 80.
	if err := os.WriteFile(filepath.Join(tl.dir, ship.CursorFile), old, 0o600); err != nil {
		t.Fatal(err)
	}
	s2 := startShipper(t, tl, topics, nil)
	waitDrained(t, tl, s2)
	got := readBack(t, topics, tl)
	if got.Duplicates < 80 {
		t.Fatalf("%d duplicates, want at least 80", got.Duplicates)
	}
	if _, err := got.Verify([]string{tl.vkey}); err != nil {
		t.Fatal(err)
	}
}

// TestSeveralReplicas: two logs (replicas with their own keys) ship to the
// same topics; each verifies with its own key, and a log without a key is
// refused.
func TestSeveralReplicas(t *testing.T) {
	_, topics := newKfake(t)
	a, b := newLog(t, "replica-a"), newLog(t, "replica-b")
	sa := startShipper(t, a, topics, nil)
	sb := startShipper(t, b, topics, nil)
	appendN(t, a.Log, 120, 4)
	appendN(t, b.Log, 80, 4)
	waitDrained(t, a, sa)
	waitDrained(t, b, sb)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	sums, err := ship.VerifyTopics(ctx, topics, []string{a.vkey, b.vkey})
	if err != nil {
		t.Fatal(err)
	}
	if len(sums) != 2 || sums[0].LogID != "replica-a" || sums[0].Events != 120 || sums[1].Events != 80 {
		t.Fatalf("summaries %v", sums)
	}
	if _, err := ship.VerifyTopics(ctx, topics, []string{a.vkey}); err == nil {
		t.Fatal("replica-b verified without its key")
	}
}
