package ship_test

import (
	"context"
	"slices"
	"testing"
	"time"
)

// BenchmarkShip measures shipping throughput to kfake: b.N events already
// in the log, shipped from the first to the last acknowledgement.
//
//	go test ./audit/ship -run XXX -bench Ship -benchtime 50000x
func BenchmarkShip(b *testing.B) {
	_, topics := newKfake(b)
	tl := newLog(b, "replica-1")
	appendN(b, tl.Log, b.N, 64)
	b.ResetTimer()
	start := time.Now()
	s := startShipper(b, tl, topics, nil)
	waitFor(b, "the backlog to drain", func() bool { ev, _ := s.Shipped(); return ev == int64(b.N) })
	b.StopTimer()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "events/s")
}

// BenchmarkLoneEvent measures how long one event waits before Kafka (kfake)
// acknowledges it when nothing else is being shipped: the latency batching
// adds (Options.BatchTimeout, PollInterval).
func BenchmarkLoneEvent(b *testing.B) {
	_, topics := newKfake(b)
	tl := newLog(b, "replica-1")
	s := startShipper(b, tl, topics, nil)
	var lat []time.Duration
	b.ResetTimer()
	for i := range b.N {
		start := time.Now()
		if _, err := tl.Append(context.Background(), event(i)); err != nil {
			b.Fatal(err)
		}
		waitFor(b, "the event to be acknowledged", func() bool { ev, _ := s.Shipped(); return ev == int64(i+1) })
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
}
