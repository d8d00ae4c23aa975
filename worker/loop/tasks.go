package loop

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/tenire/loop-operator/worker/pool"
	"github.com/tenire/loop-operator/worker/queue"
)

// ackTimeout bounds the queue and bucket calls made when a task ends.
const ackTimeout = 10 * time.Second

// fetchLoop pulls tasks while the pool has room, until ctx is done. Tasks
// that arrive after ctx is done are handed back.
func (l *Loop) fetchLoop(ctx context.Context) {
	const minPause, maxPause = 50 * time.Millisecond, 2 * time.Second
	pause := minPause
	for ctx.Err() == nil {
		n, err := l.pool.WaitFree(ctx)
		if err != nil {
			return
		}
		ds, err := l.fetcher.Fetch(n)
		for _, d := range ds {
			f := &inflight{d: d, beat: d.Received}
			l.mu.Lock()
			l.held[f] = struct{}{}
			l.mu.Unlock()
			if ctx.Err() != nil {
				l.handBack(f)
				continue
			}
			l.dispatch(f)
		}
		if err == nil {
			pause = minPause
			continue
		}
		l.metrics.fetchErrors.Inc()
		l.log.Info("fetching tasks failed; retrying", "error", err.Error(), "pause", pause)
		if len(ds) > 0 {
			continue
		}
		t := time.NewTimer(pause)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		pause = min(2*pause, maxPause)
	}
}

// dispatch hands a fetched task to the pool, unless its kind's breaker is
// open or it has no handler.
func (l *Loop) dispatch(f *inflight) {
	d := f.d
	if _, ok := l.handlers[d.Kind]; !ok {
		l.fail(f, fmt.Errorf("%w %q", ErrNoHandler, d.Kind))
		return
	}
	if ok, wait := l.breakers.Allow(d.Kind); !ok {
		if !l.settle(f, OutcomeDeferred) {
			return
		}
		if err := d.Retry(wait); err != nil {
			l.log.Error(err, "deferring a task of a kind whose breaker is open", "task", d.ID, "kind", d.Kind)
		}
		return
	}
	if err := l.pool.TrySubmit(d.Kind, d.Class, f); err != nil {
		// Only a drain racing this fetch gets here.
		l.breakers.Ignore(d.Kind)
		l.handBack(f)
	}
}

// run is the pool's handler.
func (l *Loop) run(ctx context.Context, f *inflight) error {
	d := f.d
	t := &Task{
		ID:       d.ID,
		Kind:     d.Kind,
		Priority: d.Priority,
		Payload:  d.Payload(),
		Attempt:  d.Attempt,
		save: func(ctx context.Context, data []byte) error {
			f.saved.Store(true)
			return l.checkpoints.Save(ctx, d.ID, data)
		},
	}
	l.metrics.queueWait.WithLabelValues(d.Kind).Observe(time.Since(d.Stored).Seconds())
	if d.Attempt > 1 {
		cp, err := l.checkpoints.Load(ctx, d.ID)
		if err != nil {
			return err
		}
		t.Checkpoint = cp
		f.hadCheckpoint = cp != nil
	}
	return l.handlers[d.Kind](ctx, t)
}

// done is the pool's completion callback.
func (l *Loop) done(f *inflight, r pool.Result) {
	kind := f.d.Kind
	l.metrics.duration.WithLabelValues(kind).Observe(r.Finished.Sub(r.Started).Seconds())
	switch {
	case r.Err == nil:
		l.breakers.Success(kind)
		l.succeed(f, r.Finished.Sub(r.Started))
	case r.Aborted:
		// The drain deadline cancelled it: not the task's fault.
		l.breakers.Ignore(kind)
		l.handBack(f)
	default:
		l.breakers.Failure(kind)
		l.fail(f, r.Err)
	}
}

