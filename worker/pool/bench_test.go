package pool_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/alitto/pond/v2"
	"github.com/panjf2000/ants/v2"

	"github.com/tenire/loop-operator/worker/breaker"
	"github.com/tenire/loop-operator/worker/pool"
)

// The benchmarks below compare this pool with its anchors in one run:
// sub-benchmarks are named impl=<name> so that benchstat -col /impl puts
// them side by side (make bench does, see hack/bench).

// benchWorkers is the goroutine count of every pool in the dispatch
// benchmarks.
const benchWorkers = 64

// benchBacklog is how many tasks every bounded queue in the dispatch
// benchmarks holds beyond its workers.
const benchBacklog = 1 << 14

// priorities are three weighted classes, as a loop with priorities has.
var priorities = []pool.Class{{Name: "high", Weight: 4}, {Name: "default", Weight: 2}, {Name: "low", Weight: 1}}

// BenchmarkDispatch submits b.N no-op tasks and waits for all of them: on
// this pool with priority scheduling on (three weighted classes, tasks
// spread over them) and, as anchors, on ants, pond, a goroutine per task
// with a WaitGroup, and a buffered channel read by a fixed set of
// goroutines.
func BenchmarkDispatch(b *testing.B) {
	b.Run("impl=pool", func(b *testing.B) {
		var wg sync.WaitGroup
		p := newBenchPool(b, pool.Options{Classes: priorities}, func(context.Context, struct{}) error { wg.Done(); return nil })
		ctx := b.Context()
		b.ReportAllocs()
		b.ResetTimer()
		for i := range b.N {
			wg.Add(1)
			if err := p.Submit(ctx, "noop", i%len(priorities), struct{}{}); err != nil {
				b.Fatal(err)
			}
		}
		wg.Wait()
	})
	b.Run("impl=ants", func(b *testing.B) {
		var wg sync.WaitGroup
		p, err := ants.NewPool(benchWorkers, ants.WithPreAlloc(true))
		if err != nil {
			b.Fatal(err)
		}
		defer func() { _ = p.ReleaseTimeout(10 * time.Second) }()
		task := func() { wg.Done() }
		b.ReportAllocs()
		b.ResetTimer()
		for range b.N {
			wg.Add(1)
			if err := p.Submit(task); err != nil {
				b.Fatal(err)
			}
		}
		wg.Wait()
	})
	b.Run("impl=pond", func(b *testing.B) {
		var wg sync.WaitGroup
		p := pond.NewPool(benchWorkers)
		defer p.StopAndWait()
		task := func() { wg.Done() }
		b.ReportAllocs()
		b.ResetTimer()
		for range b.N {
			wg.Add(1)
			if err := p.Go(task); err != nil {
				b.Fatal(err)
			}
		}
		wg.Wait()
	})
	b.Run("impl=goroutines", func(b *testing.B) {
		var wg sync.WaitGroup
		b.ReportAllocs()
		b.ResetTimer()
		for range b.N {
			wg.Go(func() {})
		}
		wg.Wait()
	})
	b.Run("impl=channel", func(b *testing.B) {
		var wg sync.WaitGroup
		tasks := make(chan func(), benchBacklog)
		var workers sync.WaitGroup
		for range benchWorkers {
			workers.Go(func() {
				for f := range tasks {
					f()
				}
			})
		}
		defer func() { close(tasks); workers.Wait() }()
		task := func() { wg.Done() }
		b.ReportAllocs()
		b.ResetTimer()
		for range b.N {
			wg.Add(1)
			tasks <- task
		}
		wg.Wait()
	})
}

