package metrics

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
)

func TestExposition(t *testing.T) {
	r := NewRegistry()
	c := r.Counter("custos_test_total", "Requests by outcome.\nSecond line with a \\.", "connection", "outcome")
	c.With("warehouse", "allowed").Add(3)
	c.With("customers", "forbidden").Inc()
	c.With(`we"ird\`, "x\ny").Inc()
	h := r.Histogram("custos_test_seconds", "Latency.", []float64{0.001, 0.01}, "connection")
	h.With("customers").Observe(0.0005)
	h.With("customers").Observe(0.005)
	h.With("customers").Observe(3)
	r.GaugeFunc("custos_test_lag", "Lag.", func() []Sample { return []Sample{{Value: 42}} })
	r.CounterFunc("custos_test_cache_total", "Cache.", func() []Sample {
		return []Sample{{Labels: []string{"miss"}, Value: 2}, {Labels: []string{"hit"}, Value: 5}, {Labels: []string{"a", "b"}, Value: 1}}
	}, "result")
	var b bytes.Buffer
	if _, err := r.WriteTo(&b); err != nil {
		t.Fatal(err)
	}
	want := `# HELP custos_test_cache_total Cache.
# TYPE custos_test_cache_total counter
custos_test_cache_total{result="hit"} 5
custos_test_cache_total{result="miss"} 2
# HELP custos_test_lag Lag.
# TYPE custos_test_lag gauge
custos_test_lag 42
# HELP custos_test_seconds Latency.
# TYPE custos_test_seconds histogram
custos_test_seconds_bucket{connection="customers",le="0.001"} 1
custos_test_seconds_bucket{connection="customers",le="0.01"} 2
custos_test_seconds_bucket{connection="customers",le="+Inf"} 3
custos_test_seconds_sum{connection="customers"} 3.0055
custos_test_seconds_count{connection="customers"} 3
# HELP custos_test_total Requests by outcome.\nSecond line with a \\.
# TYPE custos_test_total counter
custos_test_total{connection="customers",outcome="forbidden"} 1
custos_test_total{connection="warehouse",outcome="allowed"} 3
custos_test_total{connection="we\"ird\\",outcome="x\ny"} 1
`
	if b.String() != want {
		t.Fatalf("got\n%s\nwant\n%s", b.String(), want)
	}

	srv := httptest.NewServer(r.Handler())
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("content-type") != ContentType {
		t.Fatalf("%d %q", resp.StatusCode, resp.Header.Get("content-type"))
	}
}

// sampleLine is one sample line of the text format.
var sampleLine = regexp.MustCompile(`^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\\n]|\\[\\"n])*",?)*\})? ([-+0-9.eE]+|[-+]Inf|NaN)$`)

// Counters and histograms take concurrent updates and scrapes, and every
// scrape is well formed.
func TestConcurrentUpdatesAndScrapes(t *testing.T) {
	r := NewRegistry()
	c := r.Counter("custos_c_total", "c", "k")
	h := r.Histogram("custos_h_seconds", "h", LatencyBuckets, "k")
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 2000 {
				k := string(rune('a' + (g+i)%5))
				c.With(k).Inc()
				h.With(k).Observe(float64(i) / 1e4)
			}
		}()
	}
	for range 20 {
		var b bytes.Buffer
		if _, err := r.WriteTo(&b); err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n") {
			if !strings.HasPrefix(line, "# ") && !sampleLine.MatchString(line) {
				t.Fatalf("malformed line %q", line)
			}
		}
	}
	wg.Wait()
	var total uint64
	for _, k := range []string{"a", "b", "c", "d", "e"} {
		total += c.With(k).Value()
	}
	if total != 8000 {
		t.Fatalf("counted %d, want 8000", total)
	}
}

func TestBadNamesPanic(t *testing.T) {
	for _, f := range []func(r *Registry){
		func(r *Registry) { r.Counter("bad-name", "") },
		func(r *Registry) { r.Counter("ok", "", "le") },
		func(r *Registry) { r.Counter("ok", "", "__x") },
		func(r *Registry) { r.Counter("ok", ""); r.Counter("ok", "") },
		func(r *Registry) { r.Counter("ok", "", "a").With("x", "y") },
		func(r *Registry) { r.Histogram("h", "", []float64{2, 1}) },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Fatal("no panic")
				}
			}()
			f(NewRegistry())
		}()
	}
}

// BenchmarkCounterWith is the hot path: a labelled counter found and
// incremented, beside a bare atomic add as the baseline.
func BenchmarkCounterWith(b *testing.B) {
	c := NewRegistry().Counter("custos_b_total", "b", "connection", "outcome")
	c.With("customers", "allowed")
	b.Run("baseline-atomic", func(b *testing.B) {
		var n Counter
		b.ReportAllocs()
		for b.Loop() {
			n.Inc()
		}
	})
	b.Run("with-two-labels", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			c.With("customers", "allowed").Inc()
		}
	})
}
