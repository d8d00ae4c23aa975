//go:build e2e

package e2e

import (
	"testing"
	"time"
)

// Scenario 5: a worker process killed with SIGKILL in the middle of its
// tasks loses none of them: the queue redelivers them after ackWait and
// they complete, on another pod or on the restarted process.
func TestAWorkerKilledMidTaskHasItsTasksRedeliveredAndCompleted(t *testing.T) {
	l := newLoop(t, "kill", 3, nil)

	l.submitSleeps(1200, 500, 2000)
	victim, held := l.busyPod("sleep")
	before, _ := env.Agent.Process(l.ns, victim)
	killedAt := time.Now()
	if err := env.Agent.Kill(l.ns, victim); err != nil {
		t.Fatal(err)
	}
	t.Logf("killed pod %s (pid %d) holding %d sleep tasks, with %s", victim, before.PID, held, l.book.Summary())
	eventually(t, time.Minute, "the killed worker to be restarted", func() (bool, error) {
		info, ok := env.Agent.Process(l.ns, victim)
		return ok && info.RestartCount > before.RestartCount && info.PID != 0 && info.PID != before.PID, nil
	})

	l.waitAllAccounted(5 * time.Minute)
	l.waitReady(3)

	redelivered := 0
	for _, r := range l.results() {
		if r.Attempts > 1 {
			redelivered++
			if redelivered <= 5 {
				t.Logf("task %s completed on attempt %d by %s", r.ID, r.Attempts, r.Worker)
			}
		}
	}
	t.Logf("%d tasks completed on a later delivery; the kill was %s before the end", redelivered, time.Since(killedAt).Round(time.Second))
	if redelivered == 0 {
		t.Errorf("no task completed on a second delivery; the killed worker held %d", held)
	}
}
