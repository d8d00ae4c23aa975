package loop

import (
	"context"
	"fmt"
	"time"
)

// The worker's state machine.
//
//	state      entered when                                    leaves on
//	Starting:  Run is called                                   every component started, next Running
//	Running:   admin, queue, pool, fetcher, watchers started   a drain trigger, next Draining
//	Draining:  a trigger (DrainCause) arrived                  every held task ended or the deadline
//	                                                           + AbortGrace passed, next Drained
//	Drained:   the drain report is made (and sent to the Pod,  exits(cause) or ctx done, next Stopped
//	           unless SIGTERM started it and it held nothing)
//	Stopped:   Run returns                                     —
//
// Triggers, one DrainCause each: the Pod source's drain request (pod), POST
// /drain (http), RequestDrain (api), Run's context (context: SIGTERM), the
// admin server's failure. The first trigger wins; later ones are ignored,
// except that cancelling the context during a drain keeps the earlier of
// the two deadlines and makes Run return afterwards.
//
// The drain: stop pulling (a fetch in flight ends within FetchWait and what
// it brings is handed back), /readyz turns 503, hand back what the pool
// holds but has not started, let the running tasks end until the deadline,
// then cancel them and hand them back (a handler that ignores cancellation
// for AbortGrace more is abandoned: its task handed back without it, its
// slot counted as stuck), report.

// State is the loop's lifecycle state.
type State int32

const (
	// Starting means configuration, admin server, queue connection, pool
	// and fetcher are being set up.
	Starting State = iota
	// Running means pulling and running tasks; ready.
	Running
	// Draining means no longer pulling; running tasks finish until the deadline.
	Draining
	// Drained means every task held was finished or handed back; idle.
	Drained
	// Stopped means Run has returned.
	Stopped
)

// String returns the state's name.
func (s State) String() string {
	switch s {
	case Starting:
		return "Starting"
	case Running:
		return "Running"
	case Draining:
		return "Draining"
	case Drained:
		return "Drained"
	default:
		return "Stopped"
	}
}

func (l *Loop) setState(s State) {
	l.state.Store(int32(s))
	l.log.Info("state changed", "state", s.String())
}

// DrainCause says what started a drain. It is a string so that it reads the
// same in DrainReport's JSON and message as before it had a type.
type DrainCause string

// The drain causes.
const (
	// DrainCausePod is the Pod source's drain request (the operator's
	// annotations on the worker's Pod).
	DrainCausePod DrainCause = "pod"
	// DrainCauseHTTP is POST /drain on the admin port.
	DrainCauseHTTP DrainCause = "http"
	// DrainCauseAPI is a call of Loop.RequestDrain.
	DrainCauseAPI DrainCause = "api"
	// DrainCauseContext is the cancellation of Run's context (SIGTERM or
	// SIGINT in the binary). Run returns after such a drain.
	DrainCauseContext DrainCause = "context"
	// DrainCauseAdminFailure is the admin server failing. Run returns its
	// error after the drain.
	DrainCauseAdminFailure DrainCause = "admin server failure"
)

// exits reports whether Run returns after a drain with this cause rather
// than idling in Drained until its context is cancelled.
func (c DrainCause) exits() bool {
	return c == DrainCauseContext || c == DrainCauseAdminFailure
}

// drainRequest is a trigger: a cause and a deadline.
type drainRequest struct {
	deadline time.Time
	cause    DrainCause
}

func (r drainRequest) exits() bool { return r.cause.exits() }

// requestDrain delivers a trigger; the first one wins. The pod's request
// has a channel of its own, so that no other trigger crowds it out: a
// worker drained by another cause still answers it (idleDrained).
func (l *Loop) requestDrain(r drainRequest) {
	ch := l.drainReq
	if r.cause == DrainCausePod {
		ch = l.podDrainReq
	}
	select {
	case ch <- r:
	default:
	}
}

// awaitDrain waits in Running for the first trigger. It returns the
// admin server's error as fatalErr when that was the trigger.
func (l *Loop) awaitDrain(ctx context.Context, adminErr <-chan error) (req drainRequest, fatalErr error) {
	select {
	case <-ctx.Done():
		req = drainRequest{deadline: time.Now().Add(l.cfg.DrainTimeout), cause: DrainCauseContext}
	case req = <-l.drainReq:
	case req = <-l.podDrainReq:
	case err := <-adminErr:
		fatalErr = fmt.Errorf("loop: admin server: %w", err)
		req = drainRequest{deadline: time.Now().Add(l.cfg.DrainTimeout), cause: DrainCauseAdminFailure}
	}
	l.log.Info("drain requested", "cause", string(req.cause), "deadline", req.deadline)
	return req, fatalErr
}

// drain runs the drain contract: stop pulling, hand back what has not
// started, let running tasks finish until the deadline, cancel and hand
// back the rest, report. It returns true if ctx was cancelled meanwhile
// (the caller then exits instead of idling).
func (l *Loop) drain(ctx context.Context, req drainRequest, fetch fetching) (ctxDone bool) {
	start := time.Now()
	l.mu.Lock()
	l.draining = true
	l.mu.Unlock()
	l.setState(Draining)

	// Stop pulling; a fetch in flight ends within FetchWait and what it
	// brings is handed back.
	fetch.stop()
	<-fetch.done
	l.handBackUnstarted(l.pool.Stop()...)

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
	if req.cause == DrainCauseContext {
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
			grace := time.NewTimer(l.cfg.AbortGrace)
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
	if l.cfg.Pod != nil && report.worthReporting() {
		l.reportDrained(context.WithoutCancel(ctx), report)
	}
	return ctxDone
}

// idleDrained waits in Drained until ctx ends. A drain the pod did not
// ask for (POST /drain, RequestDrain) leaves the pod watch running: when
// the pod is asked to drain later, the drain already done is reported
// again, because the operator removes a report older than its request
// (contract.RequestDrain) and honours only one written after it. Later
// triggers of any other cause are ignored.
func (l *Loop) idleDrained(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-l.podDrainReq:
			l.mu.Lock()
			report := l.report
			l.mu.Unlock()
			if l.cfg.Pod == nil || report == nil {
				continue
			}
			l.log.Info("the pod was asked to drain after this worker had drained; reporting that drain")
			l.reportDrained(context.WithoutCancel(ctx), *report)
		}
	}
}

// worthReporting says whether the Pod source should hear of a drain. A
// drain that SIGTERM (or the admin server's failure) started and that had
// nothing to finish or hand back is not reported: the pod is being deleted
// or restarted, the operator no longer reads its conditions, and an idle
// pod the operator deleted directly then costs no write of its own. Every
// drain that held a task is reported, whatever started it.
func (r DrainReport) worthReporting() bool {
	return !r.Cause.exits() || r.DeadlineExceeded || r.Finished > 0 || r.HandedBack > 0
}

// forceHandBack hands back the tasks still held at the drain's deadline:
// those whose handlers ignored cancellation (their late results are
// dropped: settle refuses them, and their slots count as stuck until the
// handlers return), those not started, and those whose handlers returned
// but whose settling still waits on the server (whichever of the two
// settles first wins).
func (l *Loop) forceHandBack() {
	l.mu.Lock()
	held := make([]*inflight, 0, len(l.held))
	for f := range l.held {
		held = append(held, f)
	}
	l.mu.Unlock()
	for _, f := range held {
		if !f.runningSince().IsZero() && l.abandon(f) {
			l.log.Info("handler ignored cancellation; handing its task back without it", "task", f.d.ID, "kind", f.d.Kind)
		}
		l.handBack(f) // a no-op for a task that ended meanwhile
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
