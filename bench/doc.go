// Package bench is the benchmark harness for Custos: it starts the demo
// upstream and, in front of it, the targets a request can take to reach it
// (StartTargets: real Envoy with a plain route, StartBareEnvoy; Custos on
// real Envoy and on the Go data plane, StartStackFor), drives a closed-loop
// load against a URL (Load) and summarises latencies (Percentile).
//
// `go run ./bench/baseline` (`make bench`) measures every target in one run
// with one client at 1 and 8 callers and prints the headline: the latency
// Custos' ext_authz and ext_proc add to a bare Envoy hop, and the rate they
// leave. TestEveryTargetServes checks through the same harness that every
// target answers. The Go benchmarks in this package measure the direct call
// and the Go data plane with testing.B.
package bench
