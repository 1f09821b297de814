// Package bench is the benchmark harness for Custos: it starts the demo
// upstream, the control plane and the Go data plane on loopback (StartStack),
// drives a closed-loop load against a URL (Load) and summarises latencies
// (Percentile, Summarize).
//
// `go run ./bench/baseline` prints the baseline every later stage is measured
// against: the demo upstream called directly and the same request through
// the data plane with both filters (ext_authz Check and the ext_proc
// stream). The Go benchmarks in this package measure the same two targets
// with testing.B.
package bench
