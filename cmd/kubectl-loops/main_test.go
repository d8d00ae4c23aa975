package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/utils/clock"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"

	loopsv1alpha1 "github.com/tenire/loop-operator/api/v1alpha1"
	"github.com/tenire/loop-operator/api/v1alpha1/contract"
	"github.com/tenire/loop-operator/controllers/stream"
	"github.com/tenire/loop-operator/internal/natstest"
	"github.com/tenire/loop-operator/internal/testenv"
	"github.com/tenire/loop-operator/worker/loop"
	"github.com/tenire/loop-operator/worker/queue"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// client-go's and controller-runtime's process-wide caches and log
		// flushers outlive the tests by design.
		goleak.IgnoreTopFunction("k8s.io/klog/v2.(*flushDaemon).run.func1"),
		goleak.IgnoreTopFunction("sigs.k8s.io/controller-runtime/pkg/log.(*loggerPromise).Fulfill"),
		goleak.IgnoreAnyFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreAnyFunction("net/http.(*persistConn).writeLoop"),
		goleak.IgnoreAnyFunction("golang.org/x/net/http2.(*ClientConn).readLoop"),
		goleak.IgnoreAnyFunction("k8s.io/apimachinery/pkg/util/wait.BackoffUntilWithContext.func1"),
		goleak.IgnoreAnyFunction("k8s.io/client-go/util/workqueue.(*Typed[...]).updateUnfinishedWorkLoop"),
	)
}

// world is a real apiserver with the CRD, an embedded JetStream server and
// a kubeconfig file for the plugin.
type world struct {
	t          *testing.T
	cfg        *rest.Config
	client     client.Client
	kubeconfig string
	natsURL    string
	js         jetstream.JetStream
}

func newWorld(t *testing.T) *world {
	t.Helper()
	cfg := testenv.Start(t)
	c, err := client.New(cfg, client.Options{Scheme: testenv.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	srv := natstest.Start(t)
	_, js := srv.Connect()
	return &world{t: t, cfg: cfg, client: c, kubeconfig: writeKubeconfig(t, cfg), natsURL: srv.URL, js: js}
}

func writeKubeconfig(t *testing.T, cfg *rest.Config) string {
	t.Helper()
	kc := clientcmdapi.NewConfig()
	kc.Clusters["test"] = &clientcmdapi.Cluster{Server: cfg.Host, CertificateAuthorityData: cfg.CAData}
	kc.AuthInfos["test"] = &clientcmdapi.AuthInfo{ClientCertificateData: cfg.CertData, ClientKeyData: cfg.KeyData, Token: cfg.BearerToken}
	kc.Contexts["test"] = &clientcmdapi.Context{Cluster: "test", AuthInfo: "test", Namespace: "default"}
	kc.CurrentContext = "test"
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*kc, path); err != nil {
		t.Fatal(err)
	}
	return path
}

// run runs the plugin with args and returns what it printed.
func (w *world) run(args ...string) (stdout, stderr string, err error) {
	return w.runWith(clock.RealClock{}, "", args...)
}

func (w *world) runWith(clk clock.PassiveClock, stdin string, args ...string) (stdout, stderr string, err error) {
	var out, errOut bytes.Buffer
	cmd := newRootCommandWithClock(genericiooptions.IOStreams{In: strings.NewReader(stdin), Out: &out, ErrOut: &errOut}, clk)
	cmd.SetArgs(append(args, "--kubeconfig", w.kubeconfig))
	err = cmd.ExecuteContext(w.t.Context())
	return out.String(), errOut.String(), err
}

// loopDeployment is a LoopDeployment of namespace default with two
// priorities, whose queue is at url; not yet created.
func loopDeployment(name, url string) *loopsv1alpha1.LoopDeployment {
	return &loopsv1alpha1.LoopDeployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
		Spec: loopsv1alpha1.LoopDeploymentSpec{
			Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "worker", Image: "loop-worker:dev"}}}},
			Loop:     loopsv1alpha1.LoopSpec{Priorities: []loopsv1alpha1.PriorityClass{{Name: "high", Weight: 3}, {Name: "low", Weight: 1}}},
			Queue:    loopsv1alpha1.QueueSpec{NATS: loopsv1alpha1.NATSQueueSpec{URL: url}},
		},
	}
}

