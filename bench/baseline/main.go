// Command baseline measures, in one run with one client and one load
// generator, the four ways of reaching the demo upstream: the upstream
// called directly; real Envoy with a plain route and no filters; real
// Envoy with Custos' ext_authz and ext_proc; and the Go data plane with
// both. It prints the median and p99 latency and the rate of each at each
// concurrency (1 and 8 callers by default), then the headline: the latency
// Custos adds to a bare Envoy hop (p50 and p99, Custos on Envoy minus bare
// Envoy) and the ratio of their rates; then the same for the Go data plane,
// and the bare Envoy hop against the direct call.
//
//	go run ./bench/baseline [-duration 3s] [-warmup 1s] [-concurrency 1,8] [-json]
//
// Each target gets a warm-up (discarded), then a closed-loop load. Every
// target runs on this machine beside the load generator, Custos' gRPC
// servers in the same process as it, so the figures compare the targets
// with one another rather than stand alone. Without Envoy the Envoy targets
// are reported as skipped with how to get it, and the others are measured.
// Any request that is not answered 200 is an error; with any error the exit
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
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/custos-dev/custos/bench"
)

// row is one target measured at one concurrency; its figures are absent
// when it was skipped.
type row struct {
	Target      string `json:"target"`
	Concurrency int    `json:"concurrency"`
	Skipped     string `json:"skipped,omitempty"`
	*figures
}

type figures struct {
	Requests   int     `json:"requests"`
	RPS        float64 `json:"req_per_s"`
	P50ns      int64   `json:"p50_ns"`
	P99ns      int64   `json:"p99_ns"`
	Errors     int     `json:"errors"`
	FirstError string  `json:"first_error,omitempty"`
	ElapsedNs  int64   `json:"elapsed_ns"`
}

// comparison is target against a reference at one concurrency; its delta
// is absent when either was not measured.
type comparison struct {
	Target      string `json:"target"`
	Against     string `json:"against"`
	Concurrency int    `json:"concurrency"`
	Skipped     string `json:"skipped,omitempty"`
	*delta
}

// delta is target minus reference for the latencies, target / reference
// for the rate.
type delta struct {
	P50DeltaNs int64   `json:"p50_delta_ns"`
	P99DeltaNs int64   `json:"p99_delta_ns"`
	RPSRatio   float64 `json:"req_per_s_ratio"`
}

type report struct {
	NumCPU      int          `json:"num_cpu"`
	GOMAXPROCS  int          `json:"gomaxprocs"`
	DurationS   float64      `json:"duration_s"`
	WarmupS     float64      `json:"warmup_s"`
	Envoy       string       `json:"envoy,omitempty"`
	EnvoyPath   string       `json:"envoy_path,omitempty"`
	Results     []row        `json:"results"`
	Comparisons []comparison `json:"comparisons"`
}

// comparisons are what the report compares, the headline first, each with
// the title the table prints it under.
var comparisons = []struct{ target, against, title string }{
	{bench.TargetCustosEnvoy, bench.TargetEnvoy, "latency Custos adds to a bare Envoy hop"},
	{bench.TargetCustosGo, bench.TargetEnvoy, "the Go data plane against a bare Envoy hop"},
	{bench.TargetEnvoy, bench.TargetDirect, "the bare Envoy hop against the direct call"},
}

func main() {
	os.Exit(run())
}

func run() int {
	duration := flag.Duration("duration", 3*time.Second, "measured load per target and concurrency")
	warmup := flag.Duration("warmup", time.Second, "warm-up per target and concurrency, not measured")
	concList := flag.String("concurrency", "1,8", "comma-separated numbers of closed-loop callers")
	asJSON := flag.Bool("json", false, "print the figures as one JSON object instead of tables")
	flag.Parse()
	concs, err := parseConcurrency(*concList)
	if flag.NArg() > 0 || *duration <= 0 || *warmup < 0 || err != nil {
		fmt.Fprintln(os.Stderr, "baseline: want -duration > 0, -warmup >= 0, -concurrency a list of numbers >= 1, and no arguments")
		flag.Usage()
		return 2
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	targets, err := bench.StartTargets(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, "baseline:", err)
		return 1
	}
	client := bench.NewClient(slices.Max(concs))
	defer func() {
		client.CloseIdleConnections()
		targets.Close()
	}()

	r := report{
		NumCPU:     runtime.NumCPU(),
		GOMAXPROCS: runtime.GOMAXPROCS(0),
		DurationS:  duration.Seconds(),
		WarmupS:    warmup.Seconds(),
		Envoy:      targets.EnvoyVersion,
		EnvoyPath:  targets.EnvoyPath,
	}
	for _, c := range concs {
		for _, tg := range targets.List {
			if tg.Skipped != "" {
				r.Results = append(r.Results, row{Target: tg.Name, Concurrency: c, Skipped: tg.Skipped})
				continue
			}
			if *warmup > 0 {
				bench.Load(ctx, client, tg.URL, c, *warmup)
			}
			r.Results = append(r.Results, rowOf(tg.Name, c, bench.Load(ctx, client, tg.URL, c, *duration)))
		}
	}
	for _, cmp := range comparisons {
		for _, c := range concs {
			r.Comparisons = append(r.Comparisons, compare(r.Results, cmp.target, cmp.against, c))
		}
	}

	if *asJSON {
		if err := json.NewEncoder(os.Stdout).Encode(r); err != nil {
			fmt.Fprintln(os.Stderr, "baseline:", err)
			return 1
		}
	} else {
		printReport(os.Stdout, r)
	}
	code := 0
	for _, x := range r.Results {
		if x.figures != nil && x.Errors > 0 {
			fmt.Fprintf(os.Stderr, "baseline: %s at %d callers: %d errors, the first: %s\n", x.Target, x.Concurrency, x.Errors, x.FirstError)
			code = 1
		}
	}
	if ctx.Err() != nil {
		fmt.Fprintln(os.Stderr, "baseline: interrupted")
		code = 1
	}
	return code
}

