package loop_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr/funcr"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"

	"github.com/tenire/loop-operator/internal/natstest"
	"github.com/tenire/loop-operator/worker/checkpoint"
	"github.com/tenire/loop-operator/worker/loop"
	"github.com/tenire/loop-operator/worker/pool"
	"github.com/tenire/loop-operator/worker/queue"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const (
	stream = "LOOP_test_demo"
	prefix = "loops.test.demo"
)

var names = queue.NewNames(stream, prefix)

// env is a NATS server with the loop's streams and a producer.
type env struct {
	srv      *natstest.Server
	js       jetstream.JetStream
	producer *queue.Producer
}

func newEnv(t *testing.T) *env {
	t.Helper()
	srv := natstest.Start(t)
	_, js := srv.Connect()
	return &env{srv: srv, js: js, producer: queue.NewProducer(js, names)}
}

func (e *env) config(t *testing.T) loop.Config {
	return loop.Config{
		Name:          t.Name(),
		NATSURL:       e.srv.URL,
		ReconnectWait: 20 * time.Millisecond,
		Stream:        stream,
		SubjectPrefix: prefix,
		MaxWorkers:    4,
		AckWait:       2 * time.Second,
		FetchWait:     100 * time.Millisecond,
		DrainTimeout:  10 * time.Second,
		AdminAddr:     "127.0.0.1:0",
		EnsureQueue:   true,
		Retry:         queue.RetryPolicy{InitialBackoff: 20 * time.Millisecond, MaxBackoff: 100 * time.Millisecond},
		Logger: funcr.New(func(prefix, args string) { t.Log(prefix, args) }, funcr.Options{
			Verbosity: 0,
		}),
	}
}

func (e *env) submit(t *testing.T, tasks ...queue.Task) {
	t.Helper()
	if err := e.producer.SubmitBatch(t.Context(), tasks); err != nil {
		t.Fatal(err)
	}
}

// running is a loop whose Run runs in the background.
type running struct {
	*loop.Loop
	cancel context.CancelFunc
	result chan error
}

// start runs a loop until the test ends and waits until it is Running.
func start(t *testing.T, cfg loop.Config, handlers map[string]loop.Handler) *running {
	t.Helper()
	l, err := loop.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return startLoop(t, l, handlers)
}

// startLoop registers handlers on l and runs it like start.
func startLoop(t *testing.T, l *loop.Loop, handlers map[string]loop.Handler) *running {
	t.Helper()
	for kind, h := range handlers {
		l.Handle(kind, h)
	}
	ctx, cancel := context.WithCancel(t.Context())
	r := &running{Loop: l, cancel: cancel, result: make(chan error, 1)}
	go func() { r.result <- l.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-r.result:
			r.result <- err
		case <-time.After(30 * time.Second):
			t.Error("Run did not return within 30s of cancelling its context")
		}
	})
	select {
	case <-l.Ready():
	case err := <-r.result:
		t.Fatalf("Run returned before Running: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("loop not Running after 10s")
	}
	return r
}

// stop cancels Run's context and returns Run's result.
func (r *running) stop(t *testing.T) error {
	t.Helper()
	r.cancel()
	select {
	case err := <-r.result:
		r.result <- err // for the cleanup
		return err
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return within 30s")
		return nil
	}
}

// eventually polls cond until it holds or fails the test after 20s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.After(20 * time.Second)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-tick.C:
		case <-deadline:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// ledger records which tasks finished successfully.
type ledger struct {
	mu   sync.Mutex
	done map[string]int
}

func newLedger() *ledger { return &ledger{done: map[string]int{}} }

func (l *ledger) add(id string) {
	l.mu.Lock()
	l.done[id]++
	l.mu.Unlock()
}

func (l *ledger) unique() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.done)
}