// BenchmarkFeatures measures what the loop's scheduling features cost a
// dispatch: impl=features has three weighted priority classes, a limit on
// each of four kinds and a circuit breaker consulted before and told after
// every task, as the loop does; impl=fifo is the pool's plain path (one
// class, no kind limits, no breaker). Everything else is the same: the
// task (its kind, a string), the four kinds in turn, the handler.
func BenchmarkFeatures(b *testing.B) {
	kinds := []string{"resize", "encode", "notify", "index"}
	run := func(opts pool.Options, classes int, breakers *breaker.Set) func(b *testing.B) {
		return func(b *testing.B) {
			var wg sync.WaitGroup
			p := newBenchPool(b, opts, func(_ context.Context, kind string) error {
				if breakers != nil {
					breakers.Success(kind)
				}
				wg.Done()
				return nil
			})
			ctx := b.Context()
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				kind := kinds[i%len(kinds)]
				if breakers != nil {
					if ok, _ := breakers.Allow(kind); !ok {
						b.Fatalf("the breaker of %s opened on successes", kind)
					}
				}
				wg.Add(1)
				if err := p.Submit(ctx, kind, i%classes, kind); err != nil {
					b.Fatal(err)
				}
			}
			wg.Wait()
		}
	}
	limits := make(map[string]int, len(kinds))
	for _, k := range kinds {
		limits[k] = benchWorkers / 2 // binding now and then: the four kinds share 64 workers
	}
	b.Run("impl=fifo", run(pool.Options{}, 1, nil))
	b.Run("impl=features", run(pool.Options{Classes: priorities, KindLimits: limits}, len(priorities), breaker.New(breaker.Options{FailureThreshold: 5})))
}

// Footprint: footprintTasks tasks that sleep footprintSleep each, on
// footprintWorkers workers (the pools) or one goroutine per task. One op is
// the whole batch, so run it with -benchtime 1x.
const (
	footprintTasks   = 1_000_000
	footprintWorkers = 10_000
	footprintSleep   = 10 * time.Millisecond
)

// BenchmarkFootprint runs footprintTasks sleeping tasks per op and reports
// the wall time (ns/op) and the memory allocated (B/op) of this pool,
// ants and bare goroutines.
func BenchmarkFootprint(b *testing.B) {
	sleep := func() { time.Sleep(footprintSleep) } //nolint:forbidigo // the task under measurement sleeps; nothing waits on a condition
	b.Run("impl=pool", func(b *testing.B) {
		var wg sync.WaitGroup
		p, err := pool.New(pool.Options{MaxWorkers: footprintWorkers, Backlog: footprintWorkers}, func(context.Context, struct{}) error { sleep(); wg.Done(); return nil }, nil)
		if err != nil {
			b.Fatal(err)
		}
		defer p.Close()
		ctx := b.Context()
		b.ReportAllocs()
		b.ResetTimer()
		for range b.N {
			for range footprintTasks {
				wg.Add(1)
				if err := p.Submit(ctx, "sleep", 0, struct{}{}); err != nil {
					b.Fatal(err)
				}
			}
			wg.Wait()
		}
	})
	b.Run("impl=ants", func(b *testing.B) {
		var wg sync.WaitGroup
		p, err := ants.NewPool(footprintWorkers)
		if err != nil {
			b.Fatal(err)
		}
		defer func() { _ = p.ReleaseTimeout(10 * time.Second) }()
		task := func() { sleep(); wg.Done() }
		b.ReportAllocs()
		b.ResetTimer()
		for range b.N {
			for range footprintTasks {
				wg.Add(1)
				if err := p.Submit(task); err != nil {
					b.Fatal(err)
				}
			}
			wg.Wait()
		}
	})
	b.Run("impl=goroutines", func(b *testing.B) {
		var wg sync.WaitGroup
		b.ReportAllocs()
		b.ResetTimer()
		for range b.N {
			for range footprintTasks {
				wg.Go(sleep)
			}
			wg.Wait()
		}
	})
}

// newBenchPool starts a pool of benchWorkers goroutines with a backlog of
// benchBacklog over opts and closes it when b ends.
func newBenchPool[T any](b *testing.B, opts pool.Options, h pool.Handler[T]) *pool.Pool[T] {
	b.Helper()
	opts.MinWorkers, opts.MaxWorkers, opts.Backlog = benchWorkers, benchWorkers, benchBacklog
	p, err := pool.New(opts, h, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		if left := p.Close(); len(left) != 0 {
			b.Errorf("the pool was closed with %d tasks left", len(left))
		}
	})
	return p
}
