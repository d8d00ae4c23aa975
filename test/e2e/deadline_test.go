//go:build e2e

package e2e

import (
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	loopsv1alpha1 "github.com/tenire/loop-operator/api/v1alpha1"
	"github.com/tenire/loop-operator/api/v1alpha1/contract"
)

// Scenario 8: a drain deadline shorter than a task. The pod running a
// long `count` task is drained (by a rollout) with a 3 s deadline: the
// task is handed back at the deadline, reported as DeadlineExceeded, and
// resumes from its last checkpoint on the new pod, where it completes.
func TestATaskLongerThanTheDrainDeadlineIsHandedBackAndResumesFromItsCheckpoint(t *testing.T) {
	const (
		id     = "count-long"
		to     = 80
		stepMs = 250 // 20 s in all
	)
	l := newLoop(t, "deadline", 1, func(ld *loopsv1alpha1.LoopDeployment) {
		ld.Spec.Drain.Timeout = &metav1.Duration{Duration: 3 * time.Second}
		ld.Spec.UpdateStrategy.MaxSurge = ptr.To(intstr.FromInt32(1))
	})
	watch := l.watchPods(2)
	first := l.pods()[0].Name

	l.submit(id, "count", `{"to": `+strconv.Itoa(to)+`, "stepMs": `+strconv.Itoa(stepMs)+`}`)
	eventually(t, time.Minute, "the count task to checkpoint step 4", func() (bool, error) {
		cp, err := l.checkpoint(id)
		if err != nil || cp == nil {
			return false, err
		}
		n, err := strconv.Atoi(string(cp))
		return n >= 4, err
	})
	// A rollout drains the only pod, which runs the task; its
	// replacement starts first.
	l.update(func(ld *loopsv1alpha1.LoopDeployment) {
		c := &ld.Spec.Template.Spec.Containers[0]
		c.Env = append(c.Env, corev1.EnvVar{Name: "E2E_DEADLINE", Value: "1"})
	})
	eventually(t, time.Minute, "pod "+first+" to be deleted", func() (bool, error) { return watch.wasDeleted(first), nil })
	cp, err := l.checkpoint(id)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("pod %s drained and was deleted; the task's checkpoint is %q of %d", first, cp, to)
	if reason, _ := watch.drainedReason(first); reason != contract.DrainedReasonDeadlineExceeded {
		t.Errorf("pod %s reported Drained with reason %q, want %s", first, reason, contract.DrainedReasonDeadlineExceeded)
	}

	l.waitAllAccounted(2 * time.Minute)
	l.waitReady(1)
	watch.check(t)

	var rec *result
	for _, r := range l.results() {
		if r.ID == id {
			rec = &r
		}
	}
	if rec == nil {
		t.Fatalf("no result record for %s", id)
	}
	t.Logf("task %s completed by %s on delivery %d, attempt %d, in %s", id, rec.Worker, rec.Deliveries, rec.Attempts, rec.Duration)
	if rec.Worker == first {
		t.Errorf("task %s completed on the drained pod %s", id, first)
	}
	if rec.Deliveries < 2 {
		t.Errorf("task %s completed on delivery %d; it was handed back, so want 2 or more", id, rec.Deliveries)
	}
	if rec.Attempts != 1 {
		t.Errorf("task %s completed on attempt %d; a hand-back is not a failure, so want 1", id, rec.Attempts)
	}
	if full := time.Duration(to*stepMs) * time.Millisecond; rec.Duration >= full {
		t.Errorf("the last attempt of %s took %s, the whole count (%s): it did not resume from its checkpoint", id, rec.Duration, full)
	}
	log, err := env.WorkerLog(t.Context(), l.ns, rec.Worker)
	if err != nil {
		t.Fatalf("the log of pod %s: %v", rec.Worker, err)
	}
	// The handler's own log is the record the library does not write: it
	// resumed, and it counted to the end.
	resumed, finished := "", false
	for line := range strings.Lines(log) {
		if strings.Contains(line, "count task resuming") && strings.Contains(line, id) {
			resumed = strings.TrimSpace(line)
		}
		finished = finished || (strings.Contains(line, "count task finished") && strings.Contains(line, id))
	}
	if !finished {
		t.Errorf("the log of pod %s has no \"count task finished\" line for %s", rec.Worker, id)
	}
	if resumed == "" {
		t.Errorf("the log of pod %s has no \"count task resuming\" line for %s", rec.Worker, id)
	} else {
		t.Logf("pod %s: %s", rec.Worker, resumed)
	}
}
