package pool_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/alitto/pond/v2"
	"github.com/panjf2000/ants/v2"

	"github.com/tenire/loop-operator/worker/pool"
)

// benchWorkers is the goroutine count of every pool in the dispatch
// benchmarks.
const benchWorkers = 64

// BenchmarkDispatch submits b.N no-op tasks and waits for all of them, on
// this pool and, for comparison, on ants, pond and bare goroutines.
func BenchmarkDispatch(b *testing.B) {
	b.Run("pool", func(b *testing.B) {
		var wg sync.WaitGroup
		p, err := pool.New(pool.Options{MinWorkers: benchWorkers, MaxWorkers: benchWorkers, Backlog: 1 << 14},
			func(context.Context, struct{}) error { wg.Done(); return nil }, nil)
		if err != nil {
			b.Fatal(err)
		}
		defer p.Close()
		ctx := b.Context()
		b.ReportAllocs()
		b.ResetTimer()
		for range b.N {
			wg.Add(1)
			if err := p.Submit(ctx, "noop", 0, struct{}{}); err != nil {
				b.Fatal(err)
			}
		}
		wg.Wait()
	})
	b.Run("ants", func(b *testing.B) {
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
	b.Run("pond", func(b *testing.B) {
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
	b.Run("goroutines", func(b *testing.B) {
		var wg sync.WaitGroup
		b.ReportAllocs()
		b.ResetTimer()
		for range b.N {
			wg.Go(func() {})
		}
		wg.Wait()
	})
}
