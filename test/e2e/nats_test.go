//go:build e2e

package e2e

import (
	"testing"
	"time"
)

// Scenario 10: NATS restarts while tasks run (the process in local mode,
// the pod of its StatefulSet in kind mode); the workers reconnect and no
// task is lost (JetStream keeps the streams and consumers on disk: the
// store folder, or the pod's PersistentVolumeClaim).
func TestARestartOfNATSUnderLoadLosesNothing(t *testing.T) {
	const replicas = 3
	l := newLoop(t, "nats", replicas, nil)
	t.Cleanup(func() {
		if err := env.StartNATS(); err != nil {
			t.Errorf("starting NATS again: %v", err)
		}
	})

	l.submitSleeps(2000, 100, 800)
	l.waitFinished(300)
	restarts := map[string]int32{}
	for _, p := range l.pods() {
		run, _ := env.Worker(t.Context(), l.ns, p.Name)
		restarts[p.Name] = run.Restarts
	}
	l.allowDuplicates(replicas*20, "a task that finished at the sink while NATS was down loses its ack and runs again: at most the tasks in flight, 3 pools of 20")
	if err := env.RestartNATS(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Logf("restarted NATS with %s", l.book.Summary())

	l.waitAllAccounted(5 * time.Minute)
	l.waitReady(replicas)
	for _, p := range l.pods() {
		run, _ := env.Worker(t.Context(), l.ns, p.Name)
		if before, ok := restarts[p.Name]; ok && run.Restarts != before {
			t.Logf("pod %s restarted its worker %d time(s) across the NATS restart", p.Name, run.Restarts-before)
		}
	}
}