func (w *world) loop(name, url string) *loopsv1alpha1.LoopDeployment {
	w.t.Helper()
	ld := loopDeployment(name, url)
	if err := w.client.Create(w.t.Context(), ld); err != nil {
		w.t.Fatal(err)
	}
	if url == w.natsURL {
		w.provision(ld)
	}
	return ld
}

// provision creates the queue of ld as the operator does.
func (w *world) provision(ld *loopsv1alpha1.LoopDeployment) {
	w.t.Helper()
	names, cfg := stream.Layout(ld)
	if _, err := queue.Ensure(w.t.Context(), w.js, names, cfg); err != nil {
		w.t.Fatal(err)
	}
}

func (w *world) status(name string) statusReport {
	w.t.Helper()
	out, _, err := w.run("status", name, "-o", "json")
	if err != nil {
		w.t.Fatalf("status: %v", err)
	}
	var r statusReport
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		w.t.Fatalf("status -o json printed %q: %v", out, err)
	}
	return r
}

func pending(r statusReport, priority string) uint64 {
	for _, p := range r.Queue.Priorities {
		if p.Name == priority {
			return p.Pending
		}
	}
	return 0
}

func TestSubmitStatusAndDeadLetters(t *testing.T) {
	w := newWorld(t)
	ld := w.loop("orders", w.natsURL)

	out, errOut, err := w.run("submit", "orders", "--kind", "sleep", "--payload", `{"ms": 1}`, "--priority", "low", "--count", "1200", "--id", "batch")
	if err != nil {
		t.Fatalf("submit: %v\n%s", err, errOut)
	}
	if !strings.Contains(out, "submitted 1200 tasks batch-1 … batch-1200") || !strings.Contains(errOut, "1200/1200 100%") {
		t.Errorf("submit printed %q and progress %q", out, errOut)
	}
	r := w.status("orders")
	if r.Queue == nil {
		t.Fatalf("status has no queue: %s", r.QueueErr)
	}
	if got := pending(r, "low"); got != 1200 {
		t.Errorf("low has %d pending tasks, want 1200", got)
	}
	if got := pending(r, "high"); got != 0 {
		t.Errorf("high has %d pending tasks, want 0", got)
	}

	// The same ids again within the duplicate window are dropped.
	again, errOut, err := w.run("submit", "orders", "--kind", "sleep", "--priority", "low", "--count", "1200", "--id", "batch")
	if err != nil {
		t.Fatalf("second submit: %v\n%s", err, errOut)
	}
	if !strings.Contains(again, "1200 of them dropped by the queue as duplicates") {
		t.Errorf("the second submit printed\n%s\nwant the duplicates counted", again)
	}
	if got := pending(w.status("orders"), "low"); got != 1200 {
		t.Errorf("after submitting the same ids again low has %d pending tasks, want 1200", got)
	}

	// A task that the loop dead-letters shows in dead-letters and can be requeued.
	if _, _, err := w.runWith(clock.RealClock{}, `{"poison": true}`, "submit", "orders", "--kind", "resize", "--priority", "high", "--id", "poison", "-"); err != nil {
		t.Fatalf("submit from stdin: %v", err)
	}
	failLastAttempt(t, w.js, queueNames(ld), "high", errors.New("resize: image too large"))

	out, _, err = w.run("dead-letters", "orders")
	if err != nil {
		t.Fatalf("dead-letters: %v", err)
	}
	for _, want := range []string{"poison", "resize", "high", "resize: image too large"} {
		if !strings.Contains(out, want) {
			t.Errorf("dead-letters printed\n%s\nwant it to mention %q", out, want)
		}
	}
	if r := w.status("orders"); r.Queue.DeadLetters != 1 || pending(r, "high") != 0 {
		t.Errorf("status: %d dead letters and %d pending in high, want 1 and 0", r.Queue.DeadLetters, pending(r, "high"))
	}
	if out, _, err := w.run("dead-letters", "orders", "--requeue", "poison"); err != nil || !strings.Contains(out, "requeued 1") {
		t.Fatalf("--requeue printed %q, %v", out, err)
	}
	if r := w.status("orders"); r.Queue.DeadLetters != 0 || pending(r, "high") != 1 {
		t.Errorf("after requeue: %d dead letters and %d pending in high, want 0 and 1", r.Queue.DeadLetters, pending(r, "high"))
	}
	if out, _, _ := w.run("dead-letters", "orders"); !strings.Contains(out, "no dead letters") {
		t.Errorf("dead-letters after requeue printed %q", out)
	}

	// The table view names the queue, the priorities and the conditions.
	out, _, err = w.run("status", "orders")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"LoopDeployment:", "default/orders", "PRIORITY", "low", "1200", "Pods:"} {
		if !strings.Contains(out, want) {
			t.Errorf("status printed\n%s\nwant it to mention %q", out, want)
		}
	}
	if out, _, err := w.run("top", "orders", "--once"); err != nil || !strings.Contains(out, "1201 pending") {
		t.Errorf("top --once printed %q, %v", out, err)
	}
}