func (e *env) streamMsgs(t *testing.T, name string) uint64 {
	t.Helper()
	s, err := e.js.Stream(t.Context(), name)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

func tasks(kind string, n int, idPrefix string) []queue.Task {
	out := make([]queue.Task, n)
	for i := range out {
		out[i] = queue.Task{ID: fmt.Sprintf("%s-%d", idPrefix, i), Kind: kind, Payload: []byte(strconv.Itoa(i))}
	}
	return out
}

func TestTasksRunAndAreAcked(t *testing.T) {
	e := newEnv(t)
	done := newLedger()
	l := start(t, e.config(t), map[string]loop.Handler{
		"echo": func(ctx context.Context, task *loop.Task) error {
			if task.Attempt != 1 || task.Checkpoint != nil {
				return fmt.Errorf("fresh task came as attempt %d with checkpoint %q", task.Attempt, task.Checkpoint)
			}
			done.add(task.ID)
			return nil
		},
	})
	e.submit(t, tasks("echo", 50, "t")...)
	eventually(t, "50 tasks to succeed", func() bool { return l.Status().Counters[loop.OutcomeSucceeded] == 50 })
	if got := done.unique(); got != 50 {
		t.Errorf("handled %d distinct tasks, want 50", got)
	}
	eventually(t, "the work queue to empty", func() bool { return e.streamMsgs(t, stream) == 0 })
	if err := l.stop(t); err != nil {
		t.Errorf("Run = %v, want nil after a clean drain", err)
	}
	if s := l.Status(); s.State != "Stopped" || s.Drain == nil || s.Drain.Cause != "context" {
		t.Errorf("after stop status = %+v", s)
	}
}

func TestRetryBackoffAndDeadLetter(t *testing.T) {
	e := newEnv(t)
	cfg := e.config(t)
	cfg.Retry = queue.RetryPolicy{MaxAttempts: 3, InitialBackoff: 200 * time.Millisecond, MaxBackoff: time.Second}
	cfg.BreakerThreshold = -1
	var (
		mu       sync.Mutex
		attempts = map[string][]time.Time{}
	)
	start(t, cfg, map[string]loop.Handler{
		"flaky": func(ctx context.Context, task *loop.Task) error {
			mu.Lock()
			attempts[task.ID] = append(attempts[task.ID], time.Now())
			mu.Unlock()
			return errors.New("boom " + strconv.FormatUint(task.Attempt, 10))
		},
		"bad": func(ctx context.Context, task *loop.Task) error {
			return fmt.Errorf("payload is not JSON: %w", loop.ErrPermanent)
		},
	})
	e.submit(t, queue.Task{ID: "f", Kind: "flaky"}, queue.Task{ID: "b", Kind: "bad"}, queue.Task{ID: "u", Kind: "unknown"})
	eventually(t, "three dead letters", func() bool { return e.streamMsgs(t, names.DeadStream) == 3 })

	mu.Lock()
	at := attempts["f"]
	mu.Unlock()
	if len(at) != 3 {
		t.Fatalf("flaky task ran %d times, want MaxAttempts 3", len(at))
	}
	// Equal jitter: the wait after attempt n is at least half of
	// InitialBackoff*2^(n-1).
	for i, min := range []time.Duration{100 * time.Millisecond, 200 * time.Millisecond} {
		if gap := at[i+1].Sub(at[i]); gap < min {
			t.Errorf("retry %d came after %s, want at least %s", i+1, gap, min)
		}
	}
	dead, err := e.js.Stream(t.Context(), names.DeadStream)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]struct {
		attempts string
		err      string
	}{
		"f": {"3", "boom 3"},
		"b": {"1", "payload is not JSON: permanent failure"},
		"u": {"3", `no handler for task kind "unknown"`},
	}
	for seq := uint64(1); seq <= 3; seq++ {
		m, err := dead.GetMsg(t.Context(), seq)
		if err != nil {
			t.Fatal(err)
		}
		id := m.Header.Get(queue.HeaderTaskID)
		w, ok := want[id]
		if !ok {
			t.Errorf("unexpected dead letter %q", id)
			continue
		}
		if got := m.Header.Get(queue.HeaderAttempts); got != w.attempts {
			t.Errorf("dead letter %s has %s attempts, want %s", id, got, w.attempts)
		}
		if got := m.Header.Get(queue.HeaderError); got != w.err {
			t.Errorf("dead letter %s has error %q, want %q", id, got, w.err)
		}
	}
	// A dead letter is published before its task is acked.
	eventually(t, "the dead-lettered tasks to leave the work queue", func() bool { return e.streamMsgs(t, stream) == 0 })
}

func TestBreakerOpensHalfOpensAndCloses(t *testing.T) {
	e := newEnv(t)
	cfg := e.config(t)
	cfg.MaxWorkers = 1
	cfg.BreakerThreshold = 2
	cfg.BreakerCooldown = 300 * time.Millisecond
	cfg.Retry = queue.RetryPolicy{MaxAttempts: 100, InitialBackoff: 10 * time.Millisecond, MaxBackoff: 10 * time.Millisecond}
	var healthy atomic.Bool
	succeeded := make(chan string, 10)
	l := start(t, cfg, map[string]loop.Handler{
		"dep": func(ctx context.Context, task *loop.Task) error {
			if !healthy.Load() {
				return errors.New("dependency down")
			}
			succeeded <- task.ID
			return nil
		},
	})
	e.submit(t, queue.Task{ID: "a", Kind: "dep"}, queue.Task{ID: "b", Kind: "dep"})
	eventually(t, "the breaker to open", func() bool { return l.Status().Breakers["dep"] == "Open" })
	eventually(t, "tasks to be deferred while open", func() bool { return l.Status().Counters[loop.OutcomeDeferred] > 0 })
	healthy.Store(true)
	for range 2 {
		select {
		case <-succeeded:
		case <-time.After(20 * time.Second):
			t.Fatal("tasks did not succeed after the dependency recovered")
		}
	}
	if got := l.Status().Breakers["dep"]; got != "Closed" {
		t.Errorf("breaker after a successful probe = %s, want Closed", got)
	}
}

