//go:build e2e

package e2e

import (
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	loopsv1alpha1 "github.com/tenire/loop-operator/api/v1alpha1"
)

// Scenario 2: a change of the pod template while tasks run rolls every pod
// over to the new revision, new pods first (surge), old ones drained no
// more than drain.maxConcurrent at a time, and no task is lost; also with
// updateStrategy.maxUnavailable, where old pods go before their
// replacements are Ready.
func TestChangingTheTemplateUnderLoadRollsEveryPodOverWithoutLosingATask(t *testing.T) {
	for _, tc := range []struct {
		name        string
		unavailable *intstr.IntOrString
	}{
		{"every replica stays Ready", nil},
		{"one replica may be unavailable", ptr.To(intstr.FromInt32(1))},
	} {
		t.Run(tc.name, func(t *testing.T) { rollUnderLoad(t, tc.unavailable) })
	}
}

func rollUnderLoad(t *testing.T, unavailable *intstr.IntOrString) {
	const replicas = 4
	l := newLoop(t, "rollout", replicas, func(ld *loopsv1alpha1.LoopDeployment) {
		ld.Spec.UpdateStrategy.MaxSurge = ptr.To(intstr.FromInt32(1))
		ld.Spec.UpdateStrategy.MaxUnavailable = unavailable
	})
	watch := l.watchPods(2)
	before := l.get().Status.UpdateRevision
	oldPods := map[string]bool{}
	for _, p := range l.pods() {
		oldPods[p.Name] = true
	}

	l.submitSleeps(5000, 100, 800)
	l.waitFinished(300)
	watch.trackServing()
	l.update(func(ld *loopsv1alpha1.LoopDeployment) {
		c := &ld.Spec.Template.Spec.Containers[0]
		c.Env = append(c.Env, corev1.EnvVar{Name: "E2E_ROLLOUT", Value: "2"})
	})
	t.Logf("template changed with %s", l.book.Summary())
	l.waitReady(replicas)
	fewest := watch.fewestServing()
	t.Logf("rollout done with %s; at the fewest %d pods Ready and not terminating", l.book.Summary(), fewest)
	l.waitAllAccounted(5 * time.Minute)
	l.waitReady(replicas)
	watch.check(t)
	floor := replicas
	if unavailable != nil {
		floor -= unavailable.IntValue()
	}
	if fewest < floor {
		t.Errorf("%d pods were Ready and not terminating at the fewest during the rollout; the strategy keeps at least %d", fewest, floor)
	}

	ld := l.get()
	if ld.Status.UpdateRevision == before || ld.Status.UpdateRevision == "" {
		t.Errorf("status.updateRevision is %q, was %q before the change", ld.Status.UpdateRevision, before)
	}
	if ld.Status.UpdatedReplicas != replicas {
		t.Errorf("status.updatedReplicas is %d, want %d", ld.Status.UpdatedReplicas, replicas)
	}
	for _, p := range l.pods() {
		if oldPods[p.Name] {
			t.Errorf("pod %s of the old revision is still there", p.Name)
		}
		if rev := p.Labels[loopsv1alpha1.LabelRevision]; rev != ld.Status.UpdateRevision {
			t.Errorf("pod %s has revision %q, want %q", p.Name, rev, ld.Status.UpdateRevision)
		}
		if !slices.Contains(p.Spec.Containers[0].Env, corev1.EnvVar{Name: "E2E_ROLLOUT", Value: "2"}) {
			t.Errorf("pod %s lacks the new env var: %v", p.Name, p.Spec.Containers[0].Env)
		}
	}
	for name := range oldPods {
		if !watch.wasDeleted(name) {
			t.Errorf("old pod %s was not seen deleted", name)
		}
	}
}
