package bench_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/custos-dev/custos/audit"
	"github.com/custos-dev/custos/bench"
	"github.com/custos-dev/custos/stack"
)

// upstreamWork is how long the benchmark's upstream takes to answer: the
// time before_response overlaps the decision's fsync with.
const upstreamWork = 2 * time.Millisecond

// BenchmarkDurability is one agent's request through the Go data plane
// with the audit log off, with durability before_upstream and with
// before_response, against an upstream that works for 2 ms, beside the
// disk's own fsync of a small record in the same run: the latency each mode
// adds, and what the disk costs.
func BenchmarkDurability(b *testing.B) {
	b.Run("fsync-baseline", func(b *testing.B) {
		f, err := os.Create(filepath.Join(b.TempDir(), "fsync"))
		if err != nil {
			b.Fatal(err)
		}
		defer f.Close()
		rec := make([]byte, 512)
		lat := make([]time.Duration, 0, b.N)
		for b.Loop() {
			start := time.Now()
			if _, err := f.Write(rec); err != nil {
				b.Fatal(err)
			}
			if err := f.Sync(); err != nil {
				b.Fatal(err)
			}
			lat = append(lat, time.Since(start))
		}
		report(b, lat)
	})
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(upstreamWork)
		w.Header().Set("content-type", "application/json")
		fmt.Fprint(w, `{"id":7}`)
	}))
	defer up.Close()
	for _, mode := range []string{"no-audit-log", "before_upstream", "before_response"} {
		b.Run(mode, func(b *testing.B) {
			dir := b.TempDir()
			extra := fmt.Sprintf("audit:\n  dir: %s\n", filepath.Join(dir, "audit"))
			if mode != "no-audit-log" {
				key := filepath.Join(dir, "keys", "audit.key")
				if _, err := audit.LoadOrCreateSigningKey(key, "custos-bench", true); err != nil {
					b.Fatal(err)
				}
				extra = fmt.Sprintf("audit:\n  dir: %s\n  signing_key_file: %s\n  durability: %s\n", filepath.Join(dir, "audit"), key, mode)
			}
			cfg, err := stack.CustomersConfig(up.URL, extra)
			if err != nil {
				b.Fatal(err)
			}
			st, err := stack.Start(context.Background(), stack.Options{Config: cfg, NodeID: "bench-durability"})
			if err != nil {
				b.Fatal(err)
			}
			defer st.Close()
			client := bench.NewClient(1)
			defer client.CloseIdleConnections()
			url := "http://" + st.Addr + "/customers/7"
			ctx := context.Background()
			for range 20 { // warm the connections
				bench.Do(ctx, client, url)
			}
			lat := make([]time.Duration, 0, b.N)
			for b.Loop() {
				s := bench.Do(ctx, client, url)
				if s.Err != nil {
					b.Fatal(s.Err)
				}
				lat = append(lat, s.Latency)
			}
			report(b, lat)
		})
	}
}

func report(b *testing.B, lat []time.Duration) {
	slices.Sort(lat)
	b.ReportMetric(float64(bench.Percentile(lat, 50).Microseconds()), "p50-µs")
	b.ReportMetric(float64(bench.Percentile(lat, 99).Microseconds()), "p99-µs")
}