func TestHeartbeatsKeepLongTasksFromRedelivery(t *testing.T) {
	e := newEnv(t)
	cfg := e.config(t)
	cfg.AckWait = time.Second
	var runs atomic.Int64
	done := make(chan struct{})
	start(t, cfg, map[string]loop.Handler{
		"long": func(ctx context.Context, task *loop.Task) error {
			runs.Add(1)
			t := time.NewTimer(2500 * time.Millisecond) // several AckWaits of real work
			defer t.Stop()
			select {
			case <-t.C:
			case <-ctx.Done():
				return ctx.Err()
			}
			close(done)
			return nil
		},
	})
	e.submit(t, queue.Task{ID: "long", Kind: "long"})
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("long task did not finish")
	}
	if n := runs.Load(); n != 1 {
		t.Errorf("long task ran %d times, want 1: heartbeats must stop redelivery", n)
	}
}

// fakePod is a Pod source driven by the test.
type fakePod struct {
	request chan time.Time
	reports chan loop.DrainReport
}

func (p *fakePod) WaitForDrain(ctx context.Context) (time.Time, error) {
	select {
	case d := <-p.request:
		return d, nil
	case <-ctx.Done():
		return time.Time{}, ctx.Err()
	}
}

func (p *fakePod) ReportDrained(_ context.Context, r loop.DrainReport) error {
	p.reports <- r
	return nil
}

// TestASIGTERMDrainIsReportedOnlyWhenItHeldATask: a worker stopped by
// SIGTERM (its context) while idle exits without a Drained report (its
// pod is being deleted; nobody reads it); one that held a task reports.
func TestASIGTERMDrainIsReportedOnlyWhenItHeldATask(t *testing.T) {
	e := newEnv(t)
	for _, held := range []bool{false, true} {
		pod := &fakePod{request: make(chan time.Time, 1), reports: make(chan loop.DrainReport, 1)}
		cfg := e.config(t)
		cfg.Pod = pod
		release := make(chan struct{})
		started := make(chan struct{}, 1)
		r := start(t, cfg, map[string]loop.Handler{"hold": func(ctx context.Context, _ *loop.Task) error {
			started <- struct{}{}
			<-release
			return nil
		}})
		if held {
			e.submit(t, queue.Task{ID: "held", Kind: "hold"})
			<-started
			time.AfterFunc(100*time.Millisecond, func() { close(release) })
		}
		if err := r.stop(t); err != nil {
			t.Fatalf("Run after SIGTERM (held %v): %v", held, err)
		}
		select {
		case rep := <-pod.reports:
			if !held {
				t.Errorf("an idle worker stopped by SIGTERM reported %+v; want no report", rep)
			} else if rep.Cause != loop.DrainCauseContext || rep.Finished != 1 {
				t.Errorf("report = %+v; want cause context, 1 finished", rep)
			}
		default:
			if held {
				t.Error("a worker stopped by SIGTERM while holding a task made no Drained report")
			}
		}
		if !held {
			close(release)
		}
	}
}

// TestAWorkerDrainedBeforeItsPodAskedReportsAgainWhenAsked: a worker
// drained through the API (as POST /drain does) reports, idles, and when
// its pod is asked to drain later (the operator removed the old report
// first) reports the same drain again, however many other triggers came
// in between.
func TestAWorkerDrainedBeforeItsPodAskedReportsAgainWhenAsked(t *testing.T) {
	e := newEnv(t)
	pod := &fakePod{request: make(chan time.Time, 1), reports: make(chan loop.DrainReport, 1)}
	cfg := e.config(t)
	cfg.Pod = pod
	r := start(t, cfg, map[string]loop.Handler{"noop": func(context.Context, *loop.Task) error { return nil }})
	e.submit(t, queue.Task{ID: "one", Kind: "noop"})
	r.RequestDrain(time.Now().Add(time.Minute))
	awaitReport := func(what string) loop.DrainReport {
		t.Helper()
		select {
		case rep := <-pod.reports:
			return rep
		case <-time.After(20 * time.Second):
			t.Fatalf("no Drained report %s", what)
		}
		return loop.DrainReport{}
	}
	first := awaitReport("for the drain through the API")
	if first.Cause != loop.DrainCauseAPI {
		t.Fatalf("first report = %+v; want cause %s", first, loop.DrainCauseAPI)
	}
	for range 3 { // triggers that must not crowd out the pod's request
		r.RequestDrain(time.Now().Add(time.Minute))
	}
	pod.request <- time.Now().Add(time.Minute)
	if again := awaitReport("when the pod was asked to drain"); again != first {
		t.Errorf("second report = %+v; want the first drain's, %+v", again, first)
	}
	if err := r.stop(t); err != nil {
		t.Fatalf("Run: %v", err)
	}
}

