//go:build e2e

package e2e

import (
	"testing"
	"time"
)

// Scenario 5: a worker killed with SIGKILL in the middle of its tasks (its
// process in local mode, its container in kind mode; no drain either way)
// loses none of them: the queue redelivers them after ackWait and they
// complete, on another pod or on the restarted worker.
func TestAWorkerKilledMidTaskHasItsTasksRedeliveredAndCompleted(t *testing.T) {
	l := newLoop(t, "kill", 3, nil)

	l.submitSleeps(1200, 500, 2000)
	victim, held := l.busyPod(kindSink)
	before, err := env.Worker(t.Context(), l.ns, victim)
	if err != nil {
		t.Fatal(err)
	}
	l.allowDuplicates(20, "a task that finished at the sink on the killed worker whose ack died with it runs again: at most its pool's 20 slots")
	killedAt := time.Now()
	if err := env.KillWorker(t.Context(), l.ns, victim); err != nil {
		t.Fatal(err)
	}
	t.Logf("killed the worker of pod %s (%s) holding %d sink tasks, with %s", victim, before.ID, held, l.book.Summary())
	eventually(t, time.Minute, "the killed worker to be restarted", func() (bool, error) {
		run, err := env.Worker(t.Context(), l.ns, victim)
		return err == nil && run.Restarts > before.Restarts && run.ID != "" && run.ID != before.ID, err
	})

	l.waitAllAccounted(5 * time.Minute)
	l.waitReady(3)

	redelivered := 0
	for _, r := range l.results() {
		if r.Deliveries > 1 {
			redelivered++
			if redelivered <= 5 {
				t.Logf("task %s completed on delivery %d (attempt %d: a crash is not a failure of the task) by %s", r.ID, r.Deliveries, r.Attempts, r.Worker)
			}
		}
	}
	t.Logf("%d tasks completed on a later delivery; the kill was %s before the end", redelivered, time.Since(killedAt).Round(time.Second))
	if redelivered == 0 {
		t.Errorf("no task completed on a second delivery; the killed worker held %d", held)
	}
}
