package loop_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tenire/loop-operator/worker/loop"
	"github.com/tenire/loop-operator/worker/queue"
)

// deadLetter returns the only dead letter once there is one.
func (e *env) deadLetter(t *testing.T) *jetstream.RawStreamMsg {
	t.Helper()
	eventually(t, "a dead letter", func() bool { return e.streamMsgs(t, names.DeadStream) == 1 })
	dead, err := e.js.Stream(t.Context(), names.DeadStream)
	if err != nil {
		t.Fatal(err)
	}
	m, err := dead.GetMsg(t.Context(), 1)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// resultRecords counts the result records, zero without a result stream.
func (e *env) resultRecords(t *testing.T) uint64 {
	t.Helper()
	s, err := e.js.Stream(t.Context(), names.ResultStream())
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

// admin GETs path from the loop's admin server.
func admin(t *testing.T, l *running, path string) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, "http://"+l.AdminAddr()+path, nil)
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

// attemptLog records the attempt numbers a handler saw.
type attemptLog struct {
	mu   sync.Mutex
	seen []uint64
}

func (a *attemptLog) add(n uint64) {
	a.mu.Lock()
	a.seen = append(a.seen, n)
	a.mu.Unlock()
}

func (a *attemptLog) get() []uint64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]uint64(nil), a.seen...)
}

func TestCancellationIsNeverASuccess(t *testing.T) {
	// The common handler that returns nil when its context ends.
	quitQuietly := func(started chan<- struct{}, runs *atomic.Int64) loop.Handler {
		return func(ctx context.Context, _ *loop.Task) error {
			if runs.Add(1) == 1 {
				close(started)
			}
			<-ctx.Done()
			return nil
		}
	}
	t.Run("a handler that returns nil after its task timeout fails the attempt", func(t *testing.T) {
		e := newEnv(t)
		cfg := e.config(t)
		cfg.TaskTimeout = 100 * time.Millisecond
		cfg.ResultRetention = time.Hour
		cfg.Retry = queue.RetryPolicy{MaxAttempts: 2, InitialBackoff: 10 * time.Millisecond, MaxBackoff: 10 * time.Millisecond}
		var runs atomic.Int64
		l := start(t, cfg, map[string]loop.Handler{"quiet": quitQuietly(make(chan struct{}), &runs)})
		e.submit(t, queue.Task{ID: "q", Kind: "quiet"})
		m := e.deadLetter(t)
		if got := m.Header.Get(queue.HeaderError); !strings.Contains(got, "timed out after 100ms") {
			t.Errorf("dead letter error = %q, want the task timeout", got)
		}
		// A delivery lost in transit (a pull request that expired as the
		// server answered it) comes again after AckWait as a crash, not an
		// attempt; so the attempts are checked, not the runs.
		if got := m.Header.Get(queue.HeaderAttempts); got != "2" || runs.Load() < 2 {
			t.Errorf("dead-lettered after %s attempts and %d runs, want MaxAttempts 2", got, runs.Load())
		}
		if s := l.Status(); s.Counters[loop.OutcomeSucceeded] != 0 || s.Counters[loop.OutcomeRetried] == 0 {
			t.Errorf("counters = %v, want a retry and no success", s.Counters)
		}
		if n := e.resultRecords(t); n != 0 {
			t.Errorf("%d result records for a task that timed out, want 0", n)
		}
	})
	t.Run("a handler that returns nil after the drain deadline hands its task back", func(t *testing.T) {
		e := newEnv(t)
		cfg := e.config(t)
		cfg.ResultRetention = time.Hour
		var runs atomic.Int64
		started := make(chan struct{})
		l := start(t, cfg, map[string]loop.Handler{"quiet": quitQuietly(started, &runs)})
		e.submit(t, queue.Task{ID: "q", Kind: "quiet"})
		<-started
		l.RequestDrain(time.Now().Add(100 * time.Millisecond))
		eventually(t, "the drain", func() bool { return l.State() == loop.Drained })
		if s := l.Status(); s.Counters[loop.OutcomeSucceeded] != 0 || s.Counters[loop.OutcomeHandedBack] != 1 {
			t.Errorf("counters = %v, want the task handed back, not succeeded", s.Counters)
		}
		if n := e.streamMsgs(t, stream); n != 1 {
			t.Errorf("the work queue holds %d tasks, want the one handed back", n)
		}
		if n := e.resultRecords(t); n != 0 {
			t.Errorf("%d result records for a task cut off by the drain, want 0", n)
		}
	})
}

