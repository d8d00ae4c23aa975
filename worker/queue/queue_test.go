package queue_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"

	"github.com/tenire/loop-operator/internal/natstest"
	"github.com/tenire/loop-operator/worker/queue"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestNames(t *testing.T) {
	n := queue.NewNames("LOOP_ns_demo", "loops.ns.demo")
	tests := []struct {
		name, got, want string
	}{
		{"tasks of a priority go to <prefix>.tasks.<priority>", n.TaskSubject("high"), "loops.ns.demo.tasks.high"},
		{"the work-queue stream holds <prefix>.tasks.>", n.TaskSubjects(), "loops.ns.demo.tasks.>"},
		{"the consumer of a priority is named after it", n.Consumer("high"), "high"},
		{"dead letters go to <prefix>.dead", n.DeadSubject, "loops.ns.demo.dead"},
		{"a task's dead letter goes to <prefix>.dead.<base64url id>", n.DeadSubjectOf("a.b c"), "loops.ns.demo.dead.YS5iIGM"},
		{"a task's result record goes to <prefix>.results.<base64url id>", n.ResultSubjectOf("a.b c"), "loops.ns.demo.results.YS5iIGM"},
		{"dead letters are kept in <stream>_DEAD", n.DeadStream, "LOOP_ns_demo_DEAD"},
		{"checkpoints are kept in <stream>_CHECKPOINTS", n.CheckpointBucket, "LOOP_ns_demo_CHECKPOINTS"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.got != tt.want {
				t.Errorf("got %q, want %q", tt.got, tt.want)
			}
		})
	}
	if err := queue.NewNames("bad.stream", "p").Validate(); err == nil {
		t.Error("a stream name with a dot passed Validate")
	}
	if err := queue.ValidatePriority("High"); err == nil {
		t.Error("an upper-case priority passed ValidatePriority")
	}
}

func TestRetryPolicyDelay(t *testing.T) {
	tests := []struct {
		name    string
		attempt uint64
		jitter  float64
		want    time.Duration
	}{
		{"the first retry waits between half and all of the initial backoff (low jitter)", 1, 0, 500 * time.Millisecond},
		{"the first retry waits between half and all of the initial backoff (high jitter)", 1, 0.999999999, time.Second - 1},
		{"each attempt doubles the backoff", 3, 0, 2 * time.Second},
		{"the backoff is capped at the maximum", 20, 0, 5 * time.Second},
		{"a capped backoff still gets jitter", 64, 0.5, 7500 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := queue.RetryPolicy{InitialBackoff: time.Second, MaxBackoff: 10 * time.Second, Jitter: func() float64 { return tt.jitter }}
			if got := p.Delay(tt.attempt); got != tt.want {
				t.Errorf("Delay(%d) = %s, want %s", tt.attempt, got, tt.want)
			}
		})
	}
	p := queue.RetryPolicy{MaxAttempts: 3}
	if p.Exhausted(2) || !p.Exhausted(3) {
		t.Error("with MaxAttempts 3, attempt 2 must leave a retry and attempt 3 must not")
	}
}

func TestRetryPolicyDefaultsCapDeliveries(t *testing.T) {
	tests := []struct {
		name                        string
		p                           queue.RetryPolicy
		wantCrashes, wantDeliveries int
	}{
		{"the defaults allow five attempts, five crashes and a thousand deliveries", queue.RetryPolicy{}, 5, 1000},
		{"one attempt still allows three crashes", queue.RetryPolicy{MaxAttempts: 1}, 3, 1000},
		{"many attempts raise the crash cap and the delivery cap", queue.RetryPolicy{MaxAttempts: 200}, 200, 1600},
		{"explicit caps are kept", queue.RetryPolicy{MaxCrashes: 2, MaxDeliveries: 50}, 2, 50},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := tt.p.WithDefaults()
			if p.MaxCrashes != tt.wantCrashes || p.MaxDeliveries != tt.wantDeliveries {
				t.Errorf("MaxCrashes %d, MaxDeliveries %d; want %d, %d", p.MaxCrashes, p.MaxDeliveries, tt.wantCrashes, tt.wantDeliveries)
			}
		})
	}
}

