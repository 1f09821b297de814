package audit_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/custos-dev/custos/audit"

	"github.com/custos-dev/custos/bench/latency"
)

// BenchmarkFsyncBaseline is the disk's own cost of durability: write a small
// record and fsync it, in a loop. The append benchmarks print beside it what
// group commit makes of it.
func BenchmarkFsyncBaseline(b *testing.B) {
	f, err := os.OpenFile(filepath.Join(b.TempDir(), "fsync"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	rec := make([]byte, 512)
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for range b.N {
		t0 := time.Now()
		if _, err := f.Write(rec); err != nil {
			b.Fatal(err)
		}
		if err := f.Sync(); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(t0))
	}
	b.StopTimer()
	latency.Report(b, lat)
}

// BenchmarkAppend appends decision events from 1, 16 and 256 goroutines; each
// Append returns once its event is durable (fsync, group commit).
func BenchmarkAppend(b *testing.B) {
	for _, writers := range []int{1, 16, 256} {
		b.Run(fmt.Sprintf("writers=%d", writers), func(b *testing.B) {
			l := openLog(b, audit.Options{Dir: b.TempDir(), Key: newKey(b, "bench")})
			defer l.Close()
			e := event(7)
			lats := make([][]time.Duration, writers)
			var wg sync.WaitGroup
			b.ResetTimer()
			start := time.Now()
			for w := range writers {
				n := b.N / writers
				if w < b.N%writers {
					n++
				}
				wg.Add(1)
				go func() {
					defer wg.Done()
					lat := make([]time.Duration, 0, n)
					for range n {
						t0 := time.Now()
						if _, err := l.Append(context.Background(), e); err != nil {
							b.Error(err)
							return
						}
						lat = append(lat, time.Since(t0))
					}
					lats[w] = lat
				}()
			}
			wg.Wait()
			elapsed := time.Since(start)
			b.StopTimer()
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "events/s")
			latency.Report(b, slices.Concat(lats...))
		})
	}
}
