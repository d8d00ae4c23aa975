package pool

import (
	"context"
	"runtime"
	"testing"
)

// waiting reports whether a WaitFree is parked on the pool.
func (p *Pool[T]) waiting() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.spaceWait
}

// TestAWaiterIsWokenPerBatchWhileTasksAreQueued checks the wake-up
// hysteresis: with a backlog, a full pool whose queue still holds tasks
// wakes its waiter only once a quarter of it is free, so that the waiter
// refills it in one batch. (A batch is at most a quarter of the backlog,
// so the workers always have queued tasks while the waiter sleeps.)
func TestAWaiterIsWokenPerBatchWhileTasksAreQueued(t *testing.T) {
	const workers, backlog = 8, 8 // wakeBatch = 2
	release := make(chan struct{})
	started := make(chan int, workers+backlog)
	p, err := New(Options{MinWorkers: workers, MaxWorkers: workers, Backlog: backlog}, func(ctx context.Context, i int) error {
		started <- i
		select {
		case <-release:
		case <-ctx.Done():
		}
		return nil
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if p.wakeBatch != 2 {
		t.Fatalf("wakeBatch = %d, want 2", p.wakeBatch)
	}
	for i := range workers + backlog {
		if err := p.TrySubmit("k", 0, i); err != nil {
			t.Fatal(err)
		}
	}
	for range workers {
		<-started
	}
	free := make(chan int, 1)
	go func() {
		n, err := p.WaitFree(t.Context())
		if err != nil {
			t.Error(err)
		}
		free <- n
	}()
	for !p.waiting() {
		select {
		case n := <-free:
			t.Fatalf("WaitFree returned %d on a full pool", n)
		default:
		}
		runtime.Gosched()
	}

	// One task ends: its worker takes the next queued task. One slot is
	// free, below the batch, and tasks are still queued: no wake-up.
	release <- struct{}{}
	<-started
	if !p.waiting() {
		t.Fatal("the waiter was woken for a single free slot while tasks were queued")
	}
	// A second one ends: two slots free, the waiter is woken.
	release <- struct{}{}
	<-started
	if n := <-free; n < 2 {
		t.Fatalf("WaitFree returned %d, want at least 2", n)
	}

	close(release)
}