func TestDeliveryCountsTellCrashesApart(t *testing.T) {
	tests := []struct {
		name      string
		c         queue.DeliveryCounts
		delivered uint64
		want      uint64
	}{
		{"a first delivery follows no crash", queue.DeliveryCounts{}, 1, 0},
		{"a redelivery with nothing recorded follows a crash", queue.DeliveryCounts{}, 2, 1},
		{"recorded failures and returns are not crashes", queue.DeliveryCounts{Failures: 2, Returns: 3}, 6, 0},
		{"unrecorded deliveries between them are", queue.DeliveryCounts{Failures: 2, Returns: 3}, 9, 3},
		{"a stale record larger than the deliveries means no crash", queue.DeliveryCounts{Failures: 9}, 3, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.c.Crashes(tt.delivered); got != tt.want {
				t.Errorf("Crashes(%d) of %+v = %d, want %d", tt.delivered, tt.c, got, tt.want)
			}
		})
	}
}

// setup starts a server and ensures a loop with the given priorities.
func setup(t *testing.T, cfg queue.Config) (*natstest.Server, jetstream.JetStream, queue.Names, []jetstream.Consumer) {
	t.Helper()
	srv := natstest.Start(t)
	_, js := srv.Connect()
	names := queue.NewNames("LOOP_test", "loops.test")
	cons, err := queue.Ensure(t.Context(), js, names, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return srv, js, names, cons
}

func TestEnsureIsIdempotentAndUpdates(t *testing.T) {
	_, js, names, _ := setup(t, queue.Config{Priorities: []string{"high", "low"}, AckWait: 10 * time.Second})
	cons, err := queue.Ensure(t.Context(), js, names, queue.Config{Priorities: []string{"high", "low"}, AckWait: 20 * time.Second})
	if err != nil {
		t.Fatalf("second Ensure: %v", err)
	}
	info, err := cons[0].Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if info.Config.AckWait != 20*time.Second || info.Config.FilterSubject != "loops.test.tasks.high" || info.Config.MaxDeliver != -1 {
		t.Errorf("consumer config = ack wait %s, filter %s, max deliver %d", info.Config.AckWait, info.Config.FilterSubject, info.Config.MaxDeliver)
	}
	s, err := js.Stream(t.Context(), names.Stream)
	if err != nil {
		t.Fatal(err)
	}
	if s.CachedInfo().Config.Retention != jetstream.WorkQueuePolicy {
		t.Errorf("stream retention = %s, want work queue", s.CachedInfo().Config.Retention)
	}
	if _, err := js.KeyValue(t.Context(), names.CheckpointBucket); err != nil {
		t.Errorf("checkpoint bucket: %v", err)
	}
	if _, err := js.Stream(t.Context(), names.DeadStream); err != nil {
		t.Errorf("dead-letter stream: %v", err)
	}
}

func newFetcher(t *testing.T, cons []jetstream.Consumer, prios []string, weights []int, strict bool) *queue.Fetcher {
	t.Helper()
	f, err := queue.NewFetcher(cons, queue.FetcherOptions{Priorities: prios, Weights: weights, Strict: strict, MaxWait: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// fetchOne waits for one delivery or fails the test.
func fetchOne(t *testing.T, f *queue.Fetcher) *queue.Delivery {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		ds, err := f.Fetch(1)
		if err != nil {
			t.Fatal(err)
		}
		if len(ds) == 1 {
			return ds[0]
		}
	}
	t.Fatal("no delivery within 10s")
	return nil
}

func TestSubmitAndFetchEnvelope(t *testing.T) {
	_, js, names, cons := setup(t, queue.Config{})
	p := queue.NewProducer(js, names)
	if _, dup, err := p.Submit(t.Context(), queue.Task{ID: "t-1", Kind: "sleep", Payload: []byte(`{"ms":1}`)}); err != nil || dup {
		t.Fatalf("Submit = dup %v, %v", dup, err)
	}
	if _, dup, err := p.Submit(t.Context(), queue.Task{ID: "t-1", Kind: "sleep"}); err != nil || !dup {
		t.Fatalf("second Submit with the same id = dup %v, %v; want a duplicate", dup, err)
	}
	if _, _, err := p.Submit(t.Context(), queue.Task{}); !errors.Is(err, queue.ErrInvalidTask) {
		t.Errorf("Submit without a kind = %v, want ErrInvalidTask", err)
	}
	f := newFetcher(t, cons, []string{queue.DefaultPriority}, nil, false)
	d := fetchOne(t, f)
	if d.ID != "t-1" || d.Kind != "sleep" || d.Priority != "default" || d.Attempt != 1 || string(d.Payload()) != `{"ms":1}` {
		t.Errorf("delivery = id %s kind %s priority %s attempt %d payload %s", d.ID, d.Kind, d.Priority, d.Attempt, d.Payload())
	}
	if err := d.Ack(); err != nil {
		t.Fatal(err)
	}
	if ds, _ := f.Fetch(1); len(ds) != 0 {
		t.Errorf("the duplicate was delivered: %v", ds[0].ID)
	}
}

func TestFetchNeverTakesMoreThanAsked(t *testing.T) {
	_, js, names, cons := setup(t, queue.Config{})
	p := queue.NewProducer(js, names)
	var tasks []queue.Task
	for i := range 10 {
		tasks = append(tasks, queue.Task{ID: fmt.Sprint(i), Kind: "k"})
	}
	if err := p.SubmitBatch(t.Context(), tasks); err != nil {
		t.Fatal(err)
	}
	waitPending(t, cons[0], 10)
	f := newFetcher(t, cons, []string{queue.DefaultPriority}, nil, false)
	ds, err := f.Fetch(3)
	if err != nil || len(ds) != 3 {
		t.Fatalf("Fetch(3) = %d deliveries, %v", len(ds), err)
	}
	info, err := cons[0].Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if info.NumAckPending != 3 || info.NumPending != 7 {
		t.Errorf("server sees %d held and %d pending, want 3 and 7", info.NumAckPending, info.NumPending)
	}
	for _, d := range ds {
		if err := d.HandBack(); err != nil {
			t.Fatal(err)
		}
	}
}

func TestFetchSharesSlotsBetweenPriorities(t *testing.T) {
	tests := []struct {
		name     string
		strict   bool
		submit   map[string]int
		n        int
		wantHigh int
		wantLow  int
	}{
		{"strict fills every slot from the high priority while it has tasks", true, map[string]int{"high": 10, "low": 10}, 4, 4, 0},
		{"strict falls through to the low priority for the slots high cannot fill", true, map[string]int{"high": 1, "low": 10}, 4, 1, 3},
		{"weighted 3:1 shares four slots three to one", false, map[string]int{"high": 10, "low": 10}, 4, 3, 1},
		{"weighted gives the slots of an empty priority to the other", false, map[string]int{"high": 0, "low": 10}, 4, 0, 4},
		{"weighted gives a single slot to the low priority when the high one is empty", false, map[string]int{"high": 0, "low": 10}, 1, 0, 1},
		{"weighted gives a single slot to the high priority when both have tasks", false, map[string]int{"high": 10, "low": 10}, 1, 1, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prios := []string{"high", "low"}
			_, js, names, cons := setup(t, queue.Config{Priorities: prios})
			p := queue.NewProducer(js, names)
			for prio, n := range tt.submit {
				for i := range n {
					if _, _, err := p.Submit(t.Context(), queue.Task{Kind: "k", Priority: prio, ID: fmt.Sprint(prio, i)}); err != nil {
						t.Fatal(err)
					}
				}
			}
			// A consumer learns of new messages asynchronously; wait until
			// both count theirs, as they would under a standing backlog.
			for i, prio := range prios {
				waitPending(t, cons[i], uint64(tt.submit[prio]))
			}
			f := newFetcher(t, cons, prios, []int{3, 1}, tt.strict)
			ds, err := f.Fetch(tt.n)
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]int{}
			for _, d := range ds {
				got[d.Priority]++
				_ = d.HandBack()
			}
			if got["high"] != tt.wantHigh || got["low"] != tt.wantLow {
				t.Errorf("fetched %v, want high %d low %d", got, tt.wantHigh, tt.wantLow)
			}
		})
	}
}

// waitPending waits until the consumer counts n pending messages.
func waitPending(t *testing.T, c jetstream.Consumer, n uint64) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		info, err := c.Info(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if info.NumPending == n {
			return
		}
		select {
		case <-tick.C:
		case <-deadline:
			t.Fatalf("consumer %s has %d pending, want %d", info.Name, info.NumPending, n)
		}
	}
}

