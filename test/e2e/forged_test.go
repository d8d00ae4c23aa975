//go:build e2e

package e2e

import (
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	loopsv1alpha1 "github.com/tenire/loop-operator/api/v1alpha1"
	"github.com/tenire/loop-operator/api/v1alpha1/contract"
)

// Scenario 12: a Drained report that nobody asked for (forged here with the suite's own
// credentials, past the admission policy that stops a worker's token from
// writing another pod) is ignored: the operator says so in an event and
// keeps the pod, which goes on working; nothing is lost and no pod goes.
func TestAForgedDrainedReportIsIgnoredAndThePodKeepsWorking(t *testing.T) {
	const replicas = 2
	l := newLoop(t, "forged", replicas, nil)
	watch := l.watchPods(2)

	l.submitSleeps(1000, 200, 800)
	l.waitFinished(50)
	victim := l.pods()[0]
	forged := victim.DeepCopy()
	forged.Status.Conditions = append(forged.Status.Conditions,
		contract.DrainedCondition(false, "forged: drained in 0s: 0 finished, 0 handed back", time.Now()))
	forgedAt := time.Now()
	if err := env.Client.Status().Update(t.Context(), forged); err != nil {
		t.Fatalf("forging the Drained report: %v", err)
	}
	t.Logf("forged %s=True on pod %s, with %s", contract.PodConditionDrained, victim.Name, l.book.Summary())

	eventually(t, time.Minute, "an UnrequestedDrainReport event for "+victim.Name, func() (bool, error) {
		events, err := env.Clientset.CoreV1().Events(l.ns).List(t.Context(), metav1.ListOptions{FieldSelector: "reason=" + loopsv1alpha1.EventUnrequestedDrainReport})
		if err != nil {
			return false, err
		}
		for _, e := range events.Items {
			if strings.Contains(e.Message, victim.Name) {
				t.Logf("event %s: %s", e.Reason, e.Message)
				return true, nil
			}
		}
		return false, nil
	})

	l.waitAllAccounted(5 * time.Minute)
	pod := &corev1.Pod{}
	if err := env.Client.Get(t.Context(), clientKey(l.ns, victim.Name), pod); err != nil {
		t.Fatalf("pod %s with the forged report: %v", victim.Name, err)
	}
	if pod.DeletionTimestamp != nil || contract.DrainRequested(pod) {
		t.Errorf("pod %s with the forged report is terminating (%v) or asked to drain (%v)", victim.Name, pod.DeletionTimestamp != nil, contract.DrainRequested(pod))
	}
	if watch.wasDeleted(victim.Name) {
		t.Errorf("pod %s was deleted", victim.Name)
	}
	after := 0
	for _, r := range l.results() {
		if r.Worker == victim.Name && r.Start.After(forgedAt) {
			after++
		}
	}
	t.Logf("pod %s started and completed %d tasks after the forged report", victim.Name, after)
	if after == 0 {
		t.Errorf("pod %s completed no task started after the forged report: it stopped working", victim.Name)
	}
	l.waitReady(replicas)
	watch.check(t)
}