func TestDrainFinishesInFlightAndHandsBackTheRest(t *testing.T) {
	e := newEnv(t)
	const fast, stuck, poison = 40, 3, 5
	completed := newLedger()
	var draining atomic.Bool
	handlers := func(worker string) map[string]loop.Handler {
		return map[string]loop.Handler{
			"fast": func(ctx context.Context, task *loop.Task) error {
				completed.add(task.ID)
				return nil
			},
			// stuck tasks never finish on worker A: the drain deadline
			// cancels them and they must be handed back, not lost.
			"stuck": func(ctx context.Context, task *loop.Task) error {
				if worker == "a" {
					<-ctx.Done()
					return ctx.Err()
				}
				completed.add(task.ID)
				return nil
			},
			// slow tasks are running when the drain starts and finish in time.
			"slow": func(ctx context.Context, task *loop.Task) error {
				if worker == "a" {
					for !draining.Load() {
						select {
						case <-ctx.Done():
							return ctx.Err()
						case <-time.After(5 * time.Millisecond):
						}
					}
				}
				completed.add(task.ID)
				return nil
			},
			"poison": func(ctx context.Context, task *loop.Task) error {
				return fmt.Errorf("poison: %w", loop.ErrPermanent)
			},
		}
	}
	pod := &fakePod{request: make(chan time.Time, 1), reports: make(chan loop.DrainReport, 1)}
	cfgA := e.config(t)
	cfgA.Name = "a"
	cfgA.MaxWorkers = 6
	cfgA.Pod = pod
	cfgA.Scheduling = pool.Strict
	a := start(t, cfgA, handlers("a"))

	// A takes the stuck and slow tasks first, then works through the rest.
	e.submit(t, tasks("stuck", stuck, "stuck")...)
	e.submit(t, tasks("slow", 2, "slow")...)
	eventually(t, "worker A to hold the stuck and slow tasks", func() bool {
		s := a.Status()
		return s.InFlightByKind["stuck"] == stuck && s.InFlightByKind["slow"] == 2
	})
	var all []queue.Task
	all = append(all, tasks("fast", fast, "fast")...)
	all = append(all, tasks("poison", poison, "poison")...)
	e.submit(t, all...)
	submitted := fast + stuck + 2 + poison

	draining.Store(true)
	pod.request <- time.Now().Add(700 * time.Millisecond)
	var report loop.DrainReport
	select {
	case report = <-pod.reports:
	case <-time.After(20 * time.Second):
		t.Fatal("worker A never reported Drained")
	}
	if !report.DeadlineExceeded || report.HandedBack < stuck || report.Cause != "pod" {
		t.Errorf("report = %+v, want deadline exceeded, cause pod, at least %d handed back", report, stuck)
	}
	if got := a.State(); got != loop.Drained {
		t.Errorf("worker A state after the drain = %s, want Drained (idle, not exited)", got)
	}
	select {
	case err := <-a.result:
		t.Fatalf("worker A's Run returned (%v) after a pod drain; it must stay up until stopped", err)
	default:
	}
	if resp, err := http.Get("http://" + a.AdminAddr() + "/readyz"); err != nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("readyz of a drained worker = %v, %v; want 503", resp, err)
	} else {
		resp.Body.Close()
	}

	// Worker B finishes what A handed back and what A never took.
	cfgB := e.config(t)
	cfgB.Name = "b"
	start(t, cfgB, handlers("b"))
	eventually(t, "every task to be completed or dead-lettered", func() bool {
		return completed.unique()+int(e.streamMsgs(t, names.DeadStream)) == submitted
	})
	if got := e.streamMsgs(t, names.DeadStream); got != poison {
		t.Errorf("dead letters = %d, want %d", got, poison)
	}
	eventually(t, "the work queue to empty", func() bool { return e.streamMsgs(t, stream) == 0 })
	if err := a.stop(t); err != nil {
		t.Errorf("worker A's Run = %v", err)
	}
}

func TestCheckpointResumesAfterHandBack(t *testing.T) {
	e := newEnv(t)
	const steps = 10
	resumedFrom := make(chan int, 1)
	count := func(pauseAt int) loop.Handler {
		return func(ctx context.Context, task *loop.Task) error {
			from := 0
			if task.Checkpoint != nil {
				from, _ = strconv.Atoi(string(task.Checkpoint))
				resumedFrom <- from
			}
			for i := from + 1; i <= steps; i++ {
				if i == pauseAt {
					<-ctx.Done() // worker A stops here until the drain deadline
					return ctx.Err()
				}
				if err := task.SaveCheckpoint(ctx, []byte(strconv.Itoa(i))); err != nil {
					return err
				}
			}
			return nil
		}
	}
	cfgA := e.config(t)
	cfgA.Name = "a"
	a := start(t, cfgA, map[string]loop.Handler{"count": count(6)})
	e.submit(t, queue.Task{ID: "count-1", Kind: "count"})
	store, err := checkpoint.Open(t.Context(), e.js, names.CheckpointBucket)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "the task to checkpoint step 5", func() bool {
		cp, _ := store.Load(t.Context(), "count-1")
		return string(cp) == "5"
	})
	a.RequestDrain(time.Now().Add(100 * time.Millisecond))
	eventually(t, "worker A to drain", func() bool { return a.State() == loop.Drained })
	if s := a.Status(); s.Drain == nil || s.Drain.HandedBack != 1 {
		t.Fatalf("worker A drain report = %+v, want one task handed back", s.Drain)
	}

	cfgB := e.config(t)
	cfgB.Name = "b"
	b := start(t, cfgB, map[string]loop.Handler{"count": count(-1)})
	select {
	case from := <-resumedFrom:
		if from != 5 {
			t.Errorf("the redelivered task resumed from %d, want 5", from)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the task was not redelivered with its checkpoint")
	}
	eventually(t, "worker B to finish the task", func() bool { return b.Status().Counters[loop.OutcomeSucceeded] == 1 })
	eventually(t, "the checkpoint to be deleted", func() bool {
		cp, err := store.Load(t.Context(), "count-1")
		return err == nil && cp == nil
	})
}

