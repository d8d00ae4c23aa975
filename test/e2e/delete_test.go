//go:build e2e

package e2e

import (
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	loopsv1alpha1 "github.com/tenire/loop-operator/api/v1alpha1"
	"github.com/tenire/loop-operator/api/v1alpha1/contract"
)

// Scenario 3: deleting a LoopDeployment while tasks run drains every pod
// before the finalizer lets it go; tasks that did not run stay queued, and
// a LoopDeployment created again with the same name runs them all.
func TestDeletingTheLoopDeploymentUnderLoadDrainsEveryPodFirstAndKeepsTheQueue(t *testing.T) {
	const replicas = 3
	l := newLoop(t, "delete", replicas, nil)
	watch := l.watchPods(2)

	l.submitSleeps(3000, 300, 1200)
	l.waitFinished(300)
	ld := l.get()
	if !controllerutil.ContainsFinalizer(ld, loopsv1alpha1.FinalizerDrain) {
		t.Fatalf("the LoopDeployment has no %s finalizer: %v", loopsv1alpha1.FinalizerDrain, ld.Finalizers)
	}
	if err := env.Client.Delete(t.Context(), ld); err != nil {
		t.Fatal(err)
	}
	t.Logf("deleted the LoopDeployment with %s", l.book.Summary())

	// While the LoopDeployment exists it may have any pods; once it is gone,
	// no pod of it may be left that was not already deleted after
	// reporting Drained (the watch checks the latter). Reading the
	// LoopDeployment first and the pods second makes a pod seen serving
	// after the LoopDeployment was seen gone a real violation.
	heldWithPods := false
	eventually(t, 3*time.Minute, "the LoopDeployment to be gone", func() (bool, error) {
		err := env.Client.Get(t.Context(), l.key(), &loopsv1alpha1.LoopDeployment{})
		if err != nil && !apierrors.IsNotFound(err) {
			return false, err
		}
		gone := apierrors.IsNotFound(err)
		pods := l.pods()
		for _, p := range pods {
			if gone && p.DeletionTimestamp == nil {
				t.Errorf("the LoopDeployment is gone but its pod %s is not being deleted", p.Name)
				return true, nil
			}
		}
		if !gone && len(pods) > 0 {
			heldWithPods = true
		}
		return gone, nil
	})
	if !heldWithPods {
		t.Error("the LoopDeployment was never seen held while pods were left")
	}
	eventually(t, 2*time.Minute, "every pod to be gone", func() (bool, error) { return len(l.pods()) == 0, nil })
	watch.check(t)
	watch.waitDeleted(t, replicas, "deleting the loop deletes every pod")
	l.checkRemovals(watch)
	for _, name := range watch.deleted {
		if watch.deletedDirectly(name) {
			continue // idle when its worker last announced: no drain, no report
		}
		if r, ok := watch.drainedReason(name); !ok || r != contract.DrainedReasonCompleted {
			t.Errorf("pod %s was deleted with Drained reason %q (reported: %v), want %s", name, r, ok, contract.DrainedReasonCompleted)
		}
	}

	// Nothing lost: what is open in the ledger is still in the stream.
	if open := l.queuedEqualsOpen(); open == 0 {
		t.Error("every task finished before the pods drained; the scenario needs some left in the queue")
	}

	l.create(replicas, nil)
	l.waitReady(replicas)
	l.waitAllAccounted(5 * time.Minute)
}
