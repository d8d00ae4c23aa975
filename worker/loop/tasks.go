package loop

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tenire/loop-operator/worker/checkpoint"
	"github.com/tenire/loop-operator/worker/pool"
	"github.com/tenire/loop-operator/worker/queue"
)

// ackTimeout bounds the queue and bucket calls made when a task ends.
const ackTimeout = 10 * time.Second

// countsTimeout bounds reading or writing a task's delivery counts.
const countsTimeout = 2 * time.Second

// resultTryTimeout bounds one try to write a result record (Config.ResultWindow
// bounds them all).
const resultTryTimeout = 2 * time.Second

// fetchLoop pulls tasks while the pool has room, until ctx is done. Tasks
// that arrive after ctx is done are handed back.
func (l *Loop) fetchLoop(ctx context.Context) {
	const minPause, maxPause = 50 * time.Millisecond, 2 * time.Second
	pause := minPause
	for ctx.Err() == nil {
		// The prefetch is sized once a turn, before the room is counted.
		l.resizePrefetch(time.Now())
		n, err := l.pool.WaitFree(ctx)
		if err != nil {
			return
		}
		began := time.Now()
		ds, err := l.fetcher.Fetch(n)
		if l.prefetch != nil && err == nil && len(ds) > 0 && !l.fetcher.Waited() {
			l.prefetch.fetched(time.Since(began)) // the next turn resizes the backlog
		}
		for _, d := range ds {
			f := &inflight{d: d, beat: d.Received}
			l.loadCounts(f)
			l.mu.Lock()
			l.held[f] = struct{}{}
			wasIdle := len(l.held) == 1
			l.mu.Unlock()
			if wasIdle {
				l.announceChange()
			}
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

// longestRunning is how long the oldest task still in its handler has
// been running. A task whose handler returned does not count while it is
// settled (see runningSince): that says nothing about how long the tasks
// take, and would shrink the prefetch and shed what it holds.
func (l *Loop) longestRunning(now time.Time) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	var longest time.Duration
	for f := range l.held {
		if started := f.runningSince(); !started.IsZero() {
			longest = max(longest, now.Sub(started))
		}
	}
	return longest
}

// resizePrefetch sizes the adaptive prefetch (if on) and hands back the
// prefetched tasks beyond its new size, newest first: the fetch loop does
// it once a turn, the heartbeat between turns, so that a worker whose
// tasks turned long while it waited for room does not keep, queued behind
// them, tasks an idle pod could run.
func (l *Loop) resizePrefetch(now time.Time) {
	if l.prefetch == nil {
		return
	}
	l.pool.SetBacklog(l.prefetch.size(l.longestRunning(now)))
	shed := l.pool.Shed()
	l.handBackUnstarted(shed...)
	if len(shed) > 0 {
		l.log.V(1).Info("handed back prefetched tasks beyond the prefetch's new size", "tasks", len(shed), "prefetch", l.pool.Backlog())
	}
}

// dispatch hands a fetched task to the pool, unless it reached a delivery
// cap, its kind's breaker is open or it has no handler.
func (l *Loop) dispatch(f *inflight) {
	d := f.d
	if err := deliveryCap(l.cfg.Retry, d.Delivered, f.counts, f.countsKnown); err != nil {
		l.fail(f, err)
		return
	}
	if err := expired(d, time.Now()); err != nil {
		l.fail(f, err)
		return
	}
	if !l.mux.Has(d.Kind) {
		l.fail(f, fmt.Errorf("%w %q", ErrNoHandler, d.Kind))
		return
	}
	if ok, wait := l.breakers.Allow(d.Kind); !ok {
		if !l.settle(f, OutcomeDeferred) {
			return
		}
		l.recordReturn(f)
		if err := d.Retry(wait); err != nil {
			l.log.Error(err, "deferring a task of a kind whose breaker is open", "task", d.ID, "kind", d.Kind)
		}
		return
	}
	if err := l.pool.TrySubmit(d.Kind, d.Class, f); err != nil {
		// Only a drain racing this fetch gets here.
		l.handBackUnstarted(f)
	}
}

// handBackUnstarted hands back tasks that were dispatched but never
// started: their breakers' admissions are given back unused, as they say
// nothing about their kinds' health.
func (l *Loop) handBackUnstarted(fs ...*inflight) {
	for _, f := range fs {
		l.breakers.Ignore(f.d.Kind)
		l.handBack(f)
	}
}

// run is the pool's handler.
func (l *Loop) run(ctx context.Context, f *inflight) error {
	now := time.Now()
	f.started.Store(now.UnixNano())
	d := f.d
	if err := expired(d, now); err != nil {
		// It waited in the pool past its deadline.
		return err
	}
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
	if d.Delivered > 1 {
		// Any earlier delivery may have saved one: a failure, a hand-back,
		// a crash.
		cp, err := l.checkpoints.Load(ctx, d.ID)
		if err != nil {
			return err
		}
		t.Checkpoint = cp
		f.hadCheckpoint = cp != nil
	}
	err := l.serve(ctx, t)
	if err == nil && t.tooLarge > 0 {
		err = fmt.Errorf("the handler set a result of %d bytes: %w", t.tooLarge, ErrResultTooLarge)
	}
	if err == nil {
		d.Result = t.result
	}
	if err == nil && ctx.Err() != nil {
		// Cancellation wins over the handler's answer: a handler that
		// returns nil on <-ctx.Done() has not finished its task. The pool
		// turns a timeout into pool.ErrTimeout; a drain's abort is a
		// hand-back.
		err = fmt.Errorf("handler returned nil after its context ended: %w", context.Cause(ctx))
	}
	return err
}

// done is the pool's completion callback.
func (l *Loop) done(f *inflight, r pool.Result) {
	f.returned.Store(true)
	kind := f.d.Kind
	if l.prefetch != nil && !r.Started.IsZero() {
		l.prefetch.ran(r.Finished.Sub(r.Started))
	}
	l.mu.Lock()
	if f.abandoned {
		// The stuck handler returned at last; its slot is free again.
		f.abandoned = false
		l.stuck.Add(-1)
	}
	l.mu.Unlock()
	switch {
	case r.Err == nil:
		l.breakers.Success(kind)
		l.succeed(f, r.Finished.Sub(r.Started))
	case errors.Is(r.Err, ErrExpired):
		// Never ran: says nothing about the kind's health.
		l.breakers.Ignore(kind)
		l.fail(f, r.Err)
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
// returns false if the task had already ended (a drain forced it back, or
// it was abandoned).
func (l *Loop) settle(f *inflight, outcome string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if f.settled {
		return false
	}
	f.settled = true
	delete(l.held, f)
	if len(l.held) == 0 {
		l.announceChange()
	}
	if l.draining {
		if outcome == OutcomeHandedBack {
			l.handedBack++
		} else {
			l.finished++
		}
		if len(l.held) == 0 && l.emptied != nil {
			close(l.emptied)
			l.emptied = nil
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

// isSettled reports whether a held task has ended.
func (l *Loop) isSettled(f *inflight) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return f.settled
}

func (l *Loop) succeed(f *inflight, took time.Duration) {
	if l.isSettled(f) {
		// A late result of an abandoned or forced-back task: dropped
		// before its record is written.
		return
	}
	if l.cfg.ResultRetention > 0 {
		// The record goes first: a crash before the ack leaves a duplicate
		// record. A record that cannot be written within ResultWindow is
		// given up: the task is acked without one rather than run again
		// and again.
		if err := l.recordResult(f, took); err != nil {
			l.metrics.resultsLost.Inc()
			l.log.Error(err, "recording the result failed; acking the task without a record", "task", f.d.ID, "kind", f.d.Kind)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), ackTimeout)
	defer cancel()
	if !l.settle(f, OutcomeSucceeded) {
		return
	}
	if f.saved.Load() || f.hadCheckpoint {
		if err := l.checkpoints.Delete(ctx, f.d.ID); err != nil {
			l.log.Error(err, "deleting the checkpoint of a finished task", "task", f.d.ID)
		}
	}
	l.forgetCounts(ctx, f)
	if err := f.d.Ack(); err != nil {
		l.log.Error(err, "acking a finished task; it will be redelivered", "task", f.d.ID, "kind", f.d.Kind)
	}
}

// recordResult publishes a task's result record, trying again, with
// pauses from 100ms up to 1s, until it is stored or ResultWindow has
// passed (a replicated result stream whose leader's server was lost
// refuses records until the others elect a new leader).
func (l *Loop) recordResult(f *inflight, took time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), l.cfg.ResultWindow)
	defer cancel()
	pause := 100 * time.Millisecond
	for try := 1; ; try++ {
		tctx, tcancel := context.WithTimeout(ctx, resultTryTimeout)
		err := f.d.RecordResult(tctx, l.js, l.names, l.cfg.Worker, took)
		tcancel()
		if err == nil {
			if try > 1 {
				l.log.Info("recorded a result after retrying", "task", f.d.ID, "tries", try)
			}
			return nil
		}
		t := time.NewTimer(pause)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%d tries in %s: %w", try, l.cfg.ResultWindow, err)
		case <-t.C:
		}
		pause = min(2*pause, time.Second)
	}
}

// expired returns an error wrapping ErrExpired and ErrPermanent when the
// task's deadline passed before now.
func expired(d *queue.Delivery, now time.Time) error {
	if !d.Expired(now) {
		return nil
	}
	return fmt.Errorf("%w: not started by its deadline %s (%s late): %w",
		ErrExpired, d.Deadline.UTC().Format(time.RFC3339Nano), now.Sub(d.Deadline).Round(time.Millisecond), ErrPermanent)
}

// fail ends a failed attempt: a retry with backoff while attempts are
// left, else a dead letter.
func (l *Loop) fail(f *inflight, cause error) {
	d := f.d
	policy := l.cfg.Retry
	final := errors.Is(cause, ErrPermanent) || errors.Is(cause, ErrDeliveryCap) || policy.Exhausted(d.Attempt)
	if !final {
		if !l.settle(f, OutcomeRetried) {
			return
		}
		delay := policy.Delay(d.Attempt)
		l.log.Info("task failed; retrying", "task", d.ID, "kind", d.Kind, "attempt", d.Attempt, "delay", delay, "error", cause.Error())
		l.recordFailure(f)
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
		l.recordFailure(f)
		_ = d.Retry(policy.Delay(d.Attempt))
		return
	}
	if err := l.checkpoints.Delete(ctx, d.ID); err != nil {
		l.log.Error(err, "deleting the checkpoint of a dead-lettered task", "task", d.ID)
	}
	l.forgetCounts(ctx, f)
}

func (l *Loop) handBack(f *inflight) {
	if !l.settle(f, OutcomeHandedBack) {
		return
	}
	l.recordReturn(f)
	if err := f.d.HandBack(); err != nil {
		l.log.Error(err, "handing a task back; it will be redelivered after AckWait", "task", f.d.ID)
	}
}

// abandon marks a running task whose handler will not return in time as
// abandoned: its slot counts as stuck until the handler returns. It
// returns false if the task has ended meanwhile, or its handler has
// returned (done sets returned before it takes l.mu to give an abandoned
// slot back, so a slot is never counted stuck after that).
func (l *Loop) abandon(f *inflight) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if f.settled || f.abandoned || f.returned.Load() {
		return false
	}
	f.abandoned = true
	l.stuck.Add(1)
	return true
}

// Delivery counts (queue.DeliveryCounts) live in the checkpoint bucket.
// The loop reads them when a task comes again and writes them before each
// NAK, so that the next delivery can tell failures, returns and crashes
// apart. A first delivery reads nothing and a task that succeeds at once
// writes nothing.

func (l *Loop) loadCounts(f *inflight) {
	d := f.d
	if d.Delivered <= 1 {
		f.countsKnown = true
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), countsTimeout)
	defer cancel()
	e, err := l.countsKV.Get(ctx, queue.CountsKey(checkpoint.Key(d.ID)))
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		// Every earlier delivery crashed.
		f.countsKnown = true
		d.Attempt = f.counts.Attempt()
	case err != nil:
		// Unknown: attempts stay the server's delivery count (the old,
		// cautious rule) and only MaxDeliveries caps the task.
		l.log.Error(err, "reading the delivery counts of a task; counting every delivery as an attempt", "task", d.ID)
		return
	default:
		if err := f.counts.UnmarshalText(e.Value()); err != nil {
			l.log.Error(err, "ignoring unreadable delivery counts", "task", d.ID)
			return
		}
		f.countsKnown = true
		d.Attempt = f.counts.Attempt()
	}
}

