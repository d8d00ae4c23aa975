//go:build e2e

package e2e

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
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
	pod := &corev1.Pod{}
	if err := env.Client.Get(t.Context(), clientKey(l.ns, victim), pod); err != nil {
		t.Fatal(err)
	}
	grace := time.Duration(*pod.Spec.TerminationGracePeriodSeconds) * time.Second
	start := time.Now()
	if out, err := kubectl(t, "-n", l.ns, "delete", "pod", victim, "--wait=false"); err != nil {
		t.Fatalf("kubectl delete pod: %v\n%s", err, out)
	}
	t.Logf("deleted pod %s holding %d sink tasks (grace period %s), with %s", victim, held, grace, l.book.Summary())
	eventually(t, grace+30*time.Second, "the deleted pod to be gone", func() (bool, error) {
		err := env.Client.Get(t.Context(), clientKey(l.ns, victim), &corev1.Pod{})
		if apierrors.IsNotFound(err) {
			return true, nil
		}
		return false, err
	})
	took := time.Since(start)
	t.Logf("pod %s was gone after %s", victim, took.Round(100*time.Millisecond))
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
