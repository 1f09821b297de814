// Command baseline measures the demo upstream called directly and the same
// request through the data plane with both filters (ext_authz Check and the
// ext_proc stream), in one run, and prints the median and p99 latency, the
// rate and the ratio of the two: the baseline every later stage is measured
// against.
//
//	go run ./bench/baseline [-duration 5s] [-concurrency 8] [-warmup 1s] [-json]
//
// Each target gets a warm-up (discarded), then a closed-loop load. Any
// request that is not answered 200 is an error; with any error the exit
// status is 1.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"time"

	"github.com/custos-dev/custos/bench"
)

type figures struct {
	Requests   int     `json:"requests"`
	RPS        float64 `json:"req_per_s"`
	P50ns      int64   `json:"p50_ns"`
	P99ns      int64   `json:"p99_ns"`
	Errors     int     `json:"errors"`
	FirstError string  `json:"first_error,omitempty"`
	ElapsedNs  int64   `json:"elapsed_ns"`
}

type ratios struct {
	RPS float64 `json:"req_per_s"`
	P50 float64 `json:"p50"`
	P99 float64 `json:"p99"`
}

type report struct {
	GOMAXPROCS  int     `json:"gomaxprocs"`
	Concurrency int     `json:"concurrency"`
	DurationS   float64 `json:"duration_s"`
	WarmupS     float64 `json:"warmup_s"`
	Direct      figures `json:"direct"`
	DataPlane   figures `json:"dataplane"`
	// Ratio is data plane / direct for each figure.
	Ratio ratios `json:"ratio"`
}

func main() {
	os.Exit(run())
}

func run() int {
	duration := flag.Duration("duration", 5*time.Second, "load duration per target")
	concurrency := flag.Int("concurrency", 8, "closed-loop workers (1 for serial)")
	warmup := flag.Duration("warmup", time.Second, "warm-up per target, not measured")
	asJSON := flag.Bool("json", false, "print the figures as one JSON object instead of a table")
	flag.Parse()
	if flag.NArg() > 0 || *duration <= 0 || *concurrency < 1 || *warmup < 0 {
		fmt.Fprintln(os.Stderr, "baseline: want -duration > 0, -concurrency >= 1, -warmup >= 0 and no arguments")
		flag.Usage()
		return 2
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	s, err := bench.StartStack(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, "baseline:", err)
		return 1
	}
	client := bench.NewClient(*concurrency)
	defer func() {
		client.CloseIdleConnections()
		s.Close()
	}()

	measure := func(url string) bench.Result {
		if *warmup > 0 {
			bench.Load(ctx, client, url, *concurrency, *warmup)
		}
		return bench.Load(ctx, client, url, *concurrency, *duration)
	}
	direct := measure(s.DirectURL)
	through := measure(s.DataPlaneURL)

	r := report{
		GOMAXPROCS:  runtime.GOMAXPROCS(0),
		Concurrency: *concurrency,
		DurationS:   duration.Seconds(),
		WarmupS:     warmup.Seconds(),
		Direct:      figuresOf(direct),
		DataPlane:   figuresOf(through),
		Ratio: ratios{
			RPS: ratio(through.RPS(), direct.RPS()),
			P50: ratio(float64(through.P50()), float64(direct.P50())),
			P99: ratio(float64(through.P99()), float64(direct.P99())),
		},
	}
	if *asJSON {
		enc := json.NewEncoder(os.Stdout)
		if err := enc.Encode(r); err != nil {
			fmt.Fprintln(os.Stderr, "baseline:", err)
			return 1
		}
	} else {
		printTable(os.Stdout, r, *duration)
	}
	code := 0
	for _, t := range []struct {
		name string
		f    figures
	}{{"direct upstream", r.Direct}, {"through data plane", r.DataPlane}} {
		if t.f.Errors > 0 {
			fmt.Fprintf(os.Stderr, "baseline: %s: %d errors, the first: %s\n", t.name, t.f.Errors, t.f.FirstError)
			code = 1
		}
	}
	if ctx.Err() != nil {
		fmt.Fprintln(os.Stderr, "baseline: interrupted")
		code = 1
	}
	return code
}

func figuresOf(r bench.Result) figures {
	return figures{
		Requests:   r.Requests,
		RPS:        r.RPS(),
		P50ns:      r.P50().Nanoseconds(),
		P99ns:      r.P99().Nanoseconds(),
		Errors:     r.Errors,
		FirstError: r.FirstError,
		ElapsedNs:  r.Elapsed.Nanoseconds(),
	}
}

func ratio(b, a float64) float64 {
	if a == 0 {
		return 0
	}
	return b / a
}

const rowFormat = "%-22s %-10s %-9s %-9s %-9s %s\n"

func printTable(w io.Writer, r report, d time.Duration) {
	fmt.Fprintf(w, "custos baseline (GOMAXPROCS=%d, concurrency %d, %v per target)\n", r.GOMAXPROCS, r.Concurrency, d)
	fmt.Fprintf(w, rowFormat, "target", "requests", "req/s", "p50", "p99", "errors")
	row := func(name string, f figures) {
		fmt.Fprintf(w, rowFormat, name, fmt.Sprint(f.Requests), fmt.Sprintf("%.0f", f.RPS),
			short(time.Duration(f.P50ns)), short(time.Duration(f.P99ns)), fmt.Sprint(f.Errors))
	}
	row("direct upstream", r.Direct)
	row("through data plane", r.DataPlane)
	fmt.Fprintf(w, "%-33s %-9s %-9s %s\n", "ratio (data plane / direct)",
		fmt.Sprintf("%.2fx", r.Ratio.RPS), fmt.Sprintf("%.2fx", r.Ratio.P50), fmt.Sprintf("%.2fx", r.Ratio.P99))
}

// short rounds d to three significant digits: 1.234567ms prints 1.23ms.
func short(d time.Duration) time.Duration {
	unit := time.Duration(1)
	for v := d; v >= 1000; v /= 10 {
		unit *= 10
	}
	return d.Round(unit)
}