func TestRetryHandBackAndDeadLetter(t *testing.T) {
	_, js, names, cons := setup(t, queue.Config{})
	p := queue.NewProducer(js, names)
	if _, _, err := p.Submit(t.Context(), queue.Task{ID: "poison", Kind: "k", Payload: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	f := newFetcher(t, cons, []string{queue.DefaultPriority}, nil, false)

	d := fetchOne(t, f)
	start := time.Now()
	if err := d.Retry(200 * time.Millisecond); err != nil {
		t.Fatal(err)
	}
	d = fetchOne(t, f)
	if waited := time.Since(start); d.Attempt != 2 || waited < 200*time.Millisecond {
		t.Errorf("retry came as attempt %d after %s, want attempt 2 after at least 200ms", d.Attempt, waited)
	}
	if err := d.HandBack(); err != nil {
		t.Fatal(err)
	}
	d = fetchOne(t, f)
	if d.Attempt != 3 {
		t.Errorf("hand-back came back as attempt %d, want 3", d.Attempt)
	}
	if err := d.DeadLetter(t.Context(), js, names, errors.New("it always fails")); err != nil {
		t.Fatal(err)
	}
	dead, err := js.Stream(t.Context(), names.DeadStream)
	if err != nil {
		t.Fatal(err)
	}
	m, err := dead.GetLastMsgForSubject(t.Context(), names.DeadSubjectOf("poison"))
	if err != nil {
		t.Fatal(err)
	}
	h := m.Header
	if h.Get(queue.HeaderTaskID) != "poison" || h.Get(queue.HeaderError) != "it always fails" ||
		h.Get(queue.HeaderAttempts) != "3" || h.Get(queue.HeaderKind) != "k" || string(m.Data) != "x" {
		t.Errorf("dead letter = headers %v, data %q", h, m.Data)
	}
	work, err := js.Stream(t.Context(), names.Stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := work.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 0 {
		t.Errorf("work queue still holds %d messages after the dead letter", info.State.Msgs)
	}
}

func TestEnsureSetsTheDuplicateWindowAndChangesIt(t *testing.T) {
	_, js := natstest.Start(t).Connect()
	names := queue.NewNames("LOOP_dup", "loops.dup")
	for _, window := range []time.Duration{time.Hour, 5 * time.Second} {
		if _, err := queue.Ensure(t.Context(), js, names, queue.Config{DuplicateWindow: window}); err != nil {
			t.Fatal(err)
		}
		s, err := js.Stream(t.Context(), names.Stream)
		if err != nil {
			t.Fatal(err)
		}
		if got := s.CachedInfo().Config.Duplicates; got != window {
			t.Errorf("after Ensure with a window of %s the stream's is %s", window, got)
		}
	}
}

func TestADelayedTaskWaitsAsideNotInTheBacklogNorAsTheOldestTask(t *testing.T) {
	_, js := natstest.Start(t).Connect()
	names := queue.NewNames("LOOP_later", "loops.later")
	if _, err := queue.Ensure(t.Context(), js, names, queue.Config{}); err != nil {
		t.Fatal(err)
	}
	p := queue.NewProducer(js, names)
	if _, _, err := p.Submit(t.Context(), queue.Task{ID: "later", Kind: "k", NotBefore: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := p.Submit(t.Context(), queue.Task{Kind: "k", NotBefore: time.Now().Add(time.Hour)}); !errors.Is(err, queue.ErrInvalidTask) {
		t.Errorf("a delayed task without an id: %v, want ErrInvalidTask", err)
	}
	b, err := queue.Observe(t.Context(), js, names, []string{queue.DefaultPriority})
	if err != nil {
		t.Fatal(err)
	}
	if pending, inFlight := b.Demand(); pending != 0 || inFlight != 0 || !b.Oldest.IsZero() {
		t.Errorf("backlog with only a delayed task: %d pending, %d in flight, oldest %s; want none", pending, inFlight, b.Oldest)
	}
	if _, _, err := p.Submit(t.Context(), queue.Task{ID: "now", Kind: "k"}); err != nil {
		t.Fatal(err)
	}
	if b, err = queue.Observe(t.Context(), js, names, []string{queue.DefaultPriority}); err != nil || b.Oldest.IsZero() {
		t.Errorf("backlog with a task to run: oldest %s, %v", b.Oldest, err)
	}
}