func TestAWorkerCrashIsCountedAndCapped(t *testing.T) {
	tests := []struct {
		name    string
		crashes int
		wantRun bool
	}{
		{"a task that crashed its worker MaxCrashes times is dead-lettered before it runs again", 2, false},
		{"a task that crashed its worker fewer times runs again as its first attempt", 1, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			cfg := e.config(t)
			cfg.AckWait = 200 * time.Millisecond
			cfg.Retry.MaxCrashes = 2
			consumers, err := queue.Ensure(t.Context(), e.js, names, cfg.QueueConfig())
			if err != nil {
				t.Fatal(err)
			}
			e.submit(t, queue.Task{ID: "oom", Kind: "oom"})
			// A worker that dies holding the task sends nothing: it is
			// redelivered after AckWait.
			for i := 1; i <= tt.crashes; i++ {
				b, err := consumers[0].Fetch(1, jetstream.FetchMaxWait(5*time.Second))
				if err != nil {
					t.Fatal(err)
				}
				n := 0
				for m := range b.Messages() {
					n++
					md, _ := m.Metadata()
					if md.NumDelivered != uint64(i) {
						t.Fatalf("delivery %d has NumDelivered %d", i, md.NumDelivered)
					}
				}
				if n != 1 {
					t.Fatalf("crash %d: fetched %d messages (%v), want the task", i, n, b.Error())
				}
			}
			var attempts attemptLog
			start(t, cfg, map[string]loop.Handler{"oom": func(_ context.Context, task *loop.Task) error {
				attempts.add(task.Attempt)
				return nil
			}})
			if !tt.wantRun {
				m := e.deadLetter(t)
				if got := m.Header.Get(queue.HeaderError); !strings.Contains(got, "worker crashed 2 times while running it") {
					t.Errorf("dead letter error = %q, want the crashes named", got)
				}
				if got := attempts.get(); len(got) != 0 {
					t.Errorf("the handler ran (attempts %v); a capped task must not run again", got)
				}
				return
			}
			eventually(t, "the task to run", func() bool { return len(attempts.get()) == 1 })
			if got := attempts.get(); got[0] != 1 {
				t.Errorf("after a crash the task ran as attempt %d, want 1: crashes are not attempts", got[0])
			}
			eventually(t, "the work queue to empty", func() bool { return e.streamMsgs(t, stream) == 0 })
		})
	}
}

func TestAStuckHandlerIsAbandonedAndItsSlotCounted(t *testing.T) {
	e := newEnv(t)
	cfg := e.config(t)
	cfg.MinWorkers, cfg.MaxWorkers = 1, 1
	cfg.TaskTimeout = 100 * time.Millisecond
	cfg.StuckGrace = 100 * time.Millisecond
	cfg.ResultRetention = time.Hour
	cfg.Retry.MaxAttempts = 1
	release := make(chan struct{})
	var once sync.Once
	free := func() { once.Do(func() { close(release) }) }
	defer free()
	l := start(t, cfg, map[string]loop.Handler{"stuck": func(context.Context, *loop.Task) error {
		<-release // ignores its context on purpose
		return nil
	}})
	e.submit(t, queue.Task{ID: "s", Kind: "stuck"})

	m := e.deadLetter(t)
	if got := m.Header.Get(queue.HeaderError); !strings.Contains(got, loop.ErrAbandoned.Error()) {
		t.Errorf("dead letter error = %q, want it abandoned", got)
	}
	s := l.Status()
	if s.Pool.Stuck != 1 || len(s.InFlightByKind) != 0 || s.Pool.Running != 1 {
		t.Errorf("status = %+v, want one stuck running slot and no task held (no heartbeats)", s.Pool)
	}
	if _, body := admin(t, l, "/metrics"); !strings.Contains(body, "tenire_loop_stuck_slots 1") {
		t.Errorf("metrics lack tenire_loop_stuck_slots 1")
	}
	if code, body := admin(t, l, "/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "stuck") {
		t.Errorf("readyz with every slot stuck = %d %q, want 503 naming the stuck slots", code, body)
	}

	free()
	eventually(t, "the slot to be free again", func() bool { return l.Status().Pool.Stuck == 0 })
	if code, _ := admin(t, l, "/readyz"); code != http.StatusOK {
		t.Errorf("readyz once the handler returned = %d, want 200", code)
	}
	if s := l.Status(); s.Counters[loop.OutcomeSucceeded] != 0 {
		t.Errorf("the late nil of an abandoned handler counted as a success: %v", s.Counters)
	}
	if n := e.resultRecords(t); n != 0 {
		t.Errorf("%d result records for an abandoned task, want 0", n)
	}
}

