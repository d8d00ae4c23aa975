//go:build e2e

package e2e

import (
	"strconv"
	"strings"
	"testing"
	"time"

	loopsv1alpha1 "github.com/tenire/loop-operator/api/v1alpha1"
)

// The worker of examples/custom-worker, built on worker.Run, runs in a
// LoopDeployment like the default worker: it reads the operator's settings,
// binds to the queue, runs its tasks, and drains when its pod is scaled
// away, reporting Drained long before the drain deadline.
func TestTheCustomWorkerExampleRunsItsTasksAndDrainsWhenScaledToZero(t *testing.T) {
	if CustomWorkerImage == "" {
		t.Fatal("no image of examples/custom-worker: make kind-load loads it and make test-e2e-kind sets E2E_CUSTOM_WORKER_IMAGE (or build it with examples/custom-worker/Dockerfile, load it into the kind nodes and set it)")
	}
	l := newLoop(t, "custom", 2, func(ld *loopsv1alpha1.LoopDeployment) {
		ld.Spec.Template.Spec.Containers[0].Image = CustomWorkerImage
	})
	const n = 20
	for i := range n {
		l.submit("upper-"+strconv.Itoa(i), "upper", "hello "+strconv.Itoa(i))
	}
	s := l.waitAllAccounted(2 * time.Minute)
	if s.Completed != n || s.DeadLettered != 0 {
		t.Fatalf("the custom worker's tasks: %s, want %d completed", s, n)
	}
	logs := ""
	for _, p := range l.pods() {
		out, err := env.WorkerLog(t.Context(), l.ns, p.Name)
		if err != nil {
			t.Fatal(err)
		}
		logs += out
	}
	if !strings.Contains(logs, ": HELLO 7") {
		t.Errorf("no pod's output shows task upper-7's work (HELLO 7); output:\n%s", logs)
	}

	// The drain deadline is a minute (newLoop): pods deleted well before
	// it reported Drained, which only the drain contract does.
	scaled := time.Now()
	l.scale(0)
	eventually(t, 40*time.Second, "both custom workers drained and deleted", func() (bool, error) {
		return len(l.pods()) == 0, nil
	})
	t.Logf("both pods drained and went in %s", time.Since(scaled).Round(time.Millisecond))
}
