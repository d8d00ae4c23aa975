package queue_test

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tenire/loop-operator/internal/natstest"
	"github.com/tenire/loop-operator/worker/queue"
)

func TestEnsureRefusesAStreamOwnedByAnotherLoopDeployment(t *testing.T) {
	srv := natstest.Start(t)
	_, js := srv.Connect()
	names := queue.NewNames("SHARED", "loops.a.one")
	first := &queue.Owner{Namespace: "a", Name: "one", UID: "uid-1"}
	if _, err := queue.Ensure(t.Context(), js, names, queue.Config{Owner: first, Priorities: []string{"high"}}); err != nil {
		t.Fatal(err)
	}
	second := &queue.Owner{Namespace: "b", Name: "two", UID: "uid-2"}
	_, err := queue.Ensure(t.Context(), js, queue.NewNames("SHARED", "loops.b.two"), queue.Config{Owner: second})
	var owned *queue.OwnedElsewhereError
	if !errors.As(err, &owned) || !errors.Is(err, queue.ErrOwnedElsewhere) {
		t.Fatalf("Ensure by a second owner: got %v, want an OwnedElsewhereError", err)
	}
	if owned.Owner != *first {
		t.Errorf("the error names %v, want the first owner %v", owned.Owner, *first)
	}
	s, err := js.Stream(t.Context(), "SHARED")
	if err != nil {
		t.Fatal(err)
	}
	if got := s.CachedInfo().Config.Subjects; !slices.Equal(got, []string{"loops.a.one.tasks.high", "loops.a.one.scheduled.high.>"}) {
		t.Errorf("the refused Ensure changed the stream's subjects to %v", got)
	}
	if _, err := queue.Ensure(t.Context(), js, names, queue.Config{Owner: first, Priorities: []string{"high"}}); err != nil {
		t.Errorf("the owner's own Ensure again: %v", err)
	}
}

func TestEnsureAdoptsAStreamThatRecordsNoOwner(t *testing.T) {
	_, js, names, _ := setup(t, queue.Config{})
	o := &queue.Owner{Namespace: "ns", Name: "demo", UID: "uid-1"}
	if _, err := queue.Ensure(t.Context(), js, names, queue.Config{Owner: o}); err != nil {
		t.Fatalf("adopting a stream without an owner: %v", err)
	}
	s, err := js.Stream(t.Context(), names.Stream)
	if err != nil {
		t.Fatal(err)
	}
	if got, ok := queue.OwnerOf(s.CachedInfo().Config.Metadata); !ok || got != *o {
		t.Errorf("the stream records owner %v (%v), want %v", got, ok, *o)
	}
}

func TestAPublishToAPriorityTheLoopDoesNotHaveFails(t *testing.T) {
	_, js, names, _ := setup(t, queue.Config{Priorities: []string{"high", "low"}})
	p := queue.NewProducer(js, names)
	if _, _, err := p.Submit(t.Context(), queue.Task{Kind: "k", Priority: "low"}); err != nil {
		t.Fatalf("a listed priority: %v", err)
	}
	if _, _, err := p.Submit(t.Context(), queue.Task{Kind: "k", Priority: "urgent"}); err == nil {
		t.Fatal("a task to an unlisted priority was accepted: it would wait forever with no consumer")
	}
	if _, err := js.Publish(t.Context(), names.TaskSubject("urgent"), []byte("raw")); err == nil {
		t.Fatal("a raw JetStream publish to an unlisted priority was accepted")
	}
}

