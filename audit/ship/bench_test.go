package ship_test

import (
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