// failLastAttempt fetches the next task of a priority and dead-letters it the
// way a worker does after its last attempt.
func failLastAttempt(t *testing.T, js jetstream.JetStream, names queue.Names, priority string, cause error) {
	t.Helper()
	consumer, err := js.Consumer(t.Context(), names.Stream, names.Consumer(priority))
	if err != nil {
		t.Fatal(err)
	}
	batch, err := consumer.Fetch(1, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	m, ok := <-batch.Messages()
	if !ok {
		t.Fatalf("no task to dead-letter in %s: %v", priority, batch.Error())
	}
	d, err := queue.NewDelivery(m, 0, priority)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.DeadLetter(t.Context(), js, names, cause); err != nil {
		t.Fatal(err)
	}
}

func TestErrorsSayWhatIsWrong(t *testing.T) {
	w := newWorld(t)
	w.loop("orders", w.natsURL)
	w.loop("unreachable", "nats://127.0.0.1:1")

	cases := []struct {
		name string
		args []string
		want string
	}{
		{"a missing LoopDeployment is named", []string{"status", "nope"}, `loopdeployment "nope" not found in namespace "default"`},
		{"a payload that is not JSON is refused", []string{"submit", "orders", "--kind", "sleep", "--payload", "{ms: 1"}, "the payload is not valid JSON"},
		{"two payload sources are refused", []string{"submit", "orders", "--kind", "sleep", "--payload", "{}", "--payload-file", "x.json"}, "give the payload one way"},
		{"an unknown priority lists the loop's priorities", []string{"submit", "orders", "--kind", "sleep", "--priority", "urgent"}, `has no priority "urgent"; its priorities are [high low]`},
		{"a missing kind is refused", []string{"submit", "orders"}, `required flag(s) "kind" not set`},
		{"an unreachable NATS is reported with a way out", []string{"submit", "unreachable", "--kind", "sleep"}, "cannot reach NATS at nats://127.0.0.1:1"},
		{"an unknown output format is refused", []string{"status", "orders", "-o", "wide"}, `unknown output format "wide"`},
		{"draining a pod that is not a worker is refused", []string{"drain", "no-such-pod"}, `pod "no-such-pod" not found`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := w.run(tc.args...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("kubectl loops %s: error %v, want one containing %q", strings.Join(tc.args, " "), err, tc.want)
			}
		})
	}
}

func TestDrainRequestsTheContractAndWaits(t *testing.T) {
	w := newWorld(t)
	w.loop("orders", w.natsURL)
	ctx := t.Context()
	for _, name := range []string{"orders-a", "orders-b"} {
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", Labels: map[string]string{loopsv1alpha1.LabelName: "orders"}},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "worker", Image: "loop-worker:dev"}}},
		}
		if err := w.client.Create(ctx, pod); err != nil {
			t.Fatal(err)
		}
	}

	// One pod, with the annotations at the injected clock's time.
	now := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	if out, _, err := w.runWith(clocktesting.NewFakePassiveClock(now), "", "drain", "orders-a", "--timeout", "90s"); err != nil || !strings.Contains(out, "pod/orders-a drain requested") {
		t.Fatalf("drain printed %q, %v", out, err)
	}
	var a corev1.Pod
	if err := w.client.Get(ctx, client.ObjectKey{Namespace: "default", Name: "orders-a"}, &a); err != nil {
		t.Fatal(err)
	}
	if got := a.Annotations[contract.AnnotationDrainRequested]; got != "2026-11-27T10:00:00Z" {
		t.Errorf("drain-requested = %q", got)
	}
	if got := a.Annotations[contract.AnnotationDrainDeadline]; got != "2026-11-27T10:01:30Z" {
		t.Errorf("drain-deadline = %q", got)
	}

	// Every pod, waiting until each reports Drained, as a worker would.
	done := make(chan error, 1)
	var out string
	go func() {
		var err error
		out, _, err = w.run("drain", "orders", "--all", "--wait", "--timeout", "30s")
		done <- err
	}()
	for _, name := range []string{"orders-a", "orders-b"} {
		reportDrained(t, w.client, name)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("drain --all --wait: %v", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("drain --wait did not return after both pods reported Drained")
	}
	if !strings.Contains(out, "pod/orders-a is already draining") || !strings.Contains(out, "2 pods drained") {
		t.Errorf("drain --all printed %q", out)
	}
}

