package pool_test

import (
	"context"
	"testing"
	"time"

	"github.com/tenire/loop-operator/worker/pool"
)

// TestDispatchDoesNotAllocate holds the pool to its stated cost: once warm,
// submitting a task, running it and reporting it allocates nothing.
func TestDispatchDoesNotAllocate(t *testing.T) {
	tests := []struct {
		name     string
		opts     pool.Options
		allocate bool
	}{
		{"one class without limits allocates nothing", pool.Options{MinWorkers: 2, MaxWorkers: 2, Backlog: 8}, false},
		{"weighted classes with a kind limit allocate nothing", pool.Options{MinWorkers: 2, MaxWorkers: 2, Backlog: 8,
			Classes:    []pool.Class{{Name: "high", Weight: 3}, {Name: "low", Weight: 1}},
			KindLimits: map[string]int{"k": 1}}, false},
		// The documented exception, which also shows that the measure sees
		// allocations on the pool's goroutines.
		{"a task timeout allocates its context", pool.Options{MinWorkers: 2, MaxWorkers: 2, TaskTimeout: time.Minute}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			done := make(chan struct{}, 1)
			p, err := pool.New(tt.opts, func(context.Context, int) error { return nil },
				func(int, pool.Result) { done <- struct{}{} })
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			class := len(tt.opts.Classes) - 1
			if class < 0 {
				class = 0
			}
			run := func() {
				if err := p.TrySubmit("k", class, 1); err != nil {
					t.Fatal(err)
				}
				<-done
			}
			for range 100 { // warm up rings and idle stacks
				run()
			}
			if n := testing.AllocsPerRun(1000, run); (n > 0) != tt.allocate {
				t.Errorf("dispatch allocates %.2f times per task, want allocations: %v", n, tt.allocate)
			}
		})
	}
}