func TestHandBacksAndDeferralsDoNotConsumeAttempts(t *testing.T) {
	retry := queue.RetryPolicy{MaxAttempts: 2, InitialBackoff: 10 * time.Millisecond, MaxBackoff: 10 * time.Millisecond}
	t.Run("a task handed back in a drain keeps its attempts", func(t *testing.T) {
		e := newEnv(t)
		cfgA := e.config(t)
		cfgA.Name = "a"
		started := make(chan struct{})
		a := start(t, cfgA, map[string]loop.Handler{"job": func(ctx context.Context, _ *loop.Task) error {
			close(started)
			<-ctx.Done()
			return ctx.Err()
		}})
		e.submit(t, queue.Task{ID: "j", Kind: "job"})
		<-started
		a.RequestDrain(time.Now().Add(50 * time.Millisecond))
		eventually(t, "worker A to drain", func() bool { return a.State() == loop.Drained })

		cfgB := e.config(t)
		cfgB.Name = "b"
		cfgB.Retry = retry
		var attempts attemptLog
		start(t, cfgB, map[string]loop.Handler{"job": func(_ context.Context, task *loop.Task) error {
			attempts.add(task.Attempt)
			return errors.New("fails on B")
		}})
		m := e.deadLetter(t)
		if got := attempts.get(); !reflect.DeepEqual(got, []uint64{1, 2}) {
			t.Errorf("worker B saw attempts %v, want [1 2]: the hand-back is not an attempt", got)
		}
		if got := m.Header.Get(queue.HeaderAttempts); got != "2" {
			t.Errorf("dead letter has %s attempts, want 2", got)
		}
	})
	t.Run("a task deferred by an open breaker keeps its attempts", func(t *testing.T) {
		e := newEnv(t)
		cfg := e.config(t)
		cfg.MaxWorkers = 1
		cfg.BreakerThreshold = 1
		cfg.BreakerCooldown = 300 * time.Millisecond
		cfg.Retry = retry
		var attempts attemptLog
		l := start(t, cfg, map[string]loop.Handler{"dep": func(_ context.Context, task *loop.Task) error {
			attempts.add(task.Attempt)
			return errors.New("dependency down")
		}})
		e.submit(t, queue.Task{ID: "d", Kind: "dep"})
		m := e.deadLetter(t)
		if n := l.Status().Counters[loop.OutcomeDeferred]; n == 0 {
			t.Fatalf("the task was never deferred; the test proves nothing")
		}
		if got := attempts.get(); !reflect.DeepEqual(got, []uint64{1, 2}) {
			t.Errorf("the handler saw attempts %v, want [1 2]: deferrals are not attempts", got)
		}
		if got := m.Header.Get(queue.HeaderAttempts); got != "2" {
			t.Errorf("dead letter has %s attempts, want 2", got)
		}
	})
}

