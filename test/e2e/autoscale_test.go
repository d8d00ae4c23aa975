//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"math"
	mrand "math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/dynamic"
	"k8s.io/utils/ptr"

	loopsv1alpha1 "github.com/tenire/loop-operator/api/v1alpha1"
)

// The autoscaling scenarios (issue 11): the operator scales a loop on its
// queue's backlog, up to spec.autoscaling.maxReplicas under a burst, down
// by drains once the burst is worked off, to zero when idle and back on
// the next task, and it does not flap on a backlog that hovers at a
// threshold. The manager polls the queues every QueuePollInterval (2s in
// local mode); each scenario sets short stabilization windows through
// spec.autoscaling.behavior so that it runs in test time.

// TestABurstScalesUpToTheMaximumAndDrainsBackToTheMinimum: 10,000 tasks of
// 20-100 ms on a loop autoscaled between 1 and 6 pods (200 tasks per
// replica: the burst asks for 50) take it to 6 pods, and once the backlog
// is gone back to 1; every pod removed is drained first, at most
// drain.maxConcurrent at once; no task is lost.
func TestABurstScalesUpToTheMaximumAndDrainsBackToTheMinimum(t *testing.T) {
	const maxReplicas = 6
	l := newLoop(t, "burst", 1, func(ld *loopsv1alpha1.LoopDeployment) {
		ld.Spec.Autoscaling = &loopsv1alpha1.AutoscalingSpec{
			MinReplicas: ptr.To[int32](1), MaxReplicas: maxReplicas, TargetBacklogPerReplica: ptr.To[int32](200),
			Behavior: &loopsv1alpha1.AutoscalingBehavior{
				// Up to the maximum at once (the default allows +4 pods per
				// 15s); down after 15s at the backlog's new level (long
				// enough for the new pods to start on a loaded machine), 2
				// pods per 5s, so that the way down is a few steps.
				ScaleUp: &loopsv1alpha1.ScalingRules{Policies: []loopsv1alpha1.ScalingPolicy{
					{Type: loopsv1alpha1.PodsScalingPolicy, Value: maxReplicas, PeriodSeconds: 15}}},
				ScaleDown: &loopsv1alpha1.ScalingRules{StabilizationWindowSeconds: ptr.To[int32](15),
					Policies: []loopsv1alpha1.ScalingPolicy{{Type: loopsv1alpha1.PodsScalingPolicy, Value: 2, PeriodSeconds: 5}}},
			},
		}
	})
	watch := l.watchPods(2) // drain.maxConcurrent of newLoop's loops
	trail := l.trackReplicas()

	l.submitSleeps(10000, 20, 100)
	eventually(t, 2*time.Minute, fmt.Sprintf("the autoscaler to ask for %d replicas", maxReplicas), func() (bool, error) {
		return trail.maxSpec() == maxReplicas, nil
	})
	sum := l.waitAllAccounted(5 * time.Minute)
	// Bound on duplicates: 0. No pod is killed; every pod removed is
	// drained with a timeout of 1 minute, far above the tasks' 100 ms, so
	// it finishes what it holds; a task runs twice only if its ack is lost
	// or it outlives ackWait (10s), neither of which a scale-down causes.
	if sum.Duplicates > 0 {
		t.Errorf("%d tasks ran twice; with drains only the bound is 0", sum.Duplicates)
	}
	eventually(t, 3*time.Minute, "the autoscaler to come back to 1 replica", func() (bool, error) {
		return *l.get().Spec.Replicas == 1, nil
	})
	l.waitReady(1)
	trail.stop(t)
	t.Logf("replicas (spec, ready): %s", trail)
	evs := l.logAutoscaling()
	watch.check(t)

	if got := trail.maxReady(); got < maxReplicas {
		t.Errorf("at most %d pods were Ready at once; the autoscaler asked for %d", got, maxReplicas)
	}
	deleted := watch.deletedPods()
	if len(deleted) < maxReplicas-1 {
		t.Errorf("%d pods were deleted; scaling %d → 1 deletes %d", len(deleted), maxReplicas, maxReplicas-1)
	}
	// Every pod removed was drained, or deleted directly while its worker
	// announced no task in flight; the sink shows nothing was lost.
	l.checkRemovals(watch)
	if !hasEvent(evs, loopsv1alpha1.EventAutoscaled, fmt.Sprintf("→ %d", maxReplicas)) {
		t.Errorf("no Autoscaled event says the loop went to %d replicas", maxReplicas)
	}
	if !hasEvent(evs, loopsv1alpha1.EventAutoscaled, "→ 1") {
		t.Error("no Autoscaled event says the loop went back to 1 replica")
	}
}

