package loop_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/tenire/loop-operator/worker/loop"
	"github.com/tenire/loop-operator/worker/queue"
)

// announcing is a loop named worker, announcing every interval, whose
// "hold" tasks run until release is closed, and a subscriber to its
// announcements.
type announcing struct {
	*running
	e       *env
	release chan struct{}
	next    func(what string, ok func(loop.Announcement) bool)
}

func startAnnouncing(t *testing.T, worker string, interval time.Duration) *announcing {
	t.Helper()
	e := newEnv(t)
	nc, _ := e.srv.Connect()
	sub, err := nc.SubscribeSync(names.StatusSubject())
	if err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	cfg := e.config(t)
	cfg.Worker = worker
	cfg.AnnounceInterval = interval
	l := start(t, cfg, map[string]loop.Handler{
		"hold": func(ctx context.Context, _ *loop.Task) error {
			select {
			case <-release:
			case <-ctx.Done():
			}
			return nil
		},
	})
	// next waits up to 10s for an announcement of worker for which ok holds.
	next := func(what string, ok func(loop.Announcement) bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			m, err := sub.NextMsg(time.Until(deadline))
			if err != nil {
				t.Fatalf("no announcement of %s: %v", what, err)
			}
			var a loop.Announcement
			if err := json.Unmarshal(m.Data, &a); err != nil {
				t.Fatalf("announcement %q: %v", m.Data, err)
			}
			if a.Worker != worker {
				t.Fatalf("announcement from %q, want %s", a.Worker, worker)
			}
			if ok(a) {
				return
			}
		}
	}
	return &announcing{running: l, e: e, release: release, next: next}
}

func held(a loop.Announcement) int { return a.Status.InFlightByKind["hold"] }

func TestTheLoopAnnouncesItsStatusWithItsInFlightTasks(t *testing.T) {
	a := startAnnouncing(t, "worker-7", 50*time.Millisecond)
	defer close(a.release)
	a.e.submit(t, queue.Task{ID: "a", Kind: "hold"}, queue.Task{ID: "b", Kind: "hold"})
	eventually(t, "both tasks to be held", func() bool { return a.Status().InFlightByKind["hold"] == 2 })
	a.next("both tasks in flight", func(an loop.Announcement) bool { return an.Status.State == "Running" && held(an) == 2 })
}

// TestTheLoopAnnouncesAtOnceWhenItGoesBusyOrIdle: with announcements an
// hour apart, the worker still announces its first task and its return to
// idle at once: the operator deletes a pod it believes idle instead of
// draining it, so it must not believe that for long.
func TestTheLoopAnnouncesAtOnceWhenItGoesBusyOrIdle(t *testing.T) {
	a := startAnnouncing(t, "worker-8", time.Hour)
	a.e.submit(t, queue.Task{ID: "a", Kind: "hold"})
	a.next("the first task", func(an loop.Announcement) bool { return held(an) == 1 })
	close(a.release)
	a.next("the return to idle", func(an loop.Announcement) bool { return held(an) == 0 })
}
