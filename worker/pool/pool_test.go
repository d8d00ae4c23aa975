package pool_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/goleak"

	"github.com/tenire/loop-operator/worker/pool"
)

func TestMain(m *testing.M) {
	// IgnoreCurrent: ants (compared in the benchmarks) starts its default
	// pool's goroutines when the package initialises.
	goleak.VerifyTestMain(m, goleak.IgnoreCurrent())
}

// job is the task type of these tests.
type job struct {
	name string
	kind string
	gate chan struct{} // when not nil, the handler waits for it to close
}

// recorder runs jobs and records the order they started and their results.
type recorder struct {
	mu      sync.Mutex
	started []string
	results map[string]pool.Result
	done    chan string
}

func newRecorder() *recorder {
	return &recorder{results: map[string]pool.Result{}, done: make(chan string, 1000)}
}

func (r *recorder) handle(ctx context.Context, j job) error {
	r.mu.Lock()
	r.started = append(r.started, j.name)
	r.mu.Unlock()
	if j.gate != nil {
		select {
		case <-j.gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

func (r *recorder) finish(j job, res pool.Result) {
	r.mu.Lock()
	r.results[j.name] = res
	r.mu.Unlock()
	r.done <- j.name
}

func (r *recorder) order() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.started...)
}

// waitDone waits for n tasks to finish or fails the test after a deadline.
func (r *recorder) waitDone(t *testing.T, n int) {
	t.Helper()
	deadline := time.After(time.Minute)
	for range n {
		select {
		case <-r.done:
		case <-deadline:
			t.Fatalf("timed out waiting for %d tasks to finish", n)
		}
	}
}

func newPool(t *testing.T, opts pool.Options, r *recorder) *pool.Pool[job] {
	t.Helper()
	p, err := pool.New(opts, r.handle, r.finish)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func submit(t *testing.T, p *pool.Pool[job], class int, j job) {
	t.Helper()
	if err := p.Submit(t.Context(), j.kind, class, j); err != nil {
		t.Fatalf("submit %s: %v", j.name, err)
	}
}

// waitFor polls cond until it holds or fails the test after a deadline.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-tick.C:
		case <-deadline:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func TestPriorityOrder(t *testing.T) {
	tests := []struct {
		name       string
		scheduling pool.Scheduling
		weights    []int
		perClass   int
		want       string // the class letters of the picks, in order
	}{
		{
			name:       "strict scheduling runs every high task before any low task, FIFO within each",
			scheduling: pool.Strict,
			weights:    []int{1, 1},
			perClass:   3,
			want:       "h0 h1 h2 l0 l1 l2",
		},
		{
			name:       "weighted scheduling with equal weights alternates classes",
			scheduling: pool.Weighted,
			weights:    []int{1, 1},
			perClass:   3,
			want:       "h0 l0 h1 l1 h2 l2",
		},
		{
			name:       "weighted scheduling gives three picks to the high class for every low pick",
			scheduling: pool.Weighted,
			weights:    []int{3, 1},
			perClass:   6,
			want:       "h0 h1 l0 h2 h3 h4 l1 h5 l2 l3 l4 l5",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRecorder()
			p := newPool(t, pool.Options{
				MaxWorkers: 1,
				Backlog:    100,
				Scheduling: tt.scheduling,
				Classes:    []pool.Class{{Name: "high", Weight: tt.weights[0]}, {Name: "low", Weight: tt.weights[1]}},
			}, r)
			gate := make(chan struct{})
			submit(t, p, 0, job{name: "blocker", gate: gate})
			waitFor(t, "the blocker to start", func() bool { return len(r.order()) == 1 })
			for i := range tt.perClass {
				submit(t, p, 1, job{name: fmt.Sprintf("l%d", i)})
				submit(t, p, 0, job{name: fmt.Sprintf("h%d", i)})
			}
			close(gate)
			r.waitDone(t, 1+2*tt.perClass)
			got := strings.Join(r.order()[1:], " ")
			if got != tt.want {
				t.Errorf("order = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestWeightedNoStarvation(t *testing.T) {
	r := newRecorder()
	p := newPool(t, pool.Options{
		MaxWorkers: 1,
		Backlog:    10000,
		Classes:    []pool.Class{{Name: "high", Weight: 10}, {Name: "mid", Weight: 3}, {Name: "low", Weight: 1}},
	}, r)
	gate := make(chan struct{})
	submit(t, p, 0, job{name: "blocker", gate: gate})
	waitFor(t, "the blocker to start", func() bool { return len(r.order()) == 1 })
	const perClass = 1000
	for i := range perClass {
		for c, name := range []string{"h", "m", "l"} {
			submit(t, p, c, job{name: fmt.Sprintf("%s%d", name, i)})
		}
	}
	close(gate)
	r.waitDone(t, 1+3*perClass)
	// While every class is backlogged (the first 1400 picks contain at most
	// 1000 of the high class), each class gets its weight's share.
	counts := map[byte]int{}
	for _, name := range r.order()[1:1401] {
		counts[name[0]]++
	}
	want := map[byte]int{'h': 1000, 'm': 300, 'l': 100}
	for c, n := range want {
		if counts[c] != n {
			t.Errorf("class %c got %d of the first 1400 picks, want %d (counts %v)", c, counts[c], n, counts)
		}
	}
}

func TestKindLimitsUnderLoad(t *testing.T) {
	limits := map[string]int{"a": 2, "b": 3}
	var (
		mu       sync.Mutex
		running  = map[string]int{}
		maxSeen  = map[string]int{}
		finished atomic.Int64
	)
	handler := func(ctx context.Context, kind string) error {
		mu.Lock()
		running[kind]++
		maxSeen[kind] = max(maxSeen[kind], running[kind])
		mu.Unlock()
		for range 50 { // hold the slot for a while so that tasks overlap
			runtime.Gosched()
		}
		mu.Lock()
		running[kind]--
		mu.Unlock()
		return nil
	}
	p, err := pool.New(pool.Options{MaxWorkers: 8, Backlog: 64, KindLimits: limits}, handler,
		func(string, pool.Result) { finished.Add(1) })
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	kinds := []string{"a", "b", "c"}
	var wg sync.WaitGroup
	const perSubmitter = 300
	for s := range 4 {
		wg.Go(func() {
			for i := range perSubmitter {
				kind := kinds[(s+i)%len(kinds)]
				if err := p.Submit(t.Context(), kind, 0, kind); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	waitFor(t, "every task to finish", func() bool { return finished.Load() == 4*perSubmitter })
	mu.Lock()
	defer mu.Unlock()
	for kind, limit := range limits {
		if maxSeen[kind] > limit {
			t.Errorf("kind %s ran %d at once, limit %d", kind, maxSeen[kind], limit)
		}
		if maxSeen[kind] == 0 {
			t.Errorf("kind %s never ran", kind)
		}
	}
	if maxSeen["c"] <= 3 {
		t.Logf("unlimited kind c peaked at %d", maxSeen["c"])
	}
}

// TestEveryTaskRunsOnceWhileGoroutinesIdleAndEndTogether races no-op and
// yielding tasks from several submitters against goroutines that go idle
// and end tasks at once: tasks handed to idle goroutines and tasks left to
// the goroutines ending one must each run exactly once, none stranded in
// the queue while a goroutine sleeps; so must tasks submitted one at a time
// to an idle pool.
func TestEveryTaskRunsOnceWhileGoroutinesIdleAndEndTogether(t *testing.T) {
	const submitters, perSubmitter, alone = 4, 5000, 50
	runs := make([]atomic.Int32, submitters*perSubmitter+alone) // the test's own record
	var finished atomic.Int64
	handler := func(_ context.Context, i int) error {
		runs[i].Add(1)
		if i%3 == 0 {
			runtime.Gosched()
		}
		return nil
	}
	for _, backlog := range []int{0, 16} {
		finished.Store(0)
		for i := range runs {
			runs[i].Store(0)
		}
		p, err := pool.New(pool.Options{MaxWorkers: 16, Backlog: backlog, KindLimits: map[string]int{"limited": 3},
			Classes: []pool.Class{{Name: "high", Weight: 3}, {Name: "low", Weight: 1}}}, handler,
			func(int, pool.Result) { finished.Add(1) })
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		for s := range submitters {
			wg.Go(func() {
				for j := range perSubmitter {
					i := s*perSubmitter + j
					kind := "free"
					if i%4 == 0 {
						kind = "limited"
					}
					if err := p.Submit(t.Context(), kind, i%2, i); err != nil {
						t.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
		waitFor(t, fmt.Sprintf("every task to finish (backlog %d)", backlog), func() bool { return finished.Load() == submitters*perSubmitter })
		// Then one at a time into an idle pool: no goroutine ends a task
		// that would take it.
		for i := submitters * perSubmitter; i < len(runs); i++ {
			if err := p.Submit(t.Context(), "free", i%2, i); err != nil {
				t.Fatal(err)
			}
			waitFor(t, fmt.Sprintf("task %d submitted alone to finish (backlog %d)", i, backlog), func() bool { return finished.Load() == int64(i+1) })
		}
		if left := p.Close(); len(left) != 0 {
			t.Errorf("backlog %d: %d tasks never started", backlog, len(left))
		}
		for i := range runs {
			if n := runs[i].Load(); n != 1 {
				t.Fatalf("backlog %d: task %d ran %d times, want 1", backlog, i, n)
			}
		}
	}
}

func TestKindAtLimitDoesNotBlockOtherKinds(t *testing.T) {
	r := newRecorder()
	p := newPool(t, pool.Options{MaxWorkers: 2, Backlog: 10, KindLimits: map[string]int{"slow": 1}}, r)
	gate := make(chan struct{})
	defer close(gate)
	submit(t, p, 0, job{name: "slow1", kind: "slow", gate: gate})
	submit(t, p, 0, job{name: "slow2", kind: "slow", gate: gate})
	submit(t, p, 0, job{name: "fast", kind: "fast"})
	select {
	case name := <-r.done:
		if name != "fast" {
			t.Fatalf("first finished task = %s, want fast", name)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the fast task queued behind a kind at its limit never ran")
	}
	if got := p.RunningByKind(); got["slow"] != 1 {
		t.Errorf("running slow tasks = %d, want 1", got["slow"])
	}
}

func TestGrowAndShrink(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRecorder()
		p := newPool(t, pool.Options{MinWorkers: 1, MaxWorkers: 4, Backlog: 4, IdleTimeout: time.Minute}, r)
		synctest.Wait()
		if got := p.Stats().Workers; got != 1 {
			t.Fatalf("workers at start = %d, want MinWorkers 1", got)
		}
		gate := make(chan struct{})
		for i := range 6 {
			submit(t, p, 0, job{name: fmt.Sprint(i), gate: gate})
		}
		synctest.Wait()
		if s := p.Stats(); s.Workers != 4 || s.Running != 4 || s.Queued != 2 {
			t.Fatalf("under backlog stats = %+v, want 4 workers, 4 running, 2 queued", s)
		}
		close(gate)
		r.waitDone(t, 6)
		synctest.Wait()
		if got := p.Stats().Workers; got != 4 {
			t.Fatalf("workers right after the backlog = %d, want 4 until the idle timeout", got)
		}
		<-time.After(time.Minute*5/4 + time.Second) // the bubble's fake clock jumps past the timeout and its quarter
		synctest.Wait()
		if s := p.Stats(); s.Workers != 1 || s.Idle != 1 {
			t.Fatalf("after the idle timeout stats = %+v, want 1 idle worker", s)
		}
		<-time.After(10 * time.Minute)
		synctest.Wait()
		if got := p.Stats().Workers; got != 1 {
			t.Fatalf("workers long after = %d, want MinWorkers 1", got)
		}
	})
}

// Goroutines retire oldest idle first, after IdleTimeout and at most a
// quarter more: one that went back to work stays its full IdleTimeout
// after its last task, and then goes too.
func TestTheLongestIdleGoroutinesRetireFirst(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRecorder()
		p := newPool(t, pool.Options{MaxWorkers: 3, IdleTimeout: time.Minute}, r)
		gate := make(chan struct{})
		for i := range 3 {
			submit(t, p, 0, job{name: fmt.Sprint(i), gate: gate})
		}
		close(gate)
		r.waitDone(t, 3)
		synctest.Wait()
		<-time.After(40 * time.Second)
		submit(t, p, 0, job{name: "later"}) // the most recently idle goroutine takes it
		r.waitDone(t, 1)
		synctest.Wait()
		<-time.After(19 * time.Second) // 59s after the first three went idle
		synctest.Wait()
		if s := p.Stats(); s.Workers != 3 || s.Idle != 3 {
			t.Fatalf("59s in, stats = %+v, want 3 idle workers: none idle for IdleTimeout yet", s)
		}
		<-time.After(17 * time.Second) // 76s
		synctest.Wait()
		if s := p.Stats(); s.Workers != 1 || s.Idle != 1 {
			t.Fatalf("past the idle timeout of the first three and its quarter, stats = %+v, want the one that ran later left", s)
		}
		<-time.After(30 * time.Second) // 66s after its task
		synctest.Wait()
		if s := p.Stats(); s.Workers != 0 {
			t.Fatalf("past its own idle timeout and its quarter, stats = %+v, want no goroutine", s)
		}
		// And the pool grows again from nothing.
		submit(t, p, 0, job{name: "again"})
		r.waitDone(t, 1)
	})
}

func TestTaskTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRecorder()
		p := newPool(t, pool.Options{MaxWorkers: 1, TaskTimeout: 10 * time.Second}, r)
		start := time.Now()
		submit(t, p, 0, job{name: "stuck", gate: make(chan struct{})})
		r.waitDone(t, 1)
		res := r.results["stuck"]
		if !errors.Is(res.Err, pool.ErrTimeout) || !errors.Is(res.Err, context.DeadlineExceeded) {
			t.Errorf("err = %v, want ErrTimeout wrapping DeadlineExceeded", res.Err)
		}
		if d := time.Since(start); d != 10*time.Second {
			t.Errorf("task ended after %s, want exactly the 10s timeout", d)
		}
		if res.Aborted {
			t.Error("a timed-out task is reported as aborted")
		}
		_ = p
	})
}

func TestPanicFailsOnlyThatTask(t *testing.T) {
	var ran atomic.Int64
	results := make(chan pool.Result, 3)
	p, err := pool.New(pool.Options{MaxWorkers: 1, Backlog: 3}, func(_ context.Context, name string) error {
		ran.Add(1)
		if name == "boom" {
			panic("kaboom")
		}
		return nil
	}, func(_ string, r pool.Result) { results <- r })
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	for _, name := range []string{"ok1", "boom", "ok2"} {
		if err := p.Submit(t.Context(), name, 0, name); err != nil {
			t.Fatal(err)
		}
	}
	var errs []error
	for range 3 {
		errs = append(errs, (<-results).Err)
	}
	if errs[0] != nil || errs[2] != nil {
		t.Errorf("healthy tasks failed: %v, %v", errs[0], errs[2])
	}
	var pe *pool.PanicError
	if !errors.As(errs[1], &pe) {
		t.Fatalf("panicking task err = %v, want *PanicError", errs[1])
	}
	if pe.Value != "kaboom" || !strings.Contains(string(pe.Stack), "pool_test.go") {
		t.Errorf("panic error = %v with stack\n%s\nwant value kaboom and a stack through the handler", pe.Value, pe.Stack)
	}
}

func TestStopAbortAndErrors(t *testing.T) {
	r := newRecorder()
	p, err := pool.New(pool.Options{MaxWorkers: 1, Backlog: 2}, r.handle, r.finish)
	if err != nil {
		t.Fatal(err)
	}
	gate := make(chan struct{})
	submit(t, p, 0, job{name: "running", gate: gate})
	submit(t, p, 0, job{name: "q1"})
	submit(t, p, 0, job{name: "q2"})
	if err := p.TrySubmit("", 0, job{name: "over"}); !errors.Is(err, pool.ErrFull) {
		t.Errorf("TrySubmit on a full pool = %v, want ErrFull", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Millisecond)
	defer cancel()
	if err := p.Submit(ctx, "", 0, job{name: "over"}); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Submit on a full pool with an ending context = %v, want DeadlineExceeded", err)
	}
	waitFor(t, "the first task to start", func() bool { return len(r.order()) == 1 })
	rest := p.Stop()
	if len(rest) != 2 || rest[0].name != "q1" || rest[1].name != "q2" {
		t.Errorf("Stop returned %v, want q1 and q2", rest)
	}
	if err := p.TrySubmit("", 0, job{}); !errors.Is(err, pool.ErrClosed) {
		t.Errorf("TrySubmit after Stop = %v, want ErrClosed", err)
	}
	waitCtx, cancelWait := context.WithTimeout(t.Context(), 10*time.Millisecond)
	defer cancelWait()
	if err := p.Wait(waitCtx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Wait with a task still running = %v, want DeadlineExceeded", err)
	}
	p.Abort()
	if err := p.Wait(t.Context()); err != nil {
		t.Fatal(err)
	}
	res := r.results["running"]
	if !res.Aborted || !errors.Is(res.Err, context.Canceled) {
		t.Errorf("aborted task result = %+v, want Aborted with context.Canceled", res)
	}
}

func TestNewRejectsBadOptions(t *testing.T) {
	tests := []struct {
		name string
		opts pool.Options
	}{
		{"more minimum than maximum workers is rejected", pool.Options{MinWorkers: 3, MaxWorkers: 2}},
		{"a negative idle timeout is rejected", pool.Options{IdleTimeout: -1}},
		{"a kind limit of zero is rejected", pool.Options{KindLimits: map[string]int{"x": 0}}},
		{"a class listed twice is rejected", pool.Options{Classes: []pool.Class{{Name: "a"}, {Name: "a"}}}},
		{"a negative weight is rejected", pool.Options{Classes: []pool.Class{{Name: "a", Weight: -1}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := pool.New(tt.opts, func(context.Context, int) error { return nil }, nil); err == nil {
				t.Error("New succeeded")
			}
		})
	}
}

// TestSetBacklogChangesTheRoomAtOnce: a larger backlog wakes a waiting
// WaitFree; a smaller one refuses new tasks and leaves the queued ones.
func TestSetBacklogChangesTheRoomAtOnce(t *testing.T) {
	r := newRecorder()
	p := newPool(t, pool.Options{MaxWorkers: 1, Classes: []pool.Class{{Name: "default", Weight: 1}}}, r)
	gate := make(chan struct{})
	submit(t, p, 0, job{name: "running", gate: gate})
	if err := p.TrySubmit("", 0, job{name: "refused"}); !errors.Is(err, pool.ErrFull) {
		t.Fatalf("TrySubmit with backlog 0 and the worker busy = %v, want ErrFull", err)
	}
	free := make(chan int, 1)
	go func() {
		n, err := p.WaitFree(t.Context())
		if err != nil {
			t.Error(err)
		}
		free <- n
	}()
	p.SetBacklog(2)
	select {
	case n := <-free:
		if n != 2 {
			t.Errorf("WaitFree after SetBacklog(2) = %d, want 2", n)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("SetBacklog(2) did not wake WaitFree")
	}
	submit(t, p, 0, job{name: "queued-1"})
	submit(t, p, 0, job{name: "queued-2"})
	p.SetBacklog(0)
	if got := p.Backlog(); got != 0 {
		t.Errorf("Backlog() = %d, want 0", got)
	}
	if err := p.TrySubmit("", 0, job{name: "refused"}); !errors.Is(err, pool.ErrFull) {
		t.Errorf("TrySubmit after SetBacklog(0) = %v, want ErrFull", err)
	}
	close(gate)
	r.waitDone(t, 3) // the queued tasks ran anyway
}

func TestShedReturnsTheTasksBeyondAShrunkBacklogNewestFirstFromTheLowestClass(t *testing.T) {
	r := newRecorder()
	p := newPool(t, pool.Options{MaxWorkers: 1, Backlog: 4, Classes: []pool.Class{{Name: "high"}, {Name: "low"}}}, r)
	gate := make(chan struct{})
	submit(t, p, 0, job{name: "running", gate: gate})
	waitFor(t, "the first task to run", func() bool { return p.Stats().Running == 1 })
	submit(t, p, 0, job{name: "high-1"})
	submit(t, p, 1, job{name: "low-1"})
	submit(t, p, 0, job{name: "high-2"})
	submit(t, p, 1, job{name: "low-2"})
	if shed := p.Shed(); shed != nil {
		t.Fatalf("Shed within the backlog = %v, want nothing", shed)
	}
	p.SetBacklog(1)
	var names []string
	for _, j := range p.Shed() {
		names = append(names, j.name)
	}
	if want := []string{"low-2", "low-1", "high-2"}; !slices.Equal(names, want) {
		t.Errorf("Shed after SetBacklog(1) = %v, want %v", names, want)
	}
	if st := p.Stats(); st.Queued != 1 || st.Running != 1 {
		t.Errorf("after Shed: %+v, want 1 running and 1 queued", st)
	}
	close(gate)
	r.waitDone(t, 2) // the running task and high-1; the shed ones never run
	if got := r.order(); !slices.Equal(got, []string{"running", "high-1"}) {
		t.Errorf("ran %v, want [running high-1]", got)
	}
	p.Stop()
	if shed := p.Shed(); shed != nil {
		t.Errorf("Shed after Stop = %v, want nothing", shed)
	}
}