func TestAResultRecordThatCannotBeWrittenDoesNotRerunTheTask(t *testing.T) {
	e := newEnv(t)
	cfg := e.config(t)
	cfg.ResultRetention = time.Hour
	cfg.ResultWindow = 500 * time.Millisecond
	var runs atomic.Int64
	l := start(t, cfg, map[string]loop.Handler{"echo": func(context.Context, *loop.Task) error {
		runs.Add(1)
		return nil
	}})
	// Without its stream a record has nowhere to go.
	if err := e.js.DeleteStream(t.Context(), names.ResultStream()); err != nil {
		t.Fatal(err)
	}
	e.submit(t, queue.Task{ID: "r", Kind: "echo"})
	eventually(t, "the task to succeed", func() bool { return l.Status().Counters[loop.OutcomeSucceeded] == 1 })
	eventually(t, "the work queue to empty", func() bool { return e.streamMsgs(t, stream) == 0 })
	if n := runs.Load(); n != 1 {
		t.Errorf("the task ran %d times, want once", n)
	}
	if _, body := admin(t, l, "/metrics"); !strings.Contains(body, "tenire_loop_result_records_lost_total 1") {
		t.Errorf("metrics lack tenire_loop_result_records_lost_total 1")
	}
}

// TestAResultRecordIsRetriedUntilTheStreamTakesIt: a result stream that
// refuses records for a few seconds (as a replicated one does while it
// elects a new leader) gets the record once it takes writes again; the
// task is neither run again nor acked without its record. The wait
// outlasts the task timeout and the stuck grace many times over: a task
// whose handler returned is being settled, not stuck, so it is neither
// abandoned nor counted as a stuck slot.
func TestAResultRecordIsRetriedUntilTheStreamTakesIt(t *testing.T) {
	e := newEnv(t)
	cfg := e.config(t)
	cfg.ResultRetention = time.Hour
	cfg.ResultWindow = 15 * time.Second
	cfg.TaskTimeout, cfg.StuckGrace = 200*time.Millisecond, 100*time.Millisecond
	var runs atomic.Int64
	l := start(t, cfg, map[string]loop.Handler{"echo": func(context.Context, *loop.Task) error {
		runs.Add(1)
		return nil
	}})
	if err := e.js.DeleteStream(t.Context(), names.ResultStream()); err != nil {
		t.Fatal(err)
	}
	// The tries, seen on the subject while no stream stores them.
	nc, _ := e.srv.Connect()
	tries, err := nc.SubscribeSync(names.ResultSubjectOf("r"))
	if err != nil {
		t.Fatal(err)
	}
	e.submit(t, queue.Task{ID: "r", Kind: "echo"})
	if _, err := tries.NextMsg(10 * time.Second); err != nil {
		t.Fatalf("no try to write the record: %v", err)
	}
	start := time.Now()
	for time.Since(start) < 3*time.Second {
		if _, err := tries.NextMsg(10 * time.Second); err != nil {
			t.Fatalf("the loop stopped trying after %s: %v", time.Since(start).Round(time.Millisecond), err)
		}
	}
	if got := l.Status().Counters[loop.OutcomeSucceeded]; got != 0 {
		t.Fatalf("the task succeeded without its record (%d)", got)
	}
	if s := l.Status(); s.Pool.Stuck != 0 || len(s.InFlightByKind) != 1 {
		t.Errorf("while its record waits: %d stuck slots and tasks held %v, want none stuck and the task held", s.Pool.Stuck, s.InFlightByKind)
	}
	qc := cfg.QueueConfig()
	qc.ResultRetention = cfg.ResultRetention
	if _, err := queue.Ensure(t.Context(), e.js, names, qc); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the task to succeed", func() bool { return l.Status().Counters[loop.OutcomeSucceeded] == 1 })
	if n := e.resultRecords(t); n != 1 {
		t.Errorf("%d result records, want 1", n)
	}
	if n := runs.Load(); n != 1 {
		t.Errorf("the task ran %d times, want once", n)
	}
	if s := l.Status(); s.Pool.Stuck != 0 || s.Counters[loop.OutcomeRetried]+s.Counters[loop.OutcomeDeadLettered] != 0 {
		t.Errorf("status %+v, counters %v: want no stuck slot, no retry and no dead letter", s.Pool, s.Counters)
	}
	if _, body := admin(t, l, "/metrics"); !strings.Contains(body, "tenire_loop_result_records_lost_total 0") {
		t.Errorf("metrics lack tenire_loop_result_records_lost_total 0")
	}
}
