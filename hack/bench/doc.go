// Command bench is `make bench`: it measures the worker pool, the queue
// path, the operator and drains beside their anchors in one run and writes
// docs/benchmarks.md. The Go benchmarks (worker/pool, worker/loop) run
// -count times and are compared with benchstat; the operator and drain
// parts are tests of the e2e suite (test/e2e/bench_*_test.go) that write
// their rounds as JSON. Every figure is a ratio against its anchor, judged
// against the goal the benchmarks issue set; a missed goal of a Go
// benchmark is profiled and the top of the profile goes into the report.
//
//	go run ./hack/bench [-quick] [-skip operator,drain] [-count 6] [-out docs/benchmarks.md]
//
// -quick is a smoke run with small sizes (CI runs it as make bench-smoke).
package main
