package loop

import (
	"context"
	"time"
)

// drain runs the drain contract: stop pulling, hand back what has not
// started, let running tasks finish until the deadline, cancel and hand
// back the rest, report. It returns true if ctx was cancelled meanwhile
// (the caller then exits instead of idling).
func (l *Loop) drain(ctx context.Context, req drainRequest, stopFetch context.CancelFunc, fetchDone <-chan struct{}) (ctxDone bool) {
	start := time.Now()
	l.mu.Lock()
	l.draining = true
	l.mu.Unlock()
	l.setState(Draining)

	// Stop pulling; a fetch in flight ends within FetchWait and what it
	// brings is handed back.
	stopFetch()
	<-fetchDone
	for _, f := range l.pool.Stop() {
		l.breakers.Ignore(f.d.Kind)
		l.handBack(f)
	}

	// The drain is over when every task held has ended. A goroutine stuck
	// in an abandoned handler holds no task and does not hold the drain.
	exited := make(chan struct{})
	l.mu.Lock()
	if len(l.held) == 0 {
		close(exited)
	} else {
		l.emptied = exited
	}
	l.mu.Unlock()

	deadline := req.deadline
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	ctxDoneCh := ctx.Done()
	if req.cause == "context" {
		ctxDone, ctxDoneCh = true, nil
	}
	exceeded := false
wait:
	for {
		select {
		case <-exited:
			break wait
		case <-ctxDoneCh:
			// SIGTERM during a drain: keep the earlier deadline, then exit.
			ctxDone, ctxDoneCh = true, nil
			if d := time.Now().Add(l.cfg.DrainTimeout); d.Before(deadline) {
				deadline = d
				timer.Reset(time.Until(deadline))
			}
		case <-timer.C:
			exceeded = true
			l.log.Info("drain deadline passed; cancelling the running tasks", "deadline", deadline)
			l.pool.Abort()
			grace := time.NewTimer(abortGrace)
			select {
			case <-exited:
			case <-grace.C:
				l.forceHandBack()
			}
			grace.Stop()
			break wait
		}
	}

	l.mu.Lock()
	report := DrainReport{
		DeadlineExceeded: exceeded,
		Finished:         l.finished,
		HandedBack:       l.handedBack,
		Duration:         time.Since(start),
		Cause:            req.cause,
	}
	l.report = &report
	l.mu.Unlock()
	l.metrics.drain.Observe(report.Duration.Seconds())
	l.setState(Drained)
	l.log.Info("drained", "finished", report.Finished, "handedBack", report.HandedBack,
		"deadlineExceeded", report.DeadlineExceeded, "duration", report.Duration)
	if err := l.nc.FlushTimeout(5 * time.Second); err != nil {
		l.log.Error(err, "flushing acks after the drain")
	}
	if l.cfg.Pod != nil {
		l.reportDrained(context.WithoutCancel(ctx), report)
	}
	return ctxDone
}

// forceHandBack hands back the tasks whose handlers ignored cancellation.
// Their late results are dropped (settle refuses them).
func (l *Loop) forceHandBack() {
	l.mu.Lock()
	stuck := make([]*inflight, 0, len(l.held))
	for f := range l.held {
		stuck = append(stuck, f)
	}
	l.mu.Unlock()
	for _, f := range stuck {
		l.log.Info("handler ignored cancellation; handing its task back without it", "task", f.d.ID, "kind", f.d.Kind)
		if !f.startedAt().IsZero() && !l.abandon(f) {
			continue
		}
		l.handBack(f)
	}
}

// reportDrained tells the Pod source, retrying a few times.
func (l *Loop) reportDrained(ctx context.Context, r DrainReport) {
	pause := 200 * time.Millisecond
	for attempt := 1; ; attempt++ {
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := l.cfg.Pod.ReportDrained(rctx, r)
		cancel()
		if err == nil {
			return
		}
		if attempt == 5 {
			l.log.Error(err, "reporting the drain failed; the operator will delete the pod after the deadline")
			return
		}
		l.log.Error(err, "reporting the drain failed; retrying", "attempt", attempt)
		t := time.NewTimer(pause)
		<-t.C
		pause *= 2
	}
}
