package ship_test

import (
	"context"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/custos-dev/custos/audit/kafkatest"
	"github.com/custos-dev/custos/audit/ship"
)

func TestMain(m *testing.M) {
	code := m.Run()
	kafkatest.StopShared()
	os.Exit(code)
}

// realTopics returns fresh topics on the shared Apache Kafka broker, created
// with the recommended settings (one replica: there is one broker).
func realTopics(t *testing.T) (*kafkatest.Broker, ship.Topics) {
	t.Helper()
	b := kafkatest.Shared(t)
	topics := ship.Topics{
		Brokers:          []string{b.Addr},
		EventsTopic:      kafkatest.Topic(t, "events"),
		CheckpointsTopic: kafkatest.Topic(t, "checkpoints"),
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := ship.CreateTopics(ctx, topics, ship.TopicSettings{Partitions: 3, ReplicationFactor: 1, MinInsyncReplicas: 1}); err != nil {
		t.Fatal(err)
	}
	return b, topics
}

func TestRealKafkaEveryEventArrives(t *testing.T) {
	_, topics := realTopics(t)
	tl := newLog(t, "replica-1")
	s := startShipper(t, tl, topics, nil)
	appendN(t, tl.Log, 500, 8)
	waitDrained(t, tl, s)
	got := readBack(t, topics, tl)
	sums, err := got.Verify([]string{tl.vkey})
	if err != nil {
		t.Fatal(err)
	}
	if sums[0].Events != 500 || sums[0].Covered != 500 {
		t.Fatalf("summary %v", sums[0])
	}
}

// TestRealKafkaBrokerKilled SIGKILLs the broker while events are being
// appended and shipped, appends more while it is down, restarts it, and
// finds every event in the topics.
func TestRealKafkaBrokerKilled(t *testing.T) {
	b, topics := realTopics(t)
	tl := newLog(t, "replica-1")
	s := startShipper(t, tl, topics, nil)

	// A steady stream of appends from before the crash to after the restart.
	var appended atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := tl.Append(context.Background(), event(i)); err != nil {
				t.Error(err)
				return
			}
			appended.Add(1)
			time.Sleep(time.Millisecond) // a steady stream, not a flood
		}
	}()
	waitFor(t, "events shipped before the crash", func() bool { ev, _ := s.Shipped(); return ev >= 200 })
	b.Kill()
	before := appended.Load()
	waitFor(t, "the shipper to notice", func() bool { return s.Err() != nil })
	waitFor(t, "appends while the broker is down", func() bool { return appended.Load() >= before+200 })
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := b.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	close(stop)
	wg.Wait()
	waitDrained(t, tl, s)

	got := readBack(t, topics, tl)
	t.Logf("%d events, %d messages, %d duplicates", tl.Size(), got.Messages, got.Duplicates)
	if _, err := got.Verify([]string{tl.vkey}); err != nil {
		t.Fatal(err)
	}
}
