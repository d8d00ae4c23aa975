//go:build e2e && !kind

package e2e

// Scenarios of tasks and partitions that misbehave. They run in local mode
// only: their tasks are the exec kind running sh, which the distroless
// worker image of the kind mode does not have, and cutting a worker off the
// API server needs the node agent's per-pod proxy.

import (
	"bufio"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	loopsv1alpha1 "github.com/tenire/loop-operator/api/v1alpha1"
	"github.com/tenire/loop-operator/api/v1alpha1/contract"
	"github.com/tenire/loop-operator/worker/ledger"
)

// execRecord is a file that the exec tasks of a scenario append "start ID"
// and "done ID" lines to: the test's own record of work done by tasks that
// do not go through the sink.
type execRecord struct{ path string }

func newExecRecord(t *testing.T) execRecord {
	return execRecord{path: filepath.Join(t.TempDir(), "record")}
}

// count returns how many lines read "what id".
func (r execRecord) count(t *testing.T, what, id string) int {
	t.Helper()
	f, err := os.Open(r.path)
	if os.IsNotExist(err) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	n := 0
	for s := bufio.NewScanner(f); s.Scan(); {
		if s.Text() == what+" "+id {
			n++
		}
	}
	return n
}

// setEnv sets a variable of the loop's worker container.
func setEnv(ld *loopsv1alpha1.LoopDeployment, name, value string) {
	c := &ld.Spec.Template.Spec.Containers[0]
	c.Env = append(c.Env, corev1.EnvVar{Name: name, Value: value})
}

// allowDeadLetters states how many sink tasks this scenario may see
// dead-lettered, with an error holding reason, and why; waitAllAccounted
// fails the test for any other dead-lettered sink task. Only scenarios of
// the local mode expect dead-lettered sink tasks, hence its place here.
func (l *loop) allowDeadLetters(n int, reason, why string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.deadBound, l.deadReason, l.deadWhy = n, reason, why
}

// restarts sums the worker restarts of the loop's pods.
func (l *loop) restarts() int32 {
	l.t.Helper()
	var n int32
	for _, p := range l.pods() {
		run, err := env.Worker(l.t.Context(), l.ns, p.Name)
		if err != nil {
			l.t.Fatal(err)
		}
		n += run.Restarts
	}
	return n
}

// deadLetter returns the dead letter of task id, if it has one.
func (l *loop) deadLetter(id string) (ledger.Failure, bool) {
	for _, f := range l.book.Failures() {
		if f.ID == id {
			return f, true
		}
	}
	return ledger.Failure{}, false
}

// Scenario 13: a task that kills the worker running it (as a segfault or the OOM
// killer would) is redelivered after each crash until it has crashed
// workers MaxCrashes times (retry.maxAttempts 3 makes the cap 3), then
// dead-lettered with a reason that says so; the loop's other tasks all
// finish, and afterwards the workers stop restarting.
func TestAPoisonTaskThatKillsItsWorkerIsDeadLetteredAtTheCrashCapAndTheLoopRecovers(t *testing.T) {
	const (
		replicas = 2
		pool     = 5
		crashCap = 3
	)
	l := newLoop(t, "poison", replicas, func(ld *loopsv1alpha1.LoopDeployment) {
		ld.Spec.Loop.Pool.MaxWorkers = pool
		setEnv(ld, "EXEC_COMMAND", `["sh", "-c", "if [ \"$(cat)\" = poison ]; then kill -9 $PPID; fi"]`)
	})
	l.allowDuplicates(crashCap*pool, "each crash kills a worker holding at most its pool's 5 tasks, whose finished but unacknowledged ones run again")
	// A task is charged a crash when the worker holding it dies, whoever
	// killed it: one that was held beside the poison task at each of its
	// crashes (the tasks a crash strands come back together, after
	// ackWait) reaches the cap too, as docs/worker.md says.
	l.allowDeadLetters(pool-1, "worker crashed", "a task held beside the poison task at every one of its crashes is charged them too: at most the 4 other slots of its pool")

	l.submitSleeps(400, 100, 400)
	l.submit("poison", "exec", "poison")
	l.waitAllAccounted(5 * time.Minute)

	f, ok := l.deadLetter("poison")
	if !ok {
		t.Fatal("the poison task was not dead-lettered")
	}
	crashes := l.restarts()
	t.Logf("the poison task crashed workers %d times and was dead-lettered: %s", crashes, f.Error)
	if !strings.Contains(f.Error, "crashed") {
		t.Errorf("the dead letter's error %q does not say that the task crashed its workers", f.Error)
	}
	if crashes < 1 || crashes > crashCap {
		t.Errorf("the workers restarted %d times; the poison task may crash them 1 to %d times", crashes, crashCap)
	}

	l.waitReady(replicas)
	before := l.restarts()
	l.submitSleeps(100, 50, 200)
	l.waitAllAccounted(2 * time.Minute)
	if after := l.restarts(); after != before {
		t.Errorf("the workers restarted %d more times after the poison task was dead-lettered", after-before)
	}
}