func TestNATSRestartUnderLoadLosesNothing(t *testing.T) {
	e := newEnv(t)
	cfg := e.config(t)
	cfg.AckWait = time.Second
	cfg.MaxWorkers = 8
	completed := newLedger()
	start(t, cfg, map[string]loop.Handler{
		"work": func(ctx context.Context, task *loop.Task) error {
			select {
			case <-time.After(2 * time.Millisecond):
			case <-ctx.Done():
				return ctx.Err()
			}
			completed.add(task.ID)
			return nil
		},
	})
	const total = 400
	submitOne := func(i int) {
		t.Helper()
		task := queue.Task{ID: fmt.Sprintf("w-%d", i), Kind: "work"}
		deadline := time.Now().Add(20 * time.Second)
		for {
			ctx, cancel := context.WithTimeout(t.Context(), time.Second)
			_, _, err := e.producer.Submit(ctx, task)
			cancel()
			if err == nil {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("submitting %s: %v", task.ID, err)
			}
		}
	}
	for i := range total / 2 {
		submitOne(i)
	}
	eventually(t, "some tasks to complete before the restart", func() bool { return completed.unique() > 20 })
	e.srv.Restart()
	for i := total / 2; i < total; i++ {
		submitOne(i)
	}
	eventually(t, "every task to complete after the restart", func() bool { return completed.unique() == total })
}

