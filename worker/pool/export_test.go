package pool

import (
	"context"
	"errors"
)

// Test-only helpers on Pool, exported for the pool_test package. The
// worker uses TrySubmit, WaitFree, Stop, Abort and Wait; these wrap them.

// Submit is TrySubmit that waits while the pool is full. It returns
// ctx.Err() if ctx ends first, leaving the pool unchanged.
func (p *Pool[T]) Submit(ctx context.Context, kind string, class int, task T) error {
	for {
		err := p.TrySubmit(kind, class, task)
		if !errors.Is(err, ErrFull) {
			return err
		}
		if _, err := p.WaitFree(ctx); err != nil {
			return err
		}
	}
}

// RunningByKind returns the number of running tasks per kind.
func (p *Pool[T]) RunningByKind() map[string]int {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(map[string]int)
	for k, ks := range p.q.kinds {
		if ks.running > 0 {
			out[k] = ks.running
		}
	}
	return out
}

// Close stops the pool, aborts running tasks and waits for them. It returns
// the tasks that never started.
func (p *Pool[T]) Close() []T {
	rest := p.Stop()
	p.Abort()
	<-p.exited
	return rest
}