func (l *Loop) recordFailure(f *inflight) {
	c := f.counts
	c.Failures++
	l.storeCounts(f, c)
}

func (l *Loop) recordReturn(f *inflight) {
	c := f.counts
	c.Returns++
	l.storeCounts(f, c)
}

// storeCounts writes the counts of a task about to be NAKed. Counts that
// were unknown, or a connection that is down, write nothing: the next
// delivery then sees a crash, which errs on the side of the cap.
func (l *Loop) storeCounts(f *inflight, c queue.DeliveryCounts) {
	if !f.countsKnown || l.countsKV == nil || !l.nc.IsConnected() {
		return
	}
	data, _ := c.MarshalText()
	ctx, cancel := context.WithTimeout(context.Background(), countsTimeout)
	defer cancel()
	if _, err := l.countsKV.Put(ctx, queue.CountsKey(checkpoint.Key(f.d.ID)), data); err != nil {
		l.log.Error(err, "recording the delivery counts of a task; its next delivery will count as a crash", "task", f.d.ID)
	}
}

// forgetCounts deletes the counts of a task that left the queue.
func (l *Loop) forgetCounts(ctx context.Context, f *inflight) {
	if f.d.Delivered <= 1 {
		return
	}
	err := l.countsKV.Purge(ctx, queue.CountsKey(checkpoint.Key(f.d.ID)))
	if err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		l.log.Error(err, "deleting the delivery counts of a finished task", "task", f.d.ID)
	}
}