// settle marks a held task as ended with outcome and counts it. It
// returns false if the task had already ended (a drain forced it back).
func (l *Loop) settle(f *inflight, outcome string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if f.settled {
		return false
	}
	f.settled = true
	delete(l.held, f)
	if l.draining {
		if outcome == OutcomeHandedBack {
			l.handedBack++
		} else {
			l.finished++
		}
	}
	for i, o := range outcomeIndex {
		if o == outcome {
			l.counters[i].Add(1)
		}
	}
	l.metrics.tasks.WithLabelValues(f.d.Kind, outcome).Inc()
	return true
}

func (l *Loop) succeed(f *inflight, took time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), ackTimeout)
	defer cancel()
	if l.cfg.ResultRetention > 0 {
		// The record goes first: a crash before the ack leaves a duplicate
		// record, never a completed task without one.
		if err := f.d.RecordResult(ctx, l.js, l.names, l.cfg.Worker, took); err != nil {
			if !l.settle(f, OutcomeRetried) {
				return
			}
			l.log.Error(err, "recording the result failed; the task will run again", "task", f.d.ID, "kind", f.d.Kind)
			if err := f.d.HandBack(); err != nil {
				l.log.Error(err, "handing the task back; it will be redelivered after AckWait", "task", f.d.ID)
			}
			return
		}
	}
	if !l.settle(f, OutcomeSucceeded) {
		return
	}
	if f.saved.Load() || f.hadCheckpoint {
		if err := l.checkpoints.Delete(ctx, f.d.ID); err != nil {
			l.log.Error(err, "deleting the checkpoint of a finished task", "task", f.d.ID)
		}
	}
	if err := f.d.Ack(); err != nil {
		l.log.Error(err, "acking a finished task; it will be redelivered", "task", f.d.ID, "kind", f.d.Kind)
	}
}

func (l *Loop) fail(f *inflight, cause error) {
	d := f.d
	policy := l.cfg.Retry
	if !errors.Is(cause, ErrPermanent) && !policy.Exhausted(d.Attempt) {
		if !l.settle(f, OutcomeRetried) {
			return
		}
		delay := policy.Delay(d.Attempt)
		l.log.Info("task failed; retrying", "task", d.ID, "kind", d.Kind, "attempt", d.Attempt, "delay", delay, "error", cause.Error())
		if err := d.Retry(delay); err != nil {
			l.log.Error(err, "asking for a retry; the task will be redelivered after AckWait", "task", d.ID)
		}
		return
	}
	if !l.settle(f, OutcomeDeadLettered) {
		return
	}
	l.log.Info("task failed for good; dead-lettering it", "task", d.ID, "kind", d.Kind, "attempt", d.Attempt, "error", cause.Error())
	ctx, cancel := context.WithTimeout(context.Background(), ackTimeout)
	defer cancel()
	if err := d.DeadLetter(ctx, l.js, l.names, cause); err != nil {
		l.log.Error(err, "dead-lettering a task; it will be redelivered", "task", d.ID)
		_ = d.Retry(policy.Delay(d.Attempt))
		return
	}
	if err := l.checkpoints.Delete(ctx, d.ID); err != nil {
		l.log.Error(err, "deleting the checkpoint of a dead-lettered task", "task", d.ID)
	}
}

func (l *Loop) handBack(f *inflight) {
	if !l.settle(f, OutcomeHandedBack) {
		return
	}
	if err := f.d.HandBack(); err != nil {
		l.log.Error(err, "handing a task back; it will be redelivered after AckWait", "task", f.d.ID)
	}
}

// heartbeat sends InProgress for every held task not acknowledged for half
// of AckWait, so the server does not redeliver long tasks.
func (l *Loop) heartbeat(ctx context.Context) {
	half := l.cfg.AckWait / 2
	tick := time.NewTicker(max(half/4, 10*time.Millisecond))
	defer tick.Stop()
	var due []*queue.Delivery
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			due = due[:0]
			l.mu.Lock()
			for f := range l.held {
				if now.Sub(f.beat) >= half {
					f.beat = now
					due = append(due, f.d)
				}
			}
			l.mu.Unlock()
			for _, d := range due {
				if err := d.InProgress(); err != nil {
					l.log.V(1).Info("sending a progress heartbeat failed", "task", d.ID, "error", err.Error())
				}
			}
		}
	}
}