func TestBindNamesWhatIsNotProvisionedAndNeverCreatesIt(t *testing.T) {
	srv := natstest.Start(t)
	_, js := srv.Connect()
	names := queue.NewNames("LOOP_bind", "loops.bind")
	_, err := queue.Bind(t.Context(), js, names, []string{"high"}, 0)
	if !errors.Is(err, queue.ErrNotProvisioned) {
		t.Fatalf("Bind before provisioning: got %v, want ErrNotProvisioned", err)
	}
	if _, err := js.Stream(t.Context(), names.Stream); err == nil {
		t.Fatal("Bind created the stream")
	}
	if _, err := queue.Ensure(t.Context(), js, names, queue.Config{Priorities: []string{"high"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := queue.Bind(t.Context(), js, names, []string{"high", "low"}, 0); !errors.Is(err, queue.ErrNotProvisioned) {
		t.Errorf("Bind of a priority with no consumer: got %v, want ErrNotProvisioned", err)
	}
	if _, err := queue.Bind(t.Context(), js, names, []string{"high"}, time.Hour); !errors.Is(err, queue.ErrNotProvisioned) {
		t.Errorf("Bind with results but no result stream: got %v, want ErrNotProvisioned", err)
	}
	cons, err := queue.Bind(t.Context(), js, names, []string{"high"}, 0)
	if err != nil || len(cons) != 1 {
		t.Fatalf("Bind after provisioning: %d consumers, %v", len(cons), err)
	}
}

func TestRetireMovesEveryPendingTaskOfARemovedPriorityThenDeletesItsConsumer(t *testing.T) {
	_, js, names, _ := setup(t, queue.Config{Priorities: []string{"high", "low"}})
	p := queue.NewProducer(js, names)
	const n = 25
	for i := range n {
		if _, _, err := p.Submit(t.Context(), queue.Task{ID: fmt.Sprintf("t%d", i), Kind: "k", Priority: "high"}); err != nil {
			t.Fatal(err)
		}
	}
	// The loop drops "high": its subject leaves the stream, its consumer stays.
	if _, err := queue.Ensure(t.Context(), js, names, queue.Config{Priorities: []string{"low"}}); err != nil {
		t.Fatalf("Ensure without the priority that holds tasks: %v", err)
	}
	b, err := queue.Observe(t.Context(), js, names, []string{"low"})
	if err != nil {
		t.Fatal(err)
	}
	if len(b.Priorities) != 2 || !b.Priorities[1].Retiring || b.Priorities[1].Pending != n {
		t.Fatalf("Observe after the removal: %+v, want low then a retiring high with %d pending", b.Priorities, n)
	}
	moved, gone := 0, false
	for range 10 {
		m, g, err := queue.Retire(t.Context(), js, names.Stream, names, "high", "low", 10)
		if err != nil {
			t.Fatal(err)
		}
		moved += m
		if gone = g; gone {
			break
		}
	}
	if moved != n || !gone {
		t.Fatalf("Retire moved %d of %d tasks, consumer gone %v", moved, n, gone)
	}
	b, err = queue.Observe(t.Context(), js, names, []string{"low"})
	if err != nil {
		t.Fatal(err)
	}
	if len(b.Priorities) != 1 || b.Priorities[0].Pending != n {
		t.Fatalf("after retiring: %+v, want every task pending on low", b.Priorities)
	}
	if b.Oldest.IsZero() {
		t.Error("Observe reports no oldest task while tasks wait")
	}
	// Every task id arrives once on the listed priority.
	cons, err := queue.Bind(t.Context(), js, names, []string{"low"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	msgs, err := cons[0].Fetch(n, jetstreamWait(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for m := range msgs.Messages() {
		seen[m.Headers().Get(queue.HeaderTaskID)]++
		if m.Headers().Get(queue.HeaderMovedFrom) != "high" {
			t.Errorf("a moved task does not say where it came from: %v", m.Headers())
		}
	}
	for i := range n {
		if id := fmt.Sprintf("t%d", i); seen[id] != 1 {
			t.Errorf("task %s arrived %d times, want once", id, seen[id])
		}
	}
}

func jetstreamWait(d time.Duration) jetstream.FetchOpt { return jetstream.FetchMaxWait(d) }

// A removed priority's delayed tasks move with their time: one due later
// than the margin moves to the delayed subject of the priority it goes
// to, and fires there; one due sooner is left to fire into the old
// priority, whose consumer stays until it has fired and moved. The
// consumer goes only when nothing of the priority is left, so that no
// delayed task fires where nothing reads it.
func TestRetireMovesTheDelayedTasksOfARemovedPriorityWithTheirTime(t *testing.T) {
	t.Cleanup(queue.SetDelayedMoveMargin(2 * time.Second))
	_, js, names, _ := setup(t, queue.Config{Priorities: []string{"high", "low"}})
	p := queue.NewProducer(js, names)
	now := time.Now()
	later := now.Add(time.Hour)
	for id, at := range map[string]time.Time{"soon": now.Add(time.Second), "mid": now.Add(4 * time.Second), "later": later} {
		if _, _, err := p.Submit(t.Context(), queue.Task{ID: id, Kind: "k", Priority: "high", NotBefore: at}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := queue.Ensure(t.Context(), js, names, queue.Config{Priorities: []string{"low"}}); err != nil {
		t.Fatal(err)
	}
	moved := 0
	for gone := false; !gone; {
		m, g, err := queue.Retire(t.Context(), js, names.Stream, names, "high", "low", 10)
		if err != nil {
			t.Fatal(err)
		}
		moved, gone = moved+m, g
		if !gone {
			select {
			case <-t.Context().Done():
				t.Fatal("the retired consumer never went")
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	if moved != 3 {
		t.Errorf("Retire moved %d tasks, want 3 (each once)", moved)
	}
	s, err := js.Stream(t.Context(), names.Stream)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetMsg(t.Context(), 1, jetstream.WithGetMsgSubject(names.ScheduledSubjects("high"))); !errors.Is(err, jetstream.ErrMsgNotFound) {
		t.Errorf("a delayed task is left on the removed priority: %v", err)
	}
	m, err := s.GetLastMsgForSubject(t.Context(), names.ScheduledSubject("low", "later"))
	if err != nil {
		t.Fatalf("the task due in an hour did not move to low's delayed subject: %v", err)
	}
	if got, want := m.Header.Get(queue.HeaderSchedule), "@at "+later.UTC().Format(time.RFC3339Nano); got != want {
		t.Errorf("the moved task's schedule is %q, want %q", got, want)
	}
	if got := m.Header.Get(queue.HeaderScheduleTarget); got != names.TaskSubject("low") {
		t.Errorf("the moved task fires into %q, want %q", got, names.TaskSubject("low"))
	}
	// The two due soon arrive on low, once each.
	cons, err := queue.Bind(t.Context(), js, names, []string{"low"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for deadline := time.Now().Add(30 * time.Second); len(seen) < 2 && time.Now().Before(deadline); {
		msgs, err := cons[0].Fetch(2, jetstreamWait(time.Second))
		if err != nil {
			t.Fatal(err)
		}
		for m := range msgs.Messages() {
			seen[m.Headers().Get(queue.HeaderTaskID)]++
			if m.Headers().Get(queue.HeaderMovedFrom) != "high" {
				t.Errorf("a moved task does not say where it came from: %v", m.Headers())
			}
			if err := m.Ack(); err != nil {
				t.Fatal(err)
			}
		}
	}
	if seen["soon"] != 1 || seen["mid"] != 1 || len(seen) != 2 {
		t.Errorf("tasks that arrived on low: %v, want soon and mid once each", seen)
	}
}

// A removed priority whose consumer is already gone (deleted by hand, or
// by an operator from before delayed tasks moved) still has its delayed
// tasks moved, however soon they are due: nothing would read them where
// they fire.
func TestRetireMovesTheDelayedTasksOfAPriorityWhoseConsumerIsGone(t *testing.T) {
	// "soon" is within the margin: with its consumer, it would stay.
	t.Cleanup(queue.SetDelayedMoveMargin(time.Hour))
	_, js, names, _ := setup(t, queue.Config{Priorities: []string{"high", "low"}})
	p := queue.NewProducer(js, names)
	for id, in := range map[string]time.Duration{"soon": time.Minute, "later": 2 * time.Hour} {
		if _, _, err := p.Submit(t.Context(), queue.Task{ID: id, Kind: "k", Priority: "high", NotBefore: time.Now().Add(in)}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := queue.Ensure(t.Context(), js, names, queue.Config{Priorities: []string{"low"}}); err != nil {
		t.Fatal(err)
	}
	if err := js.DeleteConsumer(t.Context(), names.Stream, names.Consumer("high")); err != nil {
		t.Fatal(err)
	}
	moved, gone, err := queue.Retire(t.Context(), js, names.Stream, names, "high", "low", 10)
	if err != nil || !gone || moved != 2 {
		t.Fatalf("Retire = %d moved, gone %v, %v; want both moved and the priority gone", moved, gone, err)
	}
	s, err := js.Stream(t.Context(), names.Stream)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"soon", "later"} {
		if _, err := s.GetLastMsgForSubject(t.Context(), names.ScheduledSubject("low", id)); err != nil {
			t.Errorf("delayed task %s is not on low's delayed subject: %v", id, err)
		}
	}
}

func TestARenamedStreamHandsEveryTaskToTheNewOne(t *testing.T) {
	srv := natstest.Start(t)
	_, js := srv.Connect()
	owner := &queue.Owner{Namespace: "ns", Name: "demo", UID: "uid-1"}
	old := queue.NewNames("OLD", "loops.ns.demo")
	if _, err := queue.Ensure(t.Context(), js, old, queue.Config{Owner: owner, Priorities: []string{"high", "low"}}); err != nil {
		t.Fatal(err)
	}
	p := queue.NewProducer(js, old)
	const n = 12
	for i := range n {
		prio := []string{"high", "low"}[i%2]
		if _, _, err := p.Submit(t.Context(), queue.Task{ID: fmt.Sprintf("t%d", i), Kind: "k", Priority: prio}); err != nil {
			t.Fatal(err)
		}
	}
	// And a delayed one, of the priority the renamed loop no longer has.
	if _, _, err := p.Submit(t.Context(), queue.Task{ID: "delayed", Kind: "k", Priority: "low", NotBefore: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	consumers, exists, err := queue.RetireStream(t.Context(), js, "OLD", owner)
	if err != nil || !exists {
		t.Fatalf("RetireStream: exists %v, %v", exists, err)
	}
	renamed := queue.NewNames("NEW", "loops.ns.demo")
	if _, err := queue.Ensure(t.Context(), js, renamed, queue.Config{Owner: owner, Priorities: []string{"high"}}); err != nil {
		t.Fatalf("the new stream cannot take the task subjects: %v", err)
	}
	for _, c := range consumers {
		to := c
		if c != "high" {
			to = "high" // a priority the renamed loop no longer has
		}
		for gone := false; !gone; {
			if _, gone, err = queue.Retire(t.Context(), js, "OLD", renamed, c, to, 5); err != nil {
				t.Fatal(err)
			}
		}
	}
	b, err := queue.Observe(t.Context(), js, renamed, []string{"high"})
	if err != nil {
		t.Fatal(err)
	}
	if pending, _ := b.Demand(); pending != n {
		t.Fatalf("the new stream holds %d tasks, want %d", pending, n)
	}
	s, err := js.Stream(t.Context(), "OLD")
	if err != nil {
		t.Fatal(err)
	}
	if msgs := s.CachedInfo().State.Msgs; msgs != 0 {
		t.Errorf("the old stream still holds %d tasks", msgs)
	}
	s, err = js.Stream(t.Context(), "NEW")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetLastMsgForSubject(t.Context(), renamed.ScheduledSubject("high", "delayed")); err != nil {
		t.Errorf("the delayed task is not in the new stream: %v", err)
	}
}
