package loop_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/tenire/loop-operator/worker/loop"
	"github.com/tenire/loop-operator/worker/queue"
)

func TestTheLoopAnnouncesItsStatusWithItsInFlightTasks(t *testing.T) {
	e := newEnv(t)
	nc, _ := e.srv.Connect()
	sub, err := nc.SubscribeSync(names.StatusSubject())
	if err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	cfg := e.config(t)
	cfg.Worker = "worker-7"
	cfg.AnnounceInterval = 50 * time.Millisecond
	l := start(t, cfg, map[string]loop.Handler{
		"hold": func(ctx context.Context, _ *loop.Task) error {
			select {
			case <-release:
			case <-ctx.Done():
			}
			return nil
		},
	})
	defer close(release)
	e.submit(t, queue.Task{ID: "a", Kind: "hold"}, queue.Task{ID: "b", Kind: "hold"})
	eventually(t, "both tasks to be held", func() bool { return l.Status().InFlightByKind["hold"] == 2 })

	deadline := time.Now().Add(10 * time.Second)
	for {
		m, err := sub.NextMsg(time.Until(deadline))
		if err != nil {
			t.Fatalf("no announcement with both tasks in flight: %v", err)
		}
		var a loop.Announcement
		if err := json.Unmarshal(m.Data, &a); err != nil {
			t.Fatalf("announcement %q: %v", m.Data, err)
		}
		if a.Worker != "worker-7" {
			t.Fatalf("announcement from %q, want worker-7", a.Worker)
		}
		if a.Status.State == "Running" && a.Status.InFlightByKind["hold"] == 2 {
			return
		}
	}
}

// TestTheLoopAnnouncesAtOnceWhenItGoesBusyOrIdle: with announcements an
// hour apart, the worker still announces its first task and its return to
// idle at once: the operator deletes a pod it believes idle instead of
// draining it, so it must not believe that for long.
func TestTheLoopAnnouncesAtOnceWhenItGoesBusyOrIdle(t *testing.T) {
	e := newEnv(t)
	nc, _ := e.srv.Connect()
	sub, err := nc.SubscribeSync(names.StatusSubject())
	if err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	cfg := e.config(t)
	cfg.Worker = "worker-8"
	cfg.AnnounceInterval = time.Hour
	start(t, cfg, map[string]loop.Handler{
		"hold": func(ctx context.Context, _ *loop.Task) error {
			select {
			case <-release:
			case <-ctx.Done():
			}
			return nil
		},
	})
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
			if ok(a) {
				return
			}
		}
	}
	held := func(a loop.Announcement) int { return a.Status.InFlightByKind["hold"] }
	e.submit(t, queue.Task{ID: "a", Kind: "hold"})
	next("the first task", func(a loop.Announcement) bool { return held(a) == 1 })
	close(release)
	next("the return to idle", func(a loop.Announcement) bool { return held(a) == 0 })
}
