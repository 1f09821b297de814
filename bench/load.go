package bench

import (
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"sync"
	"time"
)

// Result is one closed-loop run against one URL.
type Result struct {
	// Requests counts the requests answered 200 with their body fully read;
	// only those are in the latencies and the rate.
	Requests int
	// Errors counts the other outcomes: another status, a transport error or
	// a body that failed to read.
	Errors int
	// FirstError describes the first error ("" with none).
	FirstError string
	// Elapsed is the wall time from the first request start until every
	// worker finished.
	Elapsed time.Duration
	// Latencies are the successful requests' latencies, from request start
	// to body fully read, sorted ascending.
	Latencies []time.Duration
}

// RPS is completed requests per second of elapsed time.
func (r Result) RPS() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Requests) / r.Elapsed.Seconds()
}

// P50 is the median latency (nearest rank).
func (r Result) P50() time.Duration { return Percentile(r.Latencies, 50) }

// P99 is the 99th-percentile latency (nearest rank).
func (r Result) P99() time.Duration { return Percentile(r.Latencies, 99) }

// Percentile is the nearest-rank p-th percentile (0 < p <= 100) of sorted
// latencies: the smallest value with at least p% of values at or below it.
// It is 0 for no values.
func Percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	rank = min(max(rank, 1), len(sorted))
	return sorted[rank-1]
}

// Sample is the outcome of one request.
type Sample struct {
	Latency time.Duration
	Err     error
}

// Do issues one GET, reads and discards the body fully and returns its
// latency; a status other than 200 is an error.
func Do(ctx context.Context, client *http.Client, url string) Sample {
	start := time.Now()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return Sample{Err: err}
	}
	resp, err := client.Do(req)
	if err != nil {
		return Sample{Err: err}
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	lat := time.Since(start)
	if err != nil {
		return Sample{Latency: lat, Err: fmt.Errorf("reading the body: %w", err)}
	}
	if resp.StatusCode != http.StatusOK {
		return Sample{Latency: lat, Err: fmt.Errorf("status %d", resp.StatusCode)}
	}
	return Sample{Latency: lat}
}

// Recorder gathers samples from concurrent workers; each worker records into
// its own Local and merges it once.
type Recorder struct {
	mu  sync.Mutex
	res Result
}

// Local is one worker's share of a Recorder.
type Local struct {
	lat        []time.Duration
	errors     int
	firstError string
}

// Add records one sample.
func (l *Local) Add(s Sample) {
	if s.Err != nil {
		if l.errors == 0 {
			l.firstError = s.Err.Error()
		}
		l.errors++
		return
	}
	l.lat = append(l.lat, s.Latency)
}

// Merge adds a worker's samples to the recorder.
func (r *Recorder) Merge(l *Local) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.res.Latencies = append(r.res.Latencies, l.lat...)
	r.res.Requests += len(l.lat)
	if l.errors > 0 && r.res.Errors == 0 {
		r.res.FirstError = l.firstError
	}
	r.res.Errors += l.errors
}

// Result sorts the latencies and returns the merged result with elapsed.
func (r *Recorder) Result(elapsed time.Duration) Result {
	r.mu.Lock()
	defer r.mu.Unlock()
	slices.Sort(r.res.Latencies)
	res := r.res
	res.Elapsed = elapsed
	return res
}

// Load runs a closed loop against url: concurrency workers, each issuing
// its next request as soon as the previous one completes, until d has
// passed (no request starts after that) or ctx ends.
func Load(ctx context.Context, client *http.Client, url string, concurrency int, d time.Duration) Result {
	concurrency = max(concurrency, 1)
	var rec Recorder
	var wg sync.WaitGroup
	start := time.Now()
	deadline := start.Add(d)
	for range concurrency {
		wg.Go(func() {
			l := &Local{lat: make([]time.Duration, 0, 4096)}
			for ctx.Err() == nil && time.Now().Before(deadline) {
				l.Add(Do(ctx, client, url))
			}
			rec.Merge(l)
		})
	}
	wg.Wait()
	return rec.Result(time.Since(start))
}