// reportDrained waits for the pod's drain request and sets its Drained
// condition, the worker's half of the contract.
func reportDrained(t *testing.T, c client.Client, name string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var p corev1.Pod
		if err := c.Get(t.Context(), client.ObjectKey{Namespace: "default", Name: name}, &p); err != nil {
			t.Fatal(err)
		}
		if _, ok := p.Annotations[contract.AnnotationDrainRequested]; ok {
			p.Status.Conditions = append(p.Status.Conditions, corev1.PodCondition{
				Type: contract.PodConditionDrained, Status: corev1.ConditionTrue,
				Reason: contract.DrainedReasonCompleted, Message: "finished 3, handed back 0", LastTransitionTime: metav1.Now(),
			})
			if err := c.Status().Update(t.Context(), &p); err != nil {
				t.Fatal(err)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("pod %s was never asked to drain", name)
		}
		ticker := time.NewTimer(50 * time.Millisecond)
		select {
		case <-ticker.C:
		case <-t.Context().Done():
			t.Fatal(fmt.Errorf("waiting for the drain request of %s: %w", name, t.Context().Err()))
		}
	}
}

func TestSubmitWaitReportsCompletionsAndFailures(t *testing.T) {
	w := newWorld(t)
	ld := w.loop("orders", w.natsURL)
	names := queueNames(ld)

	// A worker: tasks complete, except w-3, which fails for good.
	worked := make(chan error, 1)
	go func() {
		consumer, err := w.js.Consumer(t.Context(), names.Stream, names.Consumer("low"))
		if err != nil {
			worked <- err
			return
		}
		for handled := 0; handled < 5; {
			batch, err := consumer.Fetch(5, jetstream.FetchMaxWait(time.Second))
			if err != nil {
				worked <- err
				return
			}
			for m := range batch.Messages() {
				d, err := queue.NewDelivery(m, 1, "low")
				if err == nil && d.ID == "w-3" {
					err = d.DeadLetter(t.Context(), w.js, names, errors.New("boom"))
				} else if err == nil {
					d.Result = []byte("done " + d.ID)
					if err = d.RecordResult(t.Context(), w.js, names, "test-worker", time.Millisecond); err == nil {
						err = d.Msg.DoubleAck(t.Context())
					}
				}
				if err != nil {
					worked <- err
					return
				}
				handled++
			}
		}
		worked <- nil
	}()

	out, errOut, err := w.run("submit", "orders", "--kind", "sleep", "--priority", "low", "--count", "5", "--id", "w", "--wait", "--timeout", "1m")
	if err == nil || !strings.Contains(err.Error(), "1 of 5 tasks failed for good") {
		t.Fatalf("submit --wait returned %v, want a failure count\n%s\n%s", err, out, errOut)
	}
	for _, want := range []string{"4 completed, 1 failed, 0 duplicate runs", "failed w-3 (sleep): boom"} {
		if !strings.Contains(out, want) {
			t.Errorf("submit --wait printed\n%s\nwant %q", out, want)
		}
	}
	if !strings.Contains(errOut, "finished [") {
		t.Errorf("no progress bar in %q", errOut)
	}
	if err := <-worked; err != nil {
		t.Fatalf("test worker: %v", err)
	}

	// wait finds the same tasks again by --id and --count.
	out, _, err = w.run("wait", "orders", "--id", "w", "--count", "5", "--timeout", "1m")
	if err == nil || !strings.Contains(out, "summary: submitted=5 completed=4 dead-lettered=1 open=0 duplicates=0") {
		t.Errorf("wait printed\n%s\nand returned %v", out, err)
	}
	if _, _, err := w.run("wait", "orders", "--count", "5"); err == nil || !strings.Contains(err.Error(), "--id and a --count") {
		t.Errorf("wait without --id: %v", err)
	}

	// result shows one task's record and the result its handler set, or
	// why there is none.
	out, _, err = w.run("result", "orders", "w-2")
	if err != nil || !strings.Contains(out, "task w-2 (kind sleep, priority low) completed on attempt 1 (delivery 1) in 1ms by test-worker") ||
		!strings.HasSuffix(out, "\ndone w-2\n") {
		t.Errorf("result w-2 printed\n%s\nand returned %v", out, err)
	}
	out, _, err = w.run("result", "orders", "w-2", "-o", "json")
	var rep resultReport
	if err != nil || json.Unmarshal([]byte(out), &rep) != nil || rep.Payload != "done w-2" || rep.Worker != "test-worker" {
		t.Errorf("result -o json printed %s and returned %v", out, err)
	}
	if _, _, err := w.run("result", "orders", "w-3"); err == nil || !strings.Contains(err.Error(), "task w-3 (sleep) failed for good on attempt 1: boom") {
		t.Errorf("result of a dead-lettered task: %v", err)
	}
	if _, _, err := w.run("result", "orders", "never"); err == nil || !strings.Contains(err.Error(), "task never has no result: it has not finished") {
		t.Errorf("result of an unknown task: %v", err)
	}
}

