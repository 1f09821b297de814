package bench_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/custos-dev/custos/bench"
	"github.com/custos-dev/custos/examples/demo"
)

// benchConcurrency is the number of RunParallel goroutines per GOMAXPROCS;
// with 2 cores it gives the 8 workers `go run ./bench/baseline` uses.
const benchConcurrency = 4

// shared is the stack the benchmarks share, started on first use and
// stopped by TestMain.
var shared struct {
	once  sync.Once
	stack *bench.Stack
	err   error
}

func sharedStack(b *testing.B) *bench.Stack {
	b.Helper()
	shared.once.Do(func() { shared.stack, shared.err = bench.StartStack(context.Background()) })
	if shared.err != nil {
		b.Fatal(shared.err)
	}
	return shared.stack
}

func TestMain(m *testing.M) {
	code := m.Run()
	if shared.stack != nil {
		shared.stack.Close()
	}
	os.Exit(code)
}

func BenchmarkDirectUpstream(b *testing.B) {
	benchmarkGET(b, sharedStack(b).DirectURL)
}

func BenchmarkThroughDataPlane(b *testing.B) {
	benchmarkGET(b, sharedStack(b).DataPlaneURL)
}

// benchmarkGET drives url from parallel goroutines and reports the median
// and p99 latency next to ns/op (which, in parallel, is wall time per
// request, the inverse of the rate).
func benchmarkGET(b *testing.B, url string) {
	b.SetParallelism(benchConcurrency)
	client := bench.NewClient(benchConcurrency * runtime.GOMAXPROCS(0))
	defer client.CloseIdleConnections()
	ctx := context.Background()
	// Fail fast, before the clock, if the target does not serve.
	if s := bench.Do(ctx, client, url); s.Err != nil {
		b.Fatal(s.Err)
	}
	var rec bench.Recorder
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		l := &bench.Local{}
		for pb.Next() {
			l.Add(bench.Do(ctx, client, url))
		}
		rec.Merge(l)
	})
	b.StopTimer()
	res := rec.Result(0)
	if res.Errors > 0 {
		b.Errorf("%d of %d requests failed, the first: %s", res.Errors, res.Errors+res.Requests, res.FirstError)
	}
	b.ReportMetric(float64(res.P50().Nanoseconds()), "p50-ns")
	b.ReportMetric(float64(res.P99().Nanoseconds()), "p99-ns")
}

func TestStackServes(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := bench.StartStack(ctx)
	if err != nil {
		t.Fatal(err)
	}
	client := bench.NewClient(1)
	t.Cleanup(func() {
		client.CloseIdleConnections()
		s.Close()
	})

	resp, body := get(t, client, s.DataPlaneURL)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("through the data plane: status %d (%d bytes)", resp.StatusCode, len(body))
	}
	var c demo.Customer
	if err := json.Unmarshal(body, &c); err != nil || c.ID != bench.CustomerID {
		t.Fatalf("through the data plane: not customer %d: %v (%d bytes)", bench.CustomerID, err, len(body))
	}
	if resp.Header.Get("x-custos-request-id") == "" {
		t.Fatal("through the data plane: no x-custos-request-id on the response")
	}

	resp, body = get(t, client, s.DirectURL)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("direct: status %d (%d bytes)", resp.StatusCode, len(body))
	}
	if err := json.Unmarshal(body, &c); err != nil || c.ID != bench.CustomerID {
		t.Fatalf("direct: not customer %d: %v (%d bytes)", bench.CustomerID, err, len(body))
	}

	// The load loop itself counts what it is given.
	res := bench.Load(ctx, client, s.DataPlaneURL, 2, 50*time.Millisecond)
	if res.Errors > 0 || res.Requests == 0 || len(res.Latencies) != res.Requests || !slices.IsSorted(res.Latencies) {
		t.Fatalf("load through the data plane: %d requests, %d errors (%s), %d latencies",
			res.Requests, res.Errors, res.FirstError, len(res.Latencies))
	}
	res = bench.Load(ctx, client, fmt.Sprintf("http://%s/customers/999", s.DataPlaneAddr), 1, 20*time.Millisecond)
	if res.Errors == 0 || res.Requests != 0 {
		t.Fatalf("a missing customer: %d requests, %d errors; want every one an error", res.Requests, res.Errors)
	}
}

func TestPercentileNearestRank(t *testing.T) {
	var v []time.Duration
	for i := 1; i <= 200; i++ {
		v = append(v, time.Duration(i))
	}
	for _, c := range []struct {
		vals []time.Duration
		p    float64
		want time.Duration
	}{
		{nil, 50, 0},
		{v[:1], 99, 1},
		{v[:4], 50, 2},
		{v[:5], 50, 3},
		{v[:100], 99, 99},
		{v, 99, 198},
		{v, 100, 200},
	} {
		if got := bench.Percentile(c.vals, c.p); got != c.want {
			t.Errorf("p%v of 1..%d: %d, want %d", c.p, len(c.vals), got, c.want)
		}
	}
}

func get(t *testing.T, client *http.Client, url string) (*http.Response, []byte) {
	t.Helper()
	resp, err := client.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, body
}