func TestAdminEndpoints(t *testing.T) {
	e := newEnv(t)
	l := start(t, e.config(t), map[string]loop.Handler{
		"echo": func(context.Context, *loop.Task) error { return nil },
	})
	e.submit(t, queue.Task{ID: "x", Kind: "echo"})
	eventually(t, "the task to succeed", func() bool { return l.Status().Counters[loop.OutcomeSucceeded] == 1 })
	base := "http://" + l.AdminAddr()
	get := func(method, path string) (int, string) {
		t.Helper()
		req, err := http.NewRequestWithContext(t.Context(), method, base+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	tests := []struct {
		name, method, path string
		wantCode           int
		wantBody           string
	}{
		{"healthz answers ok", "GET", "/healthz", 200, "ok"},
		{"readyz answers ok while running and connected", "GET", "/readyz", 200, "ok"},
		{"metrics count tasks by kind and outcome", "GET", "/metrics", 200, `tenire_loop_tasks_total{kind="echo",outcome="succeeded"} 1`},
		{"metrics have the queue-wait histogram", "GET", "/metrics", 200, "tenire_loop_task_queue_wait_seconds_bucket"},
		{"metrics have the pool size", "GET", "/metrics", 200, "tenire_loop_pool_workers"},
		{"status reports the state", "GET", "/status", 200, `"state": "Running"`},
		{"drain refuses GET", "GET", "/drain", 405, ""},
		{"drain rejects a bad timeout", "POST", "/drain?timeout=soon", 400, "bad timeout"},
		{"drain accepts POST", "POST", "/drain?timeout=1s", 202, `"drain":"requested"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body := get(tt.method, tt.path)
			if code != tt.wantCode || !strings.Contains(body, tt.wantBody) {
				t.Errorf("%s %s = %d %q, want %d containing %q", tt.method, tt.path, code, body, tt.wantCode, tt.wantBody)
			}
		})
	}
	eventually(t, "the drain requested over HTTP", func() bool { return l.State() == loop.Drained })
	code, body := get("GET", "/status")
	var st loop.Status
	if err := json.Unmarshal([]byte(body), &st); err != nil || code != 200 {
		t.Fatalf("status = %d %s: %v", code, body, err)
	}
	if st.State != "Drained" || st.Drain == nil || st.Drain.Cause != "http" || st.Counters["succeeded"] != 1 {
		t.Errorf("status after the drain = %+v", st)
	}
	if code, _ := get("GET", "/readyz"); code != 503 {
		t.Errorf("readyz after the drain = %d, want 503", code)
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	good := loop.Config{NATSURL: "nats://x", Stream: "S", SubjectPrefix: "p"}
	tests := []struct {
		name   string
		change func(*loop.Config)
	}{
		{"a config without a NATS URL is rejected", func(c *loop.Config) { c.NATSURL = "" }},
		{"a stream name with a dot is rejected", func(c *loop.Config) { c.Stream = "a.b" }},
		{"an upper-case priority is rejected", func(c *loop.Config) { c.Priorities = []pool.Class{{Name: "High"}} }},
		{"more minimum than maximum workers is rejected", func(c *loop.Config) { c.MinWorkers, c.MaxWorkers = 5, 2 }},
		{"a kind limit of zero is rejected", func(c *loop.Config) { c.KindLimits = map[string]int{"x": 0} }},
		{"a tiny AckWait is rejected", func(c *loop.Config) { c.AckWait = time.Millisecond }},
		{"a prefetch below PrefetchOff is rejected", func(c *loop.Config) { c.Prefetch = loop.PrefetchOff - 1 }},
		{"a negative stuck grace is rejected", func(c *loop.Config) { c.StuckGrace = -time.Second }},
		{"a negative abort grace is rejected", func(c *loop.Config) { c.AbortGrace = -time.Second }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := good
			tt.change(&c)
			if _, err := loop.New(c); !errors.Is(err, loop.ErrInvalidConfig) {
				t.Errorf("New = %v, want ErrInvalidConfig", err)
			}
		})
	}
	if _, err := loop.New(good); err != nil {
		t.Errorf("New(good) = %v", err)
	}
}

// TestASlowWorkerDoesNotHoardTasksAnIdleOneCouldRun: two workers with the
// default prefetch on one queue, one slowed down (500ms a task), one fast
// (5ms). Once each has seen its tasks, the slow one holds no more than its
// pool and one task (the sizer gives 2 × pool × round trip ÷ task, which
// stays under 1.5 for round trips under 47ms, even on a loaded machine),
// while the fast one prefetches and runs most of a burst: the adaptive
// prefetch never lets a busy pod sit on tasks that an idle pod could run.
// (A fixed prefetch of a pool would let the slow one hold twice its pool.)
func TestASlowWorkerDoesNotHoardTasksAnIdleOneCouldRun(t *testing.T) {
	e := newEnv(t)
	const workers = 8
	var ranSlow, ranFast atomic.Int64
	handler := func(d time.Duration, ran *atomic.Int64) loop.Handler {
		return func(ctx context.Context, _ *loop.Task) error {
			t := time.NewTimer(d)
			defer t.Stop()
			select {
			case <-t.C:
				ran.Add(1)
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
	cfg := e.config(t)
	cfg.MinWorkers, cfg.MaxWorkers = workers, workers
	cfgSlow, cfgFast := cfg, cfg
	cfgSlow.Name, cfgFast.Name = "slow", "fast"
	slow := start(t, cfgSlow, map[string]loop.Handler{"work": handler(500*time.Millisecond, &ranSlow)})
	fast := start(t, cfgFast, map[string]loop.Handler{"work": handler(5*time.Millisecond, &ranFast)})

	// Warm up: both see tasks of their speed.
	e.submit(t, tasks("work", 4*workers, "warm")...)
	eventually(t, "the warm-up tasks to run", func() bool { return ranSlow.Load()+ranFast.Load() == 4*workers })
	if ranSlow.Load() == 0 {
		// Each must have seen a task; the slow one takes what it can.
		e.submit(t, tasks("work", 2*workers, "warm2")...)
		eventually(t, "the slow worker to run a task", func() bool { return ranSlow.Load() > 0 })
	}
	eventually(t, "the fast worker to prefetch", func() bool { return fast.Prefetch() > 0 })
	if got := slow.Prefetch(); got > 1 {
		t.Errorf("the slow worker's prefetch = %d, want at most 1 for tasks of 500ms", got)
	}

	// The burst: the slow worker's holding is sampled until it is over.
	slowBefore, fastBefore := ranSlow.Load(), ranFast.Load()
	const burst = 10 * workers
	stop := make(chan struct{})
	peak := make(chan int, 1)
	go func() {
		most := 0
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		for {
			most = max(most, slow.Status().InFlightByKind["work"])
			select {
			case <-stop:
				peak <- most
				return
			case <-tick.C:
			}
		}
	}()
	e.submit(t, tasks("work", burst, "burst")...)
	eventually(t, "the burst to run", func() bool { return ranSlow.Load()+ranFast.Load()-slowBefore-fastBefore == burst })
	close(stop)
	held := <-peak
	bySlow, byFast := ranSlow.Load()-slowBefore, ranFast.Load()-fastBefore
	t.Logf("burst of %d: the slow worker ran %d (holding at most %d at once), the fast one %d", burst, bySlow, held, byFast)
	if held > workers+1 {
		t.Errorf("the slow worker held %d tasks at once; its pool is %d and its prefetch should be 0 or 1", held, workers)
	}
	if byFast < burst/2 {
		t.Errorf("the fast worker ran %d of %d tasks; the slow one kept too many from it", byFast, burst)
	}
}

// TestPrefetchedTasksGoBackWhenTheTasksTurnLong: a worker that prefetched
// while its tasks were short, and whose pool then fills with long ones,
// hands back what it holds beyond them within a heartbeat tick, and an
// idle worker runs those tasks while the long ones still run.
func TestPrefetchedTasksGoBackWhenTheTasksTurnLong(t *testing.T) {
	e := newEnv(t)
	const workers = 2
	release := make(chan struct{})
	defer close(release)
	var longOnA, longOnB atomic.Int64
	cfg := e.config(t)
	cfg.MinWorkers, cfg.MaxWorkers = workers, workers
	cfgA, cfgB := cfg, cfg
	cfgA.Name, cfgB.Name = "a", "b"
	a := start(t, cfgA, map[string]loop.Handler{
		"noop": func(context.Context, *loop.Task) error { return nil },
		"long": func(ctx context.Context, _ *loop.Task) error {
			longOnA.Add(1)
			select {
			case <-release:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		},
	})
	e.submit(t, tasks("noop", 40, "warm")...)
	eventually(t, "worker a to prefetch a whole pool for no-op tasks", func() bool { return a.Prefetch() == workers })
	// The warm-up may hand back a no-op task or two (the size moves while
	// it is measured): only hand-backs after it count.
	eventually(t, "the warm-up's tasks to finish", func() bool { return a.Status().Counters[loop.OutcomeSucceeded] == 40 })
	before := a.Status().Counters[loop.OutcomeHandedBack]

	// a takes its pool of long tasks and a prefetch behind them.
	held := make(chan int, 1)
	stop := make(chan struct{})
	go func() {
		most := 0
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for {
			most = max(most, a.Status().InFlightByKind["long"])
			select {
			case <-stop:
				held <- most
				return
			case <-tick.C:
			}
		}
	}()
	e.submit(t, tasks("long", 2*workers, "long")...)
	eventually(t, "worker a to hand back what it prefetched", func() bool {
		return a.Status().Counters[loop.OutcomeHandedBack] > before
	})
	close(stop)
	if most := <-held; most <= workers {
		t.Fatalf("worker a held at most %d long tasks, its pool; it did not prefetch, so the test shows nothing", most)
	}
	start(t, cfgB, map[string]loop.Handler{"long": func(context.Context, *loop.Task) error {
		longOnB.Add(1)
		return nil
	}})
	eventually(t, "worker b to run the tasks worker a did not start", func() bool { return longOnB.Load() == workers })
	if n := longOnA.Load(); n != workers {
		t.Errorf("worker a started %d long tasks, want its pool of %d", n, workers)
	}
}

func TestDrainHandsBackPrefetchedTasksAtOnce(t *testing.T) {
	e := newEnv(t)
	cfg := e.config(t)
	cfg.MinWorkers, cfg.MaxWorkers, cfg.Prefetch = 1, 1, 3
	release := make(chan struct{})
	l := start(t, cfg, map[string]loop.Handler{
		"block": func(ctx context.Context, task *loop.Task) error {
			select {
			case <-release:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		},
	})
	e.submit(t, tasks("block", 6, "b")...)
	eventually(t, "the worker to hold one running and three prefetched tasks", func() bool {
		s := l.Status()
		return s.Pool.Running == 1 && s.Pool.Queued == 3
	})
	if n := l.Status().InFlightByKind["block"]; n != 4 {
		t.Fatalf("held %d tasks, want MaxWorkers+Prefetch = 4", n)
	}
	l.RequestDrain(time.Now().Add(time.Minute))
	eventually(t, "the prefetched tasks to be handed back while the running one goes on", func() bool {
		return l.Status().Counters[loop.OutcomeHandedBack] == 3
	})
	if got := l.State(); got != loop.Draining {
		t.Errorf("state with a task still running = %s, want Draining", got)
	}
	close(release)
	eventually(t, "the drain to complete", func() bool { return l.State() == loop.Drained })
	if d := l.Status().Drain; d == nil || d.Finished != 1 || d.HandedBack != 3 || d.DeadlineExceeded {
		t.Errorf("drain report = %+v, want 1 finished, 3 handed back, deadline met", d)
	}
}

func TestKindLimitHoldsAcrossTheLoop(t *testing.T) {
	e := newEnv(t)
	cfg := e.config(t)
	cfg.MaxWorkers, cfg.Prefetch = 4, 4
	cfg.KindLimits = map[string]int{"limited": 1}
	var (
		mu      sync.Mutex
		running = map[string]int{}
		peak    = map[string]int{}
	)
	work := func(ctx context.Context, task *loop.Task) error {
		mu.Lock()
		running[task.Kind]++
		peak[task.Kind] = max(peak[task.Kind], running[task.Kind])
		mu.Unlock()
		defer func() {
			mu.Lock()
			running[task.Kind]--
			mu.Unlock()
		}()
		select {
		case <-time.After(20 * time.Millisecond):
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	l := start(t, cfg, map[string]loop.Handler{"limited": work, "free": work})
	e.submit(t, append(tasks("limited", 10, "l"), tasks("free", 20, "f")...)...)
	eventually(t, "all tasks to succeed", func() bool { return l.Status().Counters[loop.OutcomeSucceeded] == 30 })
	mu.Lock()
	defer mu.Unlock()
	if peak["limited"] != 1 {
		t.Errorf("the limited kind peaked at %d running tasks, want its limit 1", peak["limited"])
	}
	if peak["free"] < 2 {
		t.Errorf("the unlimited kind peaked at %d running tasks, want it to use the other workers", peak["free"])
	}
}

func TestTaskTimeoutFailsTheAttempt(t *testing.T) {
	e := newEnv(t)
	cfg := e.config(t)
	cfg.TaskTimeout = 100 * time.Millisecond
	cfg.Retry = queue.RetryPolicy{MaxAttempts: 2, InitialBackoff: 10 * time.Millisecond, MaxBackoff: 10 * time.Millisecond}
	var attempts atomic.Int64
	start(t, cfg, map[string]loop.Handler{
		"hang": func(ctx context.Context, task *loop.Task) error {
			attempts.Add(1)
			<-ctx.Done()
			return ctx.Err()
		},
	})
	e.submit(t, queue.Task{ID: "h", Kind: "hang"})
	eventually(t, "the hanging task to be dead-lettered", func() bool { return e.streamMsgs(t, names.DeadStream) == 1 })
	dead, err := e.js.Stream(t.Context(), names.DeadStream)
	if err != nil {
		t.Fatal(err)
	}
	m, err := dead.GetMsg(t.Context(), 1)
	if err != nil {
		t.Fatal(err)
	}
	if got := m.Header.Get(queue.HeaderError); !strings.Contains(got, "timed out after 100ms") {
		t.Errorf("dead letter error = %q, want the task timeout", got)
	}
	if n := attempts.Load(); n != 2 {
		t.Errorf("the task ran %d times, want MaxAttempts 2", n)
	}
}

func TestResultRecordsArePublishedBeforeTheAck(t *testing.T) {
	tests := []struct {
		name      string
		retention time.Duration
		want      bool
	}{
		{"a loop with a result retention records every success", time.Hour, true},
		{"a loop without a result retention records nothing", 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			cfg := e.config(t)
			cfg.ResultRetention = tt.retention
			cfg.Worker = "pod-7"
			l := start(t, cfg, map[string]loop.Handler{
				"echo": func(context.Context, *loop.Task) error { return nil },
			})
			e.submit(t, tasks("echo", 3, "r")...)
			eventually(t, "three successes", func() bool { return l.Status().Counters[loop.OutcomeSucceeded] == 3 })
			s, err := e.js.Stream(t.Context(), names.ResultStream())
			if !tt.want {
				if !errors.Is(err, jetstream.ErrStreamNotFound) {
					t.Errorf("result stream lookup = %v, want ErrStreamNotFound", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			ids := map[string]bool{}
			for seq := uint64(1); seq <= 3; seq++ {
				m, err := s.GetMsg(t.Context(), seq)
				if err != nil {
					t.Fatal(err)
				}
				if w := m.Header.Get(queue.HeaderWorker); w != "pod-7" {
					t.Errorf("record %d names worker %q, want pod-7", seq, w)
				}
				ids[m.Header.Get(queue.HeaderTaskID)] = true
			}
			if len(ids) != 3 || !ids["r-0"] || !ids["r-2"] {
				t.Errorf("records name tasks %v, want r-0, r-1, r-2", ids)
			}
		})
	}
}

func TestAHandlerThatIgnoresCancellationDoesNotHoldTheDrain(t *testing.T) {
	e := newEnv(t)
	release := make(chan struct{})
	defer close(release) // lets the stubborn handler's goroutine end
	started := make(chan struct{})
	cfg := e.config(t)
	cfg.AbortGrace = 200 * time.Millisecond
	l := start(t, cfg, map[string]loop.Handler{
		"stubborn": func(ctx context.Context, task *loop.Task) error {
			close(started)
			<-release // ignores ctx on purpose
			return nil
		},
	})
	e.submit(t, queue.Task{ID: "s", Kind: "stubborn"})
	<-started
	l.RequestDrain(time.Now().Add(100 * time.Millisecond))
	eventually(t, "the drain to end without the handler", func() bool { return l.State() == loop.Drained })
	if d := l.Status().Drain; d == nil || !d.DeadlineExceeded || d.HandedBack != 1 {
		t.Errorf("drain report = %+v, want the task handed back at the deadline", d)
	}
	l.cancel()
	select {
	case err := <-l.result:
		l.result <- err // for the cleanup
		if err != nil {
			t.Errorf("Run = %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run hung on a handler that ignores cancellation")
	}
}

func TestQueueConfigIsTheSetUpRunEnsures(t *testing.T) {
	got := loop.Config{}.QueueConfig()
	want := queue.Config{Priorities: []string{queue.DefaultPriority}, AckWait: 30 * time.Second, MaxAckPending: 1000, Replicas: 1}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("defaults: QueueConfig() = %+v, want %+v", got, want)
	}
	cfg := loop.Config{Priorities: []pool.Class{{Name: "high", Weight: 3}, {Name: "low"}}, AckWait: time.Minute, MaxAckPending: 50, Replicas: 3}
	got = cfg.QueueConfig()
	want = queue.Config{Priorities: []string{"high", "low"}, AckWait: time.Minute, MaxAckPending: 50, Replicas: 3}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("QueueConfig() = %+v, want %+v", got, want)
	}

}
