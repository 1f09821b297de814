package ship_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/custos-dev/custos/audit"
	"github.com/custos-dev/custos/audit/ship"
)

// testLog is an audit log in a temporary directory.
type testLog struct {
	*audit.Log
	dir  string
	key  *audit.SigningKey
	vkey string
}

func newLog(t testing.TB, id string) *testLog {
	t.Helper()
	key, _, err := audit.GenerateSigningKey(id)
	if err != nil {
		t.Fatal(err)
	}
	tl := &testLog{dir: t.TempDir(), key: key, vkey: key.VerifierKey()}
	tl.open(t)
	return tl
}

func (tl *testLog) open(t testing.TB) {
	t.Helper()
	l, err := audit.Open(audit.Options{Dir: tl.dir, Key: tl.key, MinCheckpointInterval: 20 * time.Millisecond, MaxCheckpointInterval: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	tl.Log = l
	t.Cleanup(func() { l.Close() })
}

func event(i int) audit.Event {
	return audit.Event{
		Kind:       audit.Decision,
		Time:       time.Date(2026, 1, 2, 3, 4, 5, i, time.UTC),
		SessionID:  fmt.Sprintf("session-%d", i%7),
		Session:    "nightly",
		RequestID:  fmt.Sprintf("r-%d", i),
		Connection: "customers",
		Actor:      audit.Actor{UID: "https://issuer/agent-1", Type: "workload", Groups: []string{"agents"}},
		Request:    &audit.HTTPRequest{Method: "GET", Path: fmt.Sprintf("/customers/%d", i)},
		Decision:   &audit.DecisionInfo{ID: fmt.Sprintf("d-%d", i), Allow: i%3 != 0, Reasons: []string{"rule r"}, PolicyRevision: "rev-1"},
		Action:     &audit.Action{Kind: "http", Risk: "read", Summary: "GET /customers"},
	}
}

// appendN appends n events from writers goroutines.
func appendN(t testing.TB, l *audit.Log, n, writers int) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += writers {
				if _, err := l.Append(context.Background(), event(i)); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// newKfake starts an in-process Kafka with the two audit topics.
func newKfake(t testing.TB, opts ...kfake.Opt) (*kfake.Cluster, ship.Topics) {
	t.Helper()
	c, err := kfake.NewCluster(append([]kfake.Opt{kfake.NumBrokers(1), kfake.AllowAutoTopicCreation()}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	topics := ship.Topics{Brokers: c.ListenAddrs()}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := ship.CreateTopics(ctx, topics, ship.TopicSettings{Partitions: 3}); err != nil {
		t.Fatal(err)
	}
	return c, topics
}

// startShipper runs a shipper for tl until the test ends.
func startShipper(t testing.TB, tl *testLog, topics ship.Topics, tune func(*ship.Options)) *ship.Shipper {
	t.Helper()
	opts := ship.Options{Dir: tl.dir, Topics: topics, RetryInterval: 20 * time.Millisecond, MaxRetryInterval: 200 * time.Millisecond}
	if tune != nil {
		tune(&opts)
	}
	s, err := ship.New(tl.Log, opts)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Run(context.Background()) }()
	t.Cleanup(func() {
		s.Close()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return s
}

// waitFor polls cond until it holds; the deadline only keeps a broken test
// from hanging.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitDrained waits until every event and the log's latest checkpoint are
// acknowledged.
func waitDrained(t testing.TB, tl *testLog, s *ship.Shipper) {
	t.Helper()
	cp, err := tl.Checkpoint()
	if err != nil {
		t.Fatal(err)
	}
	n := checkpointCount(t, tl)
	waitFor(t, "the shipper to drain", func() bool {
		ev, cps := s.Shipped()
		return ev == cp.Size && s.Lag() == 0 && cps == n
	})
}

func checkpointCount(t testing.TB, tl *testLog) int64 {
	t.Helper()
	cps, err := audit.Checkpoints(nil, tl.dir)
	if err != nil {
		t.Fatal(err)
	}
	return int64(len(cps))
}

// readBack reads the topics and checks that they hold every event of tl,
// byte for byte.
func readBack(t testing.TB, topics ship.Topics, tl *testLog) *ship.Shipped {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	got, err := ship.ReadTopics(ctx, topics)
	if err != nil {
		t.Fatal(err)
	}
	sl := got.Logs[tl.ID()]
	if sl == nil {
		t.Fatalf("no events of log %s in the topics", tl.ID())
	}
	if int64(len(sl.Events)) != tl.Size() {
		t.Fatalf("topics hold %d distinct events of %s, the log %d", len(sl.Events), tl.ID(), tl.Size())
	}
	// One scan: (*audit.Log).Read scans its segment from the start.
	r, err := audit.OpenReader(nil, tl.dir)
	if err != nil {
		t.Fatal(err)
	}
	err = r.Scan(0, func(i int64, want []byte) error {
		if i < tl.Size() && string(sl.Events[i]) != string(want) {
			return fmt.Errorf("event %d differs from the log's:\n got %s\nwant %s", i, sl.Events[i], want)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return got
}