// TestALoopScalesToZeroWhenIdleAndBackOnTheNextTask: with minReplicas 0
// and scaleToZeroAfter 5s, an idle loop goes to zero pods (its last pod
// drained); one task brings a pod back, which runs it; once idle again the
// loop goes back to zero.
func TestALoopScalesToZeroWhenIdleAndBackOnTheNextTask(t *testing.T) {
	// Created with minReplicas 1, so that newLoop sees its first pod
	// Ready, then set to 0.
	l := newLoop(t, "idle", 1, func(ld *loopsv1alpha1.LoopDeployment) {
		ld.Spec.Autoscaling = &loopsv1alpha1.AutoscalingSpec{
			MinReplicas: ptr.To[int32](1), MaxReplicas: 2, TargetBacklogPerReplica: ptr.To[int32](10),
			ScaleToZeroAfter: &metav1.Duration{Duration: 5 * time.Second},
			Behavior: &loopsv1alpha1.AutoscalingBehavior{ScaleDown: &loopsv1alpha1.ScalingRules{
				StabilizationWindowSeconds: ptr.To[int32](0)}},
		}
	})
	watch := l.watchPods(2)
	trail := l.trackReplicas()
	l.update(func(ld *loopsv1alpha1.LoopDeployment) { ld.Spec.Autoscaling.MinReplicas = ptr.To[int32](0) })
	l.waitZero("the idle loop")

	submitted := time.Now()
	l.submitSleeps(1, 200, 200)
	sum := l.waitAllAccounted(3 * time.Minute)
	t.Logf("the task submitted to a loop at zero completed %s later", time.Since(submitted).Round(100*time.Millisecond))
	if sum.Duplicates > 0 {
		t.Errorf("the task ran %d more times; bound 0 (one task, no pod killed)", sum.Duplicates)
	}
	if got := trail.maxSpec(); got != 1 {
		t.Errorf("the loop went to %d replicas for one task; want 1", got)
	}
	l.waitZero("the loop idle again")
	trail.stop(t)
	t.Logf("replicas (spec, ready): %s", trail)
	evs := l.logAutoscaling()
	watch.check(t)

	if n := len(watch.deletedPods()); n < 2 {
		t.Errorf("%d pods were deleted; going to zero twice deletes 2", n)
	}
	// An idle loop's last pod holds no task: it goes without a drain
	// (DeletedIdle), or with one if its announcement was not heard yet.
	l.checkRemovals(watch)
	if !hasEvent(evs, loopsv1alpha1.EventAutoscaled, "the queue has been empty for") {
		t.Error("no Autoscaled event says the queue was empty")
	}
	if !hasEvent(evs, loopsv1alpha1.EventAutoscaled, "0 → 1") {
		t.Error("no Autoscaled event says the task woke the loop at zero")
	}
}