// Scenario 14: a handler that ignores cancellation (an exec task whose shell ignores
// SIGTERM) does not hold its pod's drain: at the drain deadline its task
// is cancelled, AbortGrace later it is handed back without the handler,
// the pod reports Drained (DeadlineExceeded) and goes well within its grace
// period, and the task runs to its end once, on the other pod.
func TestAHandlerThatIgnoresCancellationDoesNotHoldItsPodsDrainAndItsTaskRunsElsewhere(t *testing.T) {
	const replicas = 2
	rec := newExecRecord(t)
	l := newLoop(t, "stubborn", replicas, func(ld *loopsv1alpha1.LoopDeployment) {
		ld.Spec.Drain.Timeout = &metav1.Duration{Duration: 2 * time.Second}
		setEnv(ld, "E2E_RECORD", rec.path)
		setEnv(ld, "EXEC_COMMAND", `["sh", "-c", "echo start $LOOP_TASK_ID >> $E2E_RECORD; trap '' TERM; sleep 30; echo done $LOOP_TASK_ID >> $E2E_RECORD"]`)
	})
	watch := l.watchPods(2)

	l.submitSleeps(300, 100, 500)
	l.submit("stubborn", "exec", "")
	victim, _ := l.busyPod("exec")
	eventually(t, time.Minute, "the stubborn task to start", func() (bool, error) { return rec.count(t, "start", "stubborn") > 0, nil })
	took, grace := l.deletePod(victim)
	t.Logf("pod %s, running a task that ignores SIGTERM, was gone %s after its deletion (drain timeout 2s, grace period %s)", victim, took.Round(100*time.Millisecond), grace)
	if took >= grace {
		t.Errorf("pod %s took %s to go, its whole grace period %s: the stubborn handler held its drain", victim, took, grace)
	}
	if reason, ok := watch.drainedReason(victim); !ok || reason != contract.DrainedReasonDeadlineExceeded {
		t.Errorf("pod %s reported Drained %v with reason %q, want %s", victim, ok, reason, contract.DrainedReasonDeadlineExceeded)
	}

	l.waitAllAccounted(3 * time.Minute)
	watch.check(t)
	starts, dones := rec.count(t, "start", "stubborn"), rec.count(t, "done", "stubborn")
	t.Logf("the stubborn task started %d times and ran to its end %d times", starts, dones)
	if starts < 2 || dones != 1 {
		t.Errorf("the stubborn task started %d times and ended %d times; want it started on the drained pod and again elsewhere, and ended once", starts, dones)
	}
	for _, r := range l.results() {
		if r.ID == "stubborn" && (r.Worker == victim || r.Attempts != 1) {
			t.Errorf("the stubborn task completed on %s at attempt %d; want another pod, attempt 1 (a hand-back is not a failure)", r.Worker, r.Attempts)
		}
	}
}

// Scenario 15: a worker cut off from the API server during its drain cannot report
// Drained: the operator waits out the drain deadline and its grace, says
// so (event DrainTimedOut), and deletes the pod; the worker, which drained
// on the request or drains on SIGTERM, loses nothing.
func TestAWorkerCutOffFromTheAPIServerDuringItsDrainIsDeletedAfterTheDeadlineAndLosesNothing(t *testing.T) {
	const replicas = 2
	l := newLoop(t, "cutoff", replicas, func(ld *loopsv1alpha1.LoopDeployment) {
		ld.Spec.Drain.Timeout = &metav1.Duration{Duration: 5 * time.Second}
	})
	watch := l.watchPods(1)
	watch.allowUndrained = true // the cut-off pod cannot report

	l.submitSleeps(1500, 500, 2000)
	l.waitFinished(50)
	l.update(func(ld *loopsv1alpha1.LoopDeployment) { ld.Spec.Replicas = ptr.To[int32](replicas - 1) })
	var victim string
	eventually(t, time.Minute, "a pod asked to drain", func() (bool, error) {
		for _, p := range l.pods() {
			if contract.DrainRequested(&p) {
				victim = p.Name
				return true, nil
			}
		}
		return false, nil
	})
	if err := env.CutOffWorker(t.Context(), l.ns, victim, true); err != nil {
		t.Fatal(err)
	}
	cutAt := time.Now()
	t.Cleanup(func() { _ = env.CutOffWorker(t.Context(), l.ns, victim, false) })
	t.Logf("pod %s was asked to drain and cut off the API server, with %s", victim, l.book.Summary())

	eventually(t, 2*time.Minute, "pod "+victim+" to be deleted", func() (bool, error) { return watch.wasDeleted(victim), nil })
	t.Logf("pod %s was deleted %s after the cut", victim, time.Since(cutAt).Round(100*time.Millisecond))
	if reason, ok := watch.drainedReason(victim); ok {
		t.Errorf("pod %s reported Drained (%s) although it was cut off the API server", victim, reason)
	}
	eventually(t, 30*time.Second, "a DrainTimedOut event for "+victim, func() (bool, error) {
		events, err := env.Clientset.CoreV1().Events(l.ns).List(t.Context(), metav1.ListOptions{FieldSelector: "reason=" + loopsv1alpha1.EventDrainTimedOut})
		if err != nil {
			return false, err
		}
		for _, e := range events.Items {
			if strings.Contains(e.Message, victim) {
				t.Logf("event %s: %s", e.Reason, e.Message)
				return true, nil
			}
		}
		return false, nil
	})

	l.waitAllAccounted(5 * time.Minute)
	l.waitReady(replicas - 1)
	watch.check(t)
}
