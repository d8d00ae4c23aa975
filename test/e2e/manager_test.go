//go:build e2e

package e2e

import (
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	loopsv1alpha1 "github.com/tenire/loop-operator/api/v1alpha1"
	"github.com/tenire/loop-operator/api/v1alpha1/contract"
)

// Scenario 6: the manager killed while pods drain, and started again,
// finishes those drains (their state lives in the API server): the pods
// are deleted after they report Drained and no task is lost.
func TestTheManagerKilledMidDrainFinishesTheDrainOnceItIsBack(t *testing.T) {
	l := newLoop(t, "manager", 4, func(ld *loopsv1alpha1.LoopDeployment) {
		ld.Spec.Drain.Timeout = &metav1.Duration{Duration: 2 * time.Minute}
	})
	// Registered after newLoop, so it runs before the LoopDeployment's
	// clean-up, which needs a manager to release it. StartManager does
	// nothing when the manager runs.
	t.Cleanup(func() {
		if err := env.StartManager(); err != nil {
			t.Errorf("starting the manager again: %v", err)
		}
	})
	watch := l.watchPods(2)

	l.submitSleeps(400, 2000, 4000)
	l.waitFinished(40)
	l.scale(2)
	var draining []string
	eventually(t, time.Minute, "a pod asked to drain", func() (bool, error) {
		draining = draining[:0]
		for _, p := range l.pods() {
			if contract.DrainRequested(&p) {
				draining = append(draining, p.Name)
			}
		}
		return len(draining) > 0, nil
	})
	if err := env.KillManager(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Logf("killed the manager while %v drained, with %s", draining, l.book.Summary())

	// With no manager, a pod that reports Drained stays: nobody deletes it.
	eventually(t, time.Minute, "a draining pod to report Drained", func() (bool, error) {
		for _, p := range l.pods() {
			if _, ok := contract.Drained(&p); ok {
				t.Logf("pod %s reported Drained and waits for the manager", p.Name)
				return true, nil
			}
		}
		return false, nil
	})
	if err := env.StartManager(); err != nil {
		t.Fatal(err)
	}
	t.Logf("started the manager again")

	l.waitReady(2)
	l.waitAllAccounted(5 * time.Minute)
	watch.check(t)
	for _, name := range draining {
		if !watch.wasDeleted(name) {
			t.Errorf("pod %s, draining when the manager died, was not deleted", name)
		}
	}
	watch.waitDeleted(t, 2, "scaling 4→2 deletes 2")
}
