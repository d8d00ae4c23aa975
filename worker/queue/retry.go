package queue

import (
	"math/rand/v2"
	"time"
)

// RetryPolicy says how often and how late failed tasks are retried.
type RetryPolicy struct {
	// MaxAttempts is the most attempts a task gets, the first included.
	// Only failed attempts count: a delivery handed back in a drain,
	// deferred by an open breaker or lost in a worker's crash does not (see
	// DeliveryCounts). Default 5.
	MaxAttempts int
	// MaxCrashes is how many times a task may be redelivered after the
	// worker holding it died (the server redelivered it after AckWait with
	// nothing recorded) before it is dead-lettered without running again.
	// Default max(MaxAttempts, 3).
	MaxCrashes int
	// MaxDeliveries caps the server's deliveries of a task, hand-backs and
	// deferrals included: a task delivered more often is dead-lettered
	// without running again. It is the safety net for deliveries whose
	// counts could not be recorded. Default max(1000, 4*(MaxAttempts+MaxCrashes)).
	MaxDeliveries int
	// InitialBackoff is the delay before the first retry. Default 1s.
	InitialBackoff time.Duration
	// MaxBackoff caps the delay. Default 5m.
	MaxBackoff time.Duration
	// Jitter returns a number in [0, 1). Default math/rand/v2.Float64.
	Jitter func() float64
}

// WithDefaults returns the policy with its zero fields set to defaults.
func (p RetryPolicy) WithDefaults() RetryPolicy {
	if p.MaxAttempts <= 0 {
		p.MaxAttempts = 5
	}
	if p.MaxCrashes <= 0 {
		p.MaxCrashes = max(p.MaxAttempts, 3)
	}
	if p.MaxDeliveries <= 0 {
		p.MaxDeliveries = max(1000, 4*(p.MaxAttempts+p.MaxCrashes))
	}
	if p.InitialBackoff <= 0 {
		p.InitialBackoff = time.Second
	}
	if p.MaxBackoff <= 0 {
		p.MaxBackoff = 5 * time.Minute
	}
	if p.MaxBackoff < p.InitialBackoff {
		p.MaxBackoff = p.InitialBackoff
	}
	if p.Jitter == nil {
		p.Jitter = rand.Float64
	}
	return p
}

// Exhausted reports whether a task that failed its attempt-th attempt has
// no attempt left.
func (p RetryPolicy) Exhausted(attempt uint64) bool {
	return attempt >= uint64(p.WithDefaults().MaxAttempts)
}

// Delay returns the delay before the retry that follows a failed
// attempt-th attempt: InitialBackoff doubled attempt-1 times, capped at
// MaxBackoff, of which the upper half is random ("equal jitter"), so that
// retries of tasks that failed together spread out.
func (p RetryPolicy) Delay(attempt uint64) time.Duration {
	p = p.WithDefaults()
	d := p.InitialBackoff
	for i := uint64(1); i < attempt && d < p.MaxBackoff; i++ {
		d *= 2
	}
	d = min(d, p.MaxBackoff)
	half := d / 2
	return half + time.Duration(float64(d-half)*p.Jitter())
}