// TestABacklogHoveringAtTheThresholdDoesNotFlap: a producer feeds tasks of
// about 1s, 26 per second for 4s then 16 per second for 4s, over and over,
// so that 16 to 26 tasks are in flight: with 10 tasks per replica the
// backlog hovers around the threshold of 2 replicas, and the
// recommendation swings between 2 and 3 every other poll. Without
// stabilization windows the count follows it (3 at the high phase; at 3,
// the low phase is 47% below, beyond the 10% tolerance, so 2 again): it
// would change every 4s. With a scale-up window of 5 polls (10s locally,
// longer than a high phase) and a scale-down window of 10 polls it settles (at 2, or at 3 when the
// first pod, saturated, let tasks wait while the count was still 1; a count
// is settled once it held past the longer window, so that a count the
// first burst pushed too high has come down) and stays: in a window of 15
// polls after it settled it changes at most once
// (a real shift of the load, such as the machine stalling the workers,
// may move it by one). The count it settled at is k±1, or higher only if
// the test's own readings of the stream saw a backlog that asks for it
// within the scale-down window before (a slow machine, as kind on two
// cores can be, stretches the tasks and so the backlog). Run without the
// windows, this test fails: the count never holds still for 10s.
func TestABacklogHoveringAtTheThresholdDoesNotFlap(t *testing.T) {
	const (
		target   = 10
		k        = 2
		taskMs   = 1000
		highRate = 26.0 // tasks per second: 2.6 × target in flight
		lowRate  = 16.0 // 1.6 × target
		phase    = 4 * time.Second
		tick     = 100 * time.Millisecond
		observe  = 15 * QueuePollInterval
		// The windows are counted in polls, the autoscaler's samples: 10s
		// and 20s at the local suite's 2s polls. With the deployed default
		// of 10s (kind), a window of 10s would hold one sample, and any
		// poll in a high phase would scale up.
		upWindow   = 5 * QueuePollInterval
		downWindow = 10 * QueuePollInterval
		settledFor = downWindow + 2*QueuePollInterval // past the longer window and a poll after it
		maxChanges = 1
	)
	l := newLoop(t, "hover", 1, func(ld *loopsv1alpha1.LoopDeployment) {
		ld.Spec.Autoscaling = &loopsv1alpha1.AutoscalingSpec{
			MinReplicas: ptr.To[int32](1), MaxReplicas: 4, TargetBacklogPerReplica: ptr.To[int32](target),
			Behavior: &loopsv1alpha1.AutoscalingBehavior{
				ScaleUp:   &loopsv1alpha1.ScalingRules{StabilizationWindowSeconds: ptr.To[int32](int32(upWindow / time.Second))},
				ScaleDown: &loopsv1alpha1.ScalingRules{StabilizationWindowSeconds: ptr.To[int32](int32(downWindow / time.Second))},
			},
		}
	})
	watch := l.watchPods(2)
	trail := l.trackReplicas()
	demand := l.trackDemand()

	// The producer runs in the test's goroutine: each tick it submits the
	// tasks of 800-1200 ms the phase's rate owes, until done says stop.
	next, owed, begin := 0, 0.0, time.Now()
	ticker := time.NewTicker(tick)
	defer ticker.Stop()
	produce := func(what string, limit time.Duration, done func() bool) {
		deadline := time.Now().Add(limit)
		for !done() {
			if time.Now().After(deadline) {
				t.Fatalf("producing for %s: not done after %s; replicas (spec/ready) %s", what, limit, trail)
			}
			rate := lowRate
			if time.Since(begin)/phase%2 == 0 {
				rate = highRate
			}
			for owed += rate * tick.Seconds(); owed >= 1; owed-- {
				ms := taskMs - 200 + mrand.IntN(401)
				l.submit(fmt.Sprintf("hover-%d", next), kindSink, fmt.Sprintf(`{"ms": %d}`, ms))
				next++
			}
			select {
			case <-t.Context().Done():
				t.Fatal(t.Context().Err())
			case <-ticker.C:
			}
		}
	}

	produce("the count to settle", 5*settledFor, func() bool { return trail.settled(k-1, settledFor) })
	start := time.Now()
	settledAt := trail.last().spec
	t.Logf("settled at %d replicas after %d tasks; observing %s", settledAt, next, observe)
	produce("the observation window", observe+time.Minute, func() bool { return time.Since(start) >= observe })
	changes := trail.changesSince(start)
	t.Logf("submitted %d tasks; %d changes in the window of %s", next, changes, observe)
	// A count above k+1 is right only while the queue asks for it: it
	// holds while a recommendation of the scale-down window (and a poll
	// either side) does, which needs more than count-1 times the target
	// in the stream. The test reads the stream itself for that.
	peak, readings, failed := demand.peak(start.Add(-downWindow-2*QueuePollInterval), start)
	demand.stop()
	justified := int32(k + 1)
	if readings > 0 {
		justified = max(justified, int32(math.Ceil(float64(peak)/target)))
	}
	t.Logf("the stream held at most %d tasks in the %s before the count settled (%d readings, %d failed in all): up to %d replicas are justified",
		peak, downWindow+2*QueuePollInterval, readings, failed, justified)

	sum := l.waitAllAccounted(3 * time.Minute)
	trail.stop(t)
	t.Logf("replicas (spec, ready): %s", trail)
	l.logAutoscaling()
	watch.check(t)
	if sum.Duplicates > 0 {
		t.Errorf("%d tasks ran twice; with drains only the bound is 0", sum.Duplicates)
	}
	if changes > maxChanges {
		t.Errorf("the replica count changed %d times in %s at a steady load (at most %d allowed): it flaps", changes, observe, maxChanges)
	}
	if settledAt < k-1 || settledAt > justified {
		t.Errorf("settled at %d replicas; the load asks for about %d, and at most %d tasks in the stream before it settled justify at most %d",
			settledAt, k, peak, justified)
	}
}

// waitZero waits until the loop has zero replicas and no pods.
func (l *loop) waitZero(what string) {
	l.t.Helper()
	eventually(l.t, 2*time.Minute, what+" to go to zero pods", func() (bool, error) {
		ld := l.get()
		return *ld.Spec.Replicas == 0 && ld.Status.Replicas == 0 && len(l.pods()) == 0, nil
	})
}

// deletedPods returns the pods the watch saw deleted.
func (w *podWatch) deletedPods() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.deleted)
}