// heartbeat sends InProgress for every held task not acknowledged for half
// of AckWait, so the server does not redeliver long tasks, abandons the
// tasks whose handlers run past TaskTimeout + StuckGrace, and resizes the
// adaptive prefetch between fetches (resizePrefetch).
func (l *Loop) heartbeat(ctx context.Context) {
	half := l.cfg.AckWait / 2
	tick := time.NewTicker(max(min(half/4, l.cfg.StuckGrace/4), 10*time.Millisecond))
	defer tick.Stop()
	var (
		due   []*queue.Delivery
		stuck []*inflight
	)
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			due, stuck = due[:0], stuck[:0]
			l.mu.Lock()
			for f := range l.held {
				if isStuck(f.runningSince(), now, l.cfg.TaskTimeout, l.cfg.StuckGrace) {
					stuck = append(stuck, f)
					continue
				}
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
			for _, f := range stuck {
				if !l.abandon(f) {
					continue
				}
				l.log.Info("handler still running past its timeout and grace; abandoning its task and counting its slot as stuck",
					"task", f.d.ID, "kind", f.d.Kind, "timeout", l.cfg.TaskTimeout, "grace", l.cfg.StuckGrace)
				l.breakers.Failure(f.d.Kind)
				l.fail(f, fmt.Errorf("%w: still running %s after its timeout of %s", ErrAbandoned, l.cfg.StuckGrace, l.cfg.TaskTimeout))
			}
			l.resizePrefetch(now)
		}
	}
}
