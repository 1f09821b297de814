// Package latency measures benchmarks per operation: each operation's time,
// reported as p50-µs and p99-µs beside Go's mean ns/op. It imports nothing
// of Custos, so any package's benchmarks can use it.
package latency

import (
	"slices"
	"testing"
	"time"
)

// kept bounds how many operations Measure times: enough for a stable p99,
// without growing with b.N.
const kept = 1 << 16

// Measure runs op once per b.Loop iteration, reporting allocations and the
// p50 and p99 of the first operations' times; an error fails the
// benchmark.
func Measure(b *testing.B, op func() error) {
	lat := make([]time.Duration, 0, kept)
	b.ReportAllocs()
	for b.Loop() {
		start := time.Now()
		if err := op(); err != nil {
			b.Fatal(err)
		}
		if len(lat) < cap(lat) {
			lat = append(lat, time.Since(start))
		}
	}
	Report(b, lat)
}

// Report sorts lat and reports its p50 and p99 in microseconds.
func Report(b *testing.B, lat []time.Duration) {
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds())/1e3, "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds())/1e3, "p99-µs")
}