// replicaPoint is the loop's replicas at one moment.
type replicaPoint struct {
	at          time.Time
	spec, ready int32
}

// replicaTrail records each change of a loop's spec.replicas and
// status.readyReplicas, from a watch on its LoopDeployment: every update
// is seen, however short-lived.
type replicaTrail struct {
	mu     sync.Mutex
	start  time.Time
	points []replicaPoint
	halt   func() error
}

// trackReplicas starts recording the loop's replicas until stop (or the
// end of the test).
func (l *loop) trackReplicas() *replicaTrail {
	l.t.Helper()
	r := &replicaTrail{start: time.Now()}
	r.halt = l.watchLD(func(ld *loopsv1alpha1.LoopDeployment) {
		if ld.Spec.Replicas == nil {
			return
		}
		p := replicaPoint{at: time.Now(), spec: *ld.Spec.Replicas, ready: ld.Status.ReadyReplicas}
		r.mu.Lock()
		defer r.mu.Unlock()
		if n := len(r.points); n == 0 || r.points[n-1].spec != p.spec || r.points[n-1].ready != p.ready {
			r.points = append(r.points, p)
		}
	})
	return r
}

// stop ends the watch; a watch that failed fails the test.
func (r *replicaTrail) stop(t *testing.T) {
	t.Helper()
	if err := r.halt(); err != nil {
		t.Error(err)
	}
}

// watchLD calls seen with the loop's LoopDeployment as it is now and then
// with each version of it a watch delivers, in order, on the watch's
// goroutine, until the returned stop (also a clean-up of the test), which
// returns the watch's error if it failed.
func (l *loop) watchLD(seen func(*loopsv1alpha1.LoopDeployment)) (stop func() error) {
	l.t.Helper()
	dc, err := dynamic.NewForConfig(env.Config)
	if err != nil {
		l.t.Fatal(err)
	}
	cur := l.get()
	gvr := loopsv1alpha1.GroupVersion.WithResource("loopdeployments")
	w, err := dc.Resource(gvr).Namespace(l.ns).Watch(l.t.Context(), metav1.ListOptions{
		FieldSelector: "metadata.name=" + l.name, ResourceVersion: cur.ResourceVersion})
	if err != nil {
		l.t.Fatal(err)
	}
	seen(cur)
	var (
		mu       sync.Mutex
		werr     error
		stopping = make(chan struct{})
		done     = make(chan struct{})
		once     sync.Once
	)
	fail := func(err error) {
		select {
		case <-stopping: // the stream closed by stop
		default:
			mu.Lock()
			werr = err
			mu.Unlock()
		}
	}
	go func() {
		defer close(done)
		for ev := range w.ResultChan() {
			switch ev.Type {
			case watch.Added, watch.Modified:
				u, ok := ev.Object.(*unstructured.Unstructured)
				if !ok {
					continue
				}
				ld := &loopsv1alpha1.LoopDeployment{}
				if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, ld); err != nil {
					fail(fmt.Errorf("decoding a LoopDeployment from the watch: %w", err))
					return
				}
				seen(ld)
			case watch.Error:
				fail(fmt.Errorf("the watch of the LoopDeployment failed: %w", apierrors.FromObject(ev.Object)))
				return
			}
		}
	}()
	stop = func() error {
		once.Do(func() { close(stopping) })
		w.Stop()
		<-done
		mu.Lock()
		defer mu.Unlock()
		return werr
	}
	l.t.Cleanup(func() { _ = stop() })
	return stop
}

func (r *replicaTrail) last() replicaPoint {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.points[len(r.points)-1]
}

func (r *replicaTrail) maxSpec() int32 {
	r.mu.Lock()
	defer r.mu.Unlock()
	var m int32
	for _, p := range r.points {
		m = max(m, p.spec)
	}
	return m
}

func (r *replicaTrail) maxReady() int32 {
	r.mu.Lock()
	defer r.mu.Unlock()
	var m int32
	for _, p := range r.points {
		m = max(m, p.ready)
	}
	return m
}

// settled reports whether spec.replicas is above floor, every pod is
// Ready, and spec.replicas has not changed for d.
func (r *replicaTrail) settled(floor int32, d time.Duration) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := len(r.points)
	if n == 0 {
		return false
	}
	cur := r.points[n-1]
	if cur.spec <= floor || cur.ready != cur.spec {
		return false
	}
	since := r.start
	for i := n - 1; i > 0; i-- {
		if r.points[i].spec != r.points[i-1].spec {
			since = r.points[i].at
			break
		}
	}
	return time.Since(since) >= d
}