func TestSubmitWaitNeedsResultRecords(t *testing.T) {
	w := newWorld(t)
	ld := w.loop("no-records", w.natsURL)
	ld.Spec.Queue.NATS.ResultRetention = &metav1.Duration{}
	if err := w.client.Update(t.Context(), ld); err != nil {
		t.Fatal(err)
	}
	_, _, err := w.run("submit", "no-records", "--kind", "sleep", "--wait")
	if err == nil || !strings.Contains(err.Error(), "keeps no result records (spec.queue.nats.resultRetention is 0s)") {
		t.Fatalf("submit --wait on a loop without records: %v", err)
	}
}

func TestStatusShowsEachWorkersInFlightTasks(t *testing.T) {
	w := newWorld(t)
	ld := w.loop("orders", w.natsURL)
	ctx := t.Context()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "orders-a", Namespace: "default", Labels: map[string]string{loopsv1alpha1.LabelName: "orders"}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "worker", Image: "loop-worker:dev"}}},
	}
	if err := w.client.Create(ctx, pod); err != nil {
		t.Fatal(err)
	}
	pod.Status.Phase = corev1.PodRunning
	if err := w.client.Status().Update(ctx, pod); err != nil {
		t.Fatal(err)
	}

	// The worker of orders-a announces three tasks in flight, as
	// worker/loop does every two seconds.
	nc, err := nats.Connect(w.natsURL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	data, err := json.Marshal(loop.Announcement{Worker: "orders-a", At: time.Now(),
		Status: loop.Status{State: "Running", InFlightByKind: map[string]int{"sleep": 2, "resize": 1}}})
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	announced := make(chan struct{})
	go func() {
		defer close(announced)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			_ = nc.Publish(queueNames(ld).StatusSubject(), data)
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	}()
	defer func() { close(stop); <-announced }()

	r := w.status("orders")
	if len(r.Pods) != 1 || r.Pods[0].InFlight == nil || *r.Pods[0].InFlight != 3 || r.Pods[0].Loop != "Running" {
		t.Fatalf("pods in status: %+v", r.Pods)
	}
	out, _, err := w.run("status", "orders")
	if err != nil || !strings.Contains(out, "IN-FLIGHT") {
		t.Fatalf("status printed %q, %v", out, err)
	}
}

func TestStatusShowsARemovedPriorityAsRetiring(t *testing.T) {
	w := newWorld(t)
	ld := w.loop("orders", w.natsURL)
	ld.Spec.Loop.Priorities = []loopsv1alpha1.PriorityClass{{Name: "low", Weight: 1}}
	if err := w.client.Update(t.Context(), ld); err != nil {
		t.Fatal(err)
	}
	w.provision(ld) // as the operator does after the change: "high" keeps its consumer until its tasks moved
	r := w.status("orders")
	var got []string
	for _, p := range r.Queue.Priorities {
		got = append(got, fmt.Sprintf("%s retiring=%v", p.Name, p.Retiring))
	}
	if want := []string{"low retiring=false", "high retiring=true"}; !slices.Equal(got, want) {
		t.Errorf("status lists the priorities %v, want %v", got, want)
	}
}

func TestVersion(t *testing.T) {
	streams, _, out, _ := genericiooptions.NewTestIOStreams()
	cmd := newRootCommand(streams)
	cmd.SetArgs([]string{"--version"})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	if got := out.String(); got != "kubectl-loops dev\n" {
		t.Errorf("--version printed %q, want %q", got, "kubectl-loops dev\n")
	}
}
