// Package metrics keeps Custos' counters, gauges and histograms and writes
// them in the Prometheus text exposition format (version 0.0.4), which
// every metrics pipeline reads. It is deliberately small: the families are
// declared once at start-up, label values come from the configuration or
// from fixed vocabularies (never from a request's own bytes), and the hot
// path is an atomic add.
package metrics

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
)

// ContentType is the exposition format's media type.
const ContentType = "text/plain; version=0.0.4; charset=utf-8"

var (
	nameRE  = regexp.MustCompile(`^[a-zA-Z_:][a-zA-Z0-9_:]*$`)
	labelRE = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)
)

// Registry holds metric families and writes them.
type Registry struct {
	mu       sync.Mutex
	families map[string]family
}

// NewRegistry returns an empty Registry.
func NewRegistry() *Registry { return &Registry{families: map[string]family{}} }

type family interface {
	write(w *bufio.Writer, name string)
}

// register adds a family; a bad or repeated name is a programming error.
func (r *Registry) register(name string, labels []string, f family) {
	if !nameRE.MatchString(name) {
		panic("metrics: bad metric name " + strconv.Quote(name))
	}
	for _, l := range labels {
		if !labelRE.MatchString(l) || strings.HasPrefix(l, "__") || l == "le" {
			panic("metrics: bad label name " + strconv.Quote(l))
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, dup := r.families[name]; dup {
		panic("metrics: " + name + " registered twice")
	}
	r.families[name] = f
}

// WriteTo writes every family, sorted by name, in the text format.
func (r *Registry) WriteTo(w io.Writer) (int64, error) {
	r.mu.Lock()
	names := make([]string, 0, len(r.families))
	for n := range r.families {
		names = append(names, n)
	}
	fams := make([]family, len(names))
	slices.Sort(names)
	for i, n := range names {
		fams[i] = r.families[n]
	}
	r.mu.Unlock()
	cw := &countWriter{w: w}
	bw := bufio.NewWriter(cw)
	for i, f := range fams {
		f.write(bw, names[i])
	}
	err := bw.Flush()
	return cw.n, err
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// Handler serves the registry (GET /metrics).
func (r *Registry) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("content-type", ContentType)
		_, _ = r.WriteTo(w)
	})
}

// header writes a family's HELP and TYPE lines.
func header(w *bufio.Writer, name, help, typ string) {
	fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s %s\n", name, escapeHelp(help), name, typ)
}

