//go:build e2e

package e2e

import (
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"

	loopsv1alpha1 "github.com/tenire/loop-operator/api/v1alpha1"
)

// Scenario 4: suspending a loop while tasks run drains every pod and
// reports Suspended; the tasks not run stay queued; resuming brings the
// pods back and they finish every task.
func TestSuspendingAndResumingUnderLoadDrainsEveryPodAndThenFinishesEveryTask(t *testing.T) {
	const replicas = 3
	l := newLoop(t, "suspend", replicas, nil)
	watch := l.watchPods(2)

	l.submitSleeps(3000, 300, 1200)
	l.waitFinished(300)
	l.update(func(ld *loopsv1alpha1.LoopDeployment) { ld.Spec.Suspend = true })
	t.Logf("suspended with %s", l.book.Summary())
	eventually(t, 3*time.Minute, "every pod gone and Suspended=True", func() (bool, error) {
		ld := l.get()
		return len(l.pods()) == 0 && ld.Status.ObservedGeneration == ld.Generation && ld.Status.Replicas == 0 &&
			meta.IsStatusConditionTrue(ld.Status.Conditions, loopsv1alpha1.ConditionSuspended), nil
	})
	watch.check(t)
	watch.waitDeleted(t, replicas, "suspending deletes every pod")
	if open := l.queuedEqualsOpen(); open == 0 {
		t.Error("every task finished before the pods drained; the scenario needs some left in the queue")
	}

	l.update(func(ld *loopsv1alpha1.LoopDeployment) { ld.Spec.Suspend = false })
	l.waitReady(replicas)
	if ld := l.get(); !meta.IsStatusConditionFalse(ld.Status.Conditions, loopsv1alpha1.ConditionSuspended) {
		t.Errorf("Suspended is not False after resuming: %+v", meta.FindStatusCondition(ld.Status.Conditions, loopsv1alpha1.ConditionSuspended))
	}
	l.waitAllAccounted(5 * time.Minute)
	watch.check(t)
}