// changesSince counts the changes of spec.replicas after t0.
func (r *replicaTrail) changesSince(t0 time.Time) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for i := 1; i < len(r.points); i++ {
		if r.points[i].at.After(t0) && r.points[i].spec != r.points[i-1].spec {
			n++
		}
	}
	return n
}

// String is the trail, e.g. "+0.0s 1/1, +4.2s 6/1, +6.8s 6/6".
func (r *replicaTrail) String() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	parts := make([]string, 0, len(r.points))
	for _, p := range r.points {
		parts = append(parts, fmt.Sprintf("+%.1fs %d/%d", p.at.Sub(r.start).Seconds(), p.spec, p.ready))
	}
	return strings.Join(parts, ", ")
}

// logAutoscaling logs the loop's ScalingActive condition and its
// autoscaler's events (Autoscaled, AutoscalingHeld), oldest first, and
// returns the events. The queue is reachable throughout a scenario, so it
// fails the test unless ScalingActive is True and for any
// AutoscalingHeld.
func (l *loop) logAutoscaling() []eventsv1.Event {
	l.t.Helper()
	ld := l.get()
	c := meta.FindStatusCondition(ld.Status.Conditions, loopsv1alpha1.ConditionScalingActive)
	if c == nil {
		l.t.Error("no ScalingActive condition")
	} else {
		l.t.Logf("ScalingActive=%s %s: %s", c.Status, c.Reason, c.Message)
		if c.Status != metav1.ConditionTrue || c.Reason != loopsv1alpha1.ReasonAutoscaling {
			l.t.Errorf("ScalingActive is %s, reason %s; want True, %s", c.Status, c.Reason, loopsv1alpha1.ReasonAutoscaling)
		}
	}
	list, err := env.Clientset.EventsV1().Events(l.ns).List(l.t.Context(), metav1.ListOptions{})
	if err != nil {
		l.t.Fatalf("listing the events: %v", err)
	}
	var evs []eventsv1.Event
	for _, e := range list.Items {
		if e.Regarding.Kind == "LoopDeployment" && e.Regarding.Name == l.name &&
			(e.Reason == loopsv1alpha1.EventAutoscaled || e.Reason == loopsv1alpha1.EventAutoscalingHeld) {
			evs = append(evs, e)
		}
	}
	slices.SortFunc(evs, func(a, b eventsv1.Event) int { return a.EventTime.Compare(b.EventTime.Time) })
	for _, e := range evs {
		l.t.Logf("event %s %s %s: %s", e.EventTime.UTC().Format("15:04:05.000"), e.Type, e.Reason, e.Note)
		if e.Reason == loopsv1alpha1.EventAutoscalingHeld {
			l.t.Errorf("the autoscaler held the count (%s) though the queue was reachable", e.Note)
		}
	}
	return evs
}

// hasEvent reports whether an event of reason has a note that contains
// part.
func hasEvent(evs []eventsv1.Event, reason, part string) bool {
	return slices.ContainsFunc(evs, func(e eventsv1.Event) bool { return e.Reason == reason && strings.Contains(e.Note, part) })
}

// demandTrail is the loop's queue as the test reads it, not as the
// operator does: the messages in its work-queue stream (pending, in flight
// and delayed, as a work queue keeps a task until it is acknowledged),
// read from NATS about once a second.
type demandTrail struct {
	mu     sync.Mutex
	points []demandPoint
	errs   int
	cancel context.CancelFunc
	done   chan struct{}
}

type demandPoint struct {
	at    time.Time
	tasks uint64
}

// trackDemand starts reading the loop's stream until stop (or the end of
// the test).
func (l *loop) trackDemand() *demandTrail {
	l.t.Helper()
	ctx, cancel := context.WithCancel(l.t.Context())
	d := &demandTrail{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(d.done)
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			read, cancelRead := context.WithTimeout(ctx, 5*time.Second)
			s, err := l.js.Stream(read, l.names.Stream)
			cancelRead()
			d.mu.Lock()
			if err != nil {
				d.errs++
			} else {
				d.points = append(d.points, demandPoint{at: time.Now(), tasks: s.CachedInfo().State.Msgs})
			}
			d.mu.Unlock()
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	l.t.Cleanup(d.stop)
	return d
}

// stop ends the reading and waits for it.
func (d *demandTrail) stop() {
	d.cancel()
	<-d.done
}

// peak is the most tasks read between from and to, and how many readings
// that is of (and how many failed in all).
func (d *demandTrail) peak(from, to time.Time) (tasks uint64, readings, failed int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, p := range d.points {
		if !p.at.Before(from) && !p.at.After(to) {
			tasks = max(tasks, p.tasks)
			readings++
		}
	}
	return tasks, readings, d.errs
}
