//go:build e2e

package e2e

import (
	"testing"
	"time"
)

// Scenario 7: `kubectl delete pod` of a busy worker: the worker drains on
// SIGTERM and exits before its grace period ends, a replacement comes,
// and no task is lost.
func TestDeletingABusyWorkerPodDrainsItWithinItsGracePeriod(t *testing.T) {
	const replicas = 3
	l := newLoop(t, "delpod", replicas, nil)
	watch := l.watchPods(2)

	l.submitSleeps(1500, 500, 2000)
	victim, held := l.busyPod(kindSink)
	t.Logf("deleting pod %s holding %d sink tasks, with %s", victim, held, l.book.Summary())
	took, grace := l.deletePod(victim)
	t.Logf("pod %s was gone after %s (grace period %s)", victim, took.Round(100*time.Millisecond), grace)
	if took >= grace {
		t.Errorf("pod %s took %s to go, not less than its grace period %s: it had to be killed with SIGKILL", victim, took, grace)
	}
	// SIGTERM starts the same drain as the operator's request, reported
	// the same way.
	if reason, ok := watch.drainedReason(victim); ok {
		t.Logf("pod %s reported Drained (%s) before it went", victim, reason)
	} else {
		t.Errorf("pod %s went without reporting Drained", victim)
	}

	l.waitReady(replicas)
	for _, p := range l.pods() {
		if p.Name == victim {
			t.Errorf("pod %s is still there", victim)
		}
	}
	l.waitAllAccounted(5 * time.Minute)
	watch.check(t)
}
