package loop

import (
	"errors"
	"fmt"
	"time"

	"github.com/tenire/loop-operator/worker/queue"
)

// The task lifecycle's decisions, as pure functions over plain inputs.

// ErrDeliveryCap is wrapped by the error a task is dead-lettered with when
// it reached a delivery cap (RetryPolicy.MaxCrashes or MaxDeliveries)
// before running again.
var ErrDeliveryCap = errors.New("delivery cap reached")

// ErrExpired is wrapped by the error a task is dead-lettered with when it
// had not started by its deadline (queue.Task.Deadline): it never runs.
var ErrExpired = errors.New("expired")

// ErrAbandoned is wrapped by the error of an attempt whose handler was
// still running Config.StuckGrace after its TaskTimeout: the loop settled
// the task without it and counts the slot as stuck until it returns.
var ErrAbandoned = errors.New("handler abandoned")

// deliveryCap returns the error to dead-letter a delivery with, without
// running it, or nil to run it. p has its defaults applied; delivered is
// the server's delivery count; c the recorded counts, when known.
func deliveryCap(p queue.RetryPolicy, delivered uint64, c queue.DeliveryCounts, known bool) error {
	if delivered > uint64(p.MaxDeliveries) {
		return fmt.Errorf("%w: delivered %d times, hand-backs and deferrals included (MaxDeliveries %d)",
			ErrDeliveryCap, delivered, p.MaxDeliveries)
	}
	if !known {
		return nil
	}
	if n := c.Crashes(delivered); n >= uint64(p.MaxCrashes) {
		return fmt.Errorf("%w: worker crashed %d times while running it (MaxCrashes %d)", ErrDeliveryCap, n, p.MaxCrashes)
	}
	return nil
}

// isStuck reports whether a handler that started at started is still
// running past its timeout plus grace at now.
func isStuck(started, now time.Time, timeout, grace time.Duration) bool {
	return !started.IsZero() && now.Sub(started) > timeout+grace
}