func parseConcurrency(s string) ([]int, error) {
	var out []int
	for f := range strings.SplitSeq(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("concurrency %q: want numbers >= 1", f)
		}
		out = append(out, n)
	}
	return out, nil
}

func rowOf(target string, concurrency int, r bench.Result) row {
	return row{Target: target, Concurrency: concurrency, figures: &figures{
		Requests:   r.Requests,
		RPS:        r.RPS(),
		P50ns:      r.P50().Nanoseconds(),
		P99ns:      r.P99().Nanoseconds(),
		Errors:     r.Errors,
		FirstError: r.FirstError,
		ElapsedNs:  r.Elapsed.Nanoseconds(),
	}}
}

// compare compares target with against at concurrency; it is skipped when
// either was skipped or served nothing.
func compare(rows []row, target, against string, concurrency int) comparison {
	cmp := comparison{Target: target, Against: against, Concurrency: concurrency}
	find := func(name string) row {
		i := slices.IndexFunc(rows, func(x row) bool { return x.Target == name && x.Concurrency == concurrency })
		return rows[i]
	}
	t, a := find(target), find(against)
	switch {
	case t.Skipped != "":
		cmp.Skipped = target + " skipped"
	case a.Skipped != "":
		cmp.Skipped = against + " skipped"
	case t.Requests == 0 || a.Requests == 0:
		cmp.Skipped = "no successful requests"
	default:
		cmp.delta = &delta{
			P50DeltaNs: t.P50ns - a.P50ns,
			P99DeltaNs: t.P99ns - a.P99ns,
			RPSRatio:   t.RPS / a.RPS,
		}
	}
	return cmp
}

const (
	rowFormat = "%-13s %7s %9s %9s %8s %6s\n"
	cmpFormat = "%7s %9s %9s %8s\n"
)

func printReport(w io.Writer, r report) {
	envoy := "envoy skipped"
	if r.Envoy != "" {
		envoy = "envoy " + r.Envoy
	}
	fmt.Fprintf(w, "custos bench: %d CPUs, GOMAXPROCS %d, %v warm-up + %v per target and concurrency, %s\n\n",
		r.NumCPU, r.GOMAXPROCS, seconds(r.WarmupS), seconds(r.DurationS), envoy)
	fmt.Fprintf(w, rowFormat, "target", "callers", "p50", "p99", "req/s", "errors")
	var skipped []string
	for _, x := range r.Results {
		if x.figures == nil {
			fmt.Fprintf(w, rowFormat, x.Target, strconv.Itoa(x.Concurrency), "-", "-", "-", "-")
			if !slices.Contains(skipped, x.Skipped) {
				skipped = append(skipped, x.Skipped)
			}
			continue
		}
		fmt.Fprintf(w, rowFormat, x.Target, strconv.Itoa(x.Concurrency),
			short(time.Duration(x.P50ns)), short(time.Duration(x.P99ns)),
			fmt.Sprintf("%.0f", x.RPS), strconv.Itoa(x.Errors))
	}
	for _, s := range skipped {
		fmt.Fprintln(w, "skipped:", s)
	}
	for _, c := range comparisons {
		fmt.Fprintf(w, "\n%s (%s − %s):\n", c.title, c.target, c.against)
		var rows []comparison
		for _, x := range r.Comparisons {
			if x.Target == c.target && x.Against == c.against {
				rows = append(rows, x)
			}
		}
		if !slices.ContainsFunc(rows, func(x comparison) bool { return x.delta != nil }) {
			fmt.Fprintf(w, "skipped: %s\n", rows[0].Skipped)
			continue
		}
		fmt.Fprintf(w, cmpFormat, "callers", "Δp50", "Δp99", "req/s")
		for _, x := range rows {
			if x.delta == nil {
				fmt.Fprintf(w, "%7d skipped: %s\n", x.Concurrency, x.Skipped)
				continue
			}
			fmt.Fprintf(w, cmpFormat, strconv.Itoa(x.Concurrency),
				signed(time.Duration(x.P50DeltaNs)), signed(time.Duration(x.P99DeltaNs)),
				fmt.Sprintf("%.2fx", x.RPSRatio))
		}
	}
}

func seconds(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

// signed is short(d) with its sign, "+" included.
func signed(d time.Duration) string {
	if d < 0 {
		return "-" + short(-d).String()
	}
	return "+" + short(d).String()
}

// short rounds d to three significant digits: 1.234567ms prints 1.23ms.
func short(d time.Duration) time.Duration {
	unit := time.Duration(1)
	for v := d; v >= 1000; v /= 10 {
		unit *= 10
	}
	return d.Round(unit)
}