func escapeHelp(s string) string {
	return strings.NewReplacer(`\`, `\\`, "\n", `\n`).Replace(s)
}

func escapeValue(s string) string {
	return strings.NewReplacer(`\`, `\\`, "\n", `\n`, `"`, `\"`).Replace(s)
}

// labelText is {k="v",...} for names and values ("" without labels).
func labelText(names, values []string, extra ...string) string {
	if len(names) == 0 && len(extra) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteByte('{')
	for i, n := range names {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(n)
		b.WriteString(`="`)
		b.WriteString(escapeValue(values[i]))
		b.WriteByte('"')
	}
	for i := 0; i+1 < len(extra); i += 2 {
		if b.Len() > 1 {
			b.WriteByte(',')
		}
		b.WriteString(extra[i])
		b.WriteString(`="`)
		b.WriteString(escapeValue(extra[i+1]))
		b.WriteByte('"')
	}
	b.WriteByte('}')
	return b.String()
}

func formatFloat(f float64) string {
	switch {
	case math.IsInf(f, 1):
		return "+Inf"
	case math.IsInf(f, -1):
		return "-Inf"
	case math.IsNaN(f):
		return "NaN"
	}
	return strconv.FormatFloat(f, 'g', -1, 64)
}

// vec is the label sets of one family: by their joined values, and each
// set with its values for writing.
type vec[T any] struct {
	labels []string
	mu     sync.RWMutex
	by     map[string]*T
	sets   []labelSet[T]
	newT   func() *T
}

type labelSet[T any] struct {
	values []string
	t      *T
}

func (v *vec[T]) with(values []string) *T {
	if len(values) != len(v.labels) {
		panic(fmt.Sprintf("metrics: %d label values for %d labels", len(values), len(v.labels)))
	}
	// the key in a stack buffer: a lookup of a label set seen before
	// allocates nothing
	var buf [128]byte
	b := buf[:0]
	for i, s := range values {
		if i > 0 {
			b = append(b, 0xff)
		}
		b = append(b, s...)
	}
	v.mu.RLock()
	t, ok := v.by[string(b)]
	v.mu.RUnlock()
	if ok {
		return t
	}
	key := string(b)
	v.mu.Lock()
	defer v.mu.Unlock()
	if t, ok := v.by[key]; ok {
		return t
	}
	t = v.newT()
	v.by[key] = t
	v.sets = append(v.sets, labelSet[T]{values: slices.Clone(values), t: t})
	return t
}

// each calls f for every label set, sorted by values.
func (v *vec[T]) each(f func(values []string, t *T)) {
	v.mu.RLock()
	sets := slices.Clone(v.sets)
	v.mu.RUnlock()
	slices.SortFunc(sets, func(a, b labelSet[T]) int { return slices.Compare(a.values, b.values) })
	for _, s := range sets {
		f(s.values, s.t)
	}
}

// Counter is a count that only goes up.
type Counter struct{ n atomic.Uint64 }

// Inc adds one.
func (c *Counter) Inc() { c.n.Add(1) }

// Add adds n.
func (c *Counter) Add(n uint64) { c.n.Add(n) }

// Value is the count.
func (c *Counter) Value() uint64 { return c.n.Load() }

// CounterVec is a counter family with labels.
type CounterVec struct {
	help string
	v    vec[Counter]
}

// Counter registers a counter family named name with the given labels.
func (r *Registry) Counter(name, help string, labels ...string) *CounterVec {
	c := &CounterVec{help: help, v: vec[Counter]{labels: labels, by: map[string]*Counter{}, newT: func() *Counter { return new(Counter) }}}
	r.register(name, labels, c)
	return c
}

// With returns the counter for the label values, in the family's label
// order.
func (c *CounterVec) With(values ...string) *Counter { return c.v.with(values) }

func (c *CounterVec) write(w *bufio.Writer, name string) {
	header(w, name, c.help, "counter")
	c.v.each(func(values []string, t *Counter) {
		fmt.Fprintf(w, "%s%s %d\n", name, labelText(c.v.labels, values), t.Value())
	})
}

// Sample is one value of a function-backed family.
type Sample struct {
	// Labels are the values of the family's labels, in its order.
	Labels []string
	Value  float64
}

// funcFamily is a family whose samples a function reads at each scrape.
type funcFamily struct {
	help, typ string
	labels    []string
	f         func() []Sample
}

// GaugeFunc registers a gauge family whose samples f returns at each
// scrape (f must be quick and safe to call concurrently).
func (r *Registry) GaugeFunc(name, help string, f func() []Sample, labels ...string) {
	r.register(name, labels, &funcFamily{help: help, typ: "gauge", labels: labels, f: f})
}

// CounterFunc is GaugeFunc for a count kept elsewhere.
func (r *Registry) CounterFunc(name, help string, f func() []Sample, labels ...string) {
	r.register(name, labels, &funcFamily{help: help, typ: "counter", labels: labels, f: f})
}

func (g *funcFamily) write(w *bufio.Writer, name string) {
	header(w, name, g.help, g.typ)
	samples := g.f()
	slices.SortFunc(samples, func(a, b Sample) int { return slices.Compare(a.Labels, b.Labels) })
	for _, s := range samples {
		if len(s.Labels) != len(g.labels) {
			continue
		}
		fmt.Fprintf(w, "%s%s %s\n", name, labelText(g.labels, s.Labels), formatFloat(s.Value))
	}
}

// Histogram counts observations in cumulative buckets.
type Histogram struct {
	bounds []float64
	counts []atomic.Uint64 // per bucket, not cumulative; the last is +Inf
	sum    atomic.Uint64   // float64 bits
	count  atomic.Uint64
}

// Observe records one value.
func (h *Histogram) Observe(v float64) {
	i, _ := slices.BinarySearch(h.bounds, v)
	h.counts[i].Add(1)
	for {
		old := h.sum.Load()
		if h.sum.CompareAndSwap(old, math.Float64bits(math.Float64frombits(old)+v)) {
			break
		}
	}
	h.count.Add(1)
}

// HistogramVec is a histogram family with labels.
type HistogramVec struct {
	help string
	v    vec[Histogram]
}

// Histogram registers a histogram family with the given upper bounds
// (sorted, ascending; +Inf is added).
func (r *Registry) Histogram(name, help string, bounds []float64, labels ...string) *HistogramVec {
	if !slices.IsSorted(bounds) || len(bounds) == 0 {
		panic("metrics: histogram bounds must be sorted and not empty")
	}
	b := slices.Clone(bounds)
	h := &HistogramVec{help: help, v: vec[Histogram]{labels: labels, by: map[string]*Histogram{},
		newT: func() *Histogram { return &Histogram{bounds: b, counts: make([]atomic.Uint64, len(b)+1)} }}}
	r.register(name, labels, h)
	return h
}

// With returns the histogram for the label values.
func (h *HistogramVec) With(values ...string) *Histogram { return h.v.with(values) }

func (h *HistogramVec) write(w *bufio.Writer, name string) {
	header(w, name, h.help, "histogram")
	h.v.each(func(values []string, t *Histogram) {
		// count first: a scrape racing Observe may see the buckets a
		// little ahead of the count, never behind it
		count := t.count.Load()
		var cum uint64
		for i, bound := range t.bounds {
			cum += t.counts[i].Load()
			fmt.Fprintf(w, "%s_bucket%s %d\n", name, labelText(h.v.labels, values, "le", formatFloat(bound)), cum)
		}
		cum += t.counts[len(t.bounds)].Load()
		fmt.Fprintf(w, "%s_bucket%s %d\n", name, labelText(h.v.labels, values, "le", "+Inf"), max(cum, count))
		fmt.Fprintf(w, "%s_sum%s %s\n", name, labelText(h.v.labels, values), formatFloat(math.Float64frombits(t.sum.Load())))
		fmt.Fprintf(w, "%s_count%s %d\n", name, labelText(h.v.labels, values), max(cum, count))
	})
}

// LatencyBuckets are upper bounds in seconds from 50 µs to 10 s.
var LatencyBuckets = []float64{.00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 10}
