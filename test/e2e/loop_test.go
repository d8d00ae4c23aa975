//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"math"
	mrand "math/rand/v2"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	loopsv1alpha1 "github.com/tenire/loop-operator/api/v1alpha1"
	"github.com/tenire/loop-operator/api/v1alpha1/contract"
	"github.com/tenire/loop-operator/worker/checkpoint"
	"github.com/tenire/loop-operator/worker/ledger"
	workerloop "github.com/tenire/loop-operator/worker/loop"
	"github.com/tenire/loop-operator/worker/queue"
)

// loop is one LoopDeployment of a scenario, in a namespace of its own, with
// two records of the tasks the scenario submitted: the sink, which the test
// owns and the workers' http kind calls, and a ledger of the loop's result
// records and dead letters, which the worker library writes.
type loop struct {
	t     *testing.T
	ns    string
	name  string
	js    jetstream.JetStream
	names queue.Names
	book  *ledger.Ledger
	sink  *sink

	mu sync.Mutex
	// atSink holds the ids of the tasks whose work happens at the sink.
	atSink map[string]bool
	// dupBound is how many tasks may finish twice at the sink, and dupWhy
	// why (allowDuplicates).
	dupBound int
	dupWhy   string
	// deadBound sink tasks may be dead-lettered with an error that holds
	// deadReason, for the reason deadWhy (allowDeadLetters).
	deadBound           int
	deadReason, deadWhy string
}

// newLoop creates a namespace and a LoopDeployment of replicas workers
// (edit changes it before it is created), waits for the workers to be
// ready and opens a ledger on its queue.
func newLoop(t *testing.T, name string, replicas int32, edit func(*loopsv1alpha1.LoopDeployment)) *loop {
	t.Helper()
	var b [3]byte
	_, _ = rand.Read(b[:])
	l := &loop{t: t, ns: "e2e-" + name + "-" + hex.EncodeToString(b[:]), name: name, atSink: map[string]bool{},
		dupWhy: "no worker dies and no drain passes its deadline, so every task runs to its end once"}
	l.sink = startSink(t)
	ctx := t.Context()
	if err := env.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: l.ns}}); err != nil {
		t.Fatal(err)
	}
	ld := l.create(replicas, edit)
	t.Cleanup(func() { l.cleanup() })
	l.waitReady(replicas)

	// The suite's NATS is reached at the test's own address of it (a
	// port-forward in kind mode); a loop on a NATS of its own (a scenario's
	// cluster, local mode) at the address its workers use.
	url := env.NATSURL()
	if ld.Spec.Queue.NATS.URL != env.LoopNATSURL() {
		url = ld.Spec.Queue.NATS.URL
	}
	nc, err := nats.Connect(url, nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	if l.js, err = jetstream.New(nc); err != nil {
		t.Fatal(err)
	}
	l.names = queue.NewNames(contract.QueueNames(l.ns, name, ld.Spec.Queue.NATS))
	// JetStream is asked again while it does not answer (a cluster just
	// formed still electing the streams' leaders, a machine short of CPU).
	opening, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if l.book, err = ledger.Open(opening, l.js, l.names, ledger.WithLogger(env.Log.WithName("ledger").WithValues("namespace", l.ns))); err != nil {
		t.Fatalf("opening the ledger (the workers create the streams): %v", err)
	}
	t.Cleanup(l.book.Close)
	return l
}

// create creates the loop's LoopDeployment (edit changes it first) in its
// namespace, which exists, and returns what it created. newLoop calls it;
// a scenario that deleted the LoopDeployment can create it again.
func (l *loop) create(replicas int32, edit func(*loopsv1alpha1.LoopDeployment)) *loopsv1alpha1.LoopDeployment {
	t := l.t
	t.Helper()
	ld := &loopsv1alpha1.LoopDeployment{
		ObjectMeta: metav1.ObjectMeta{Name: l.name, Namespace: l.ns},
		Spec: loopsv1alpha1.LoopDeploymentSpec{
			Replicas: ptr.To(replicas),
			Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "worker", Image: WorkerImage,
				Env: []corev1.EnvVar{{Name: "HTTP_URL", Value: l.sink.url}}}}}},
			Loop: loopsv1alpha1.LoopSpec{
				Pool:  loopsv1alpha1.PoolSpec{MinWorkers: ptr.To[int32](2), MaxWorkers: 20},
				Retry: loopsv1alpha1.RetrySpec{MaxAttempts: 3, InitialBackoff: &metav1.Duration{Duration: 200 * time.Millisecond}, MaxBackoff: &metav1.Duration{Duration: 2 * time.Second}},
			},
			Queue: loopsv1alpha1.QueueSpec{NATS: loopsv1alpha1.NATSQueueSpec{URL: env.LoopNATSURL(), AckWait: &metav1.Duration{Duration: 10 * time.Second}}},
			Drain: loopsv1alpha1.DrainSpec{Timeout: &metav1.Duration{Duration: time.Minute}, MaxConcurrent: ptr.To(intstr.FromInt32(2))},
		},
	}
	if edit != nil {
		edit(ld)
	}
	if err := env.Client.Create(t.Context(), ld); err != nil {
		t.Fatalf("creating the LoopDeployment: %v", err)
	}
	return ld
}

func (l *loop) key() client.ObjectKey { return client.ObjectKey{Namespace: l.ns, Name: l.name} }

func (l *loop) get() *loopsv1alpha1.LoopDeployment {
	l.t.Helper()
	ld := &loopsv1alpha1.LoopDeployment{}
	if err := env.Client.Get(l.t.Context(), l.key(), ld); err != nil {
		l.t.Fatal(err)
	}
	return ld
}

// update changes the LoopDeployment, retrying on conflicts.
func (l *loop) update(edit func(*loopsv1alpha1.LoopDeployment)) {
	l.t.Helper()
	eventually(l.t, 30*time.Second, "updating the LoopDeployment", func() (bool, error) {
		ld := l.get()
		edit(ld)
		err := env.Client.Update(l.t.Context(), ld)
		if apierrors.IsConflict(err) {
			return false, nil
		}
		return err == nil, err
	})
}

func (l *loop) pods() []corev1.Pod {
	l.t.Helper()
	var pods corev1.PodList
	if err := env.Client.List(l.t.Context(), &pods, client.InNamespace(l.ns), client.MatchingLabels{loopsv1alpha1.LabelName: l.name}); err != nil {
		l.t.Fatal(err)
	}
	return pods.Items
}

// waitReady waits until the loop has exactly n pods, all ready and of the
// current revision, and its status says so.
func (l *loop) waitReady(n int32) {
	l.t.Helper()
	eventually(l.t, 3*time.Minute, fmt.Sprintf("%d ready, updated workers", n), func() (bool, error) {
		ld := l.get()
		st := ld.Status
		return st.ObservedGeneration == ld.Generation && st.Replicas == n && st.AvailableReplicas == n &&
			st.UpdatedReplicas == n && len(l.pods()) == int(n), nil
	})
}

// kubectl runs kubectl against the cluster and returns its output.
func kubectl(t *testing.T, args ...string) (string, error) {
	t.Helper()
	return kubectlContext(t.Context(), args...)
}

// scale sets spec.replicas with kubectl scale, through /scale.
func (l *loop) scale(n int32) {
	l.t.Helper()
	if out, err := kubectl(l.t, "-n", l.ns, "scale", "ld/"+l.name, "--replicas="+strconv.Itoa(int(n))); err != nil {
		l.t.Fatalf("kubectl scale: %v\n%s", err, out)
	}
}

// submitSleeps submits n tasks that each take minMs to maxMs milliseconds
// at the sink (kind http) and adds them to the records. Their ids are the
// loop's name and a number, continuing from the tasks submitted before.
func (l *loop) submitSleeps(n, minMs, maxMs int) []string {
	l.t.Helper()
	producer := queue.NewProducer(l.js, l.names)
	l.mu.Lock()
	first := len(l.atSink)
	l.mu.Unlock()
	ids := make([]string, 0, n)
	for start := 0; start < n; start += 500 {
		batch := make([]queue.Task, 0, 500)
		for i := start; i < min(start+500, n); i++ {
			id := l.name + "-" + strconv.Itoa(first+i)
			ms := minMs + mrand.IntN(maxMs-minMs+1)
			batch = append(batch, queue.Task{ID: id, Kind: kindSink, Payload: fmt.Appendf(nil, `{"ms": %d}`, ms)})
			ids = append(ids, id)
		}
		l.expect(true, ids[start:]...)
		if err := producer.SubmitBatch(l.t.Context(), batch); err != nil {
			l.t.Fatalf("submitting: %v", err)
		}
	}
	l.t.Logf("submitted %d tasks of %d-%d ms at the sink", n, minMs, maxMs)
	return ids
}

// expect adds task ids to the ledger and, atSink, to the tasks the sink
// accounts for.
func (l *loop) expect(atSink bool, ids ...string) {
	l.book.Expect(ids...)
	if atSink {
		l.mu.Lock()
		for _, id := range ids {
			l.atSink[id] = true
		}
		l.mu.Unlock()
	}
}

// allowDuplicates states how many tasks may finish twice at the sink in
// this scenario, and why; waitAllAccounted fails the test beyond it.
func (l *loop) allowDuplicates(n int, why string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.dupBound, l.dupWhy = n, why
}

// submit submits one task of any kind and adds it to the records: a task
// of kindSink is accounted for at the sink, any other by the ledger alone
// (and the scenario's own checks).
func (l *loop) submit(id, kind, payload string) {
	l.t.Helper()
	l.expect(kind == kindSink, id)
	if _, _, err := queue.NewProducer(l.js, l.names).Submit(l.t.Context(), queue.Task{ID: id, Kind: kind, Payload: []byte(payload)}); err != nil {
		l.t.Fatalf("submitting %s: %v", id, err)
	}
}

// waitFinished waits until at least n expected tasks have finished.
func (l *loop) waitFinished(n int) {
	l.t.Helper()
	eventually(l.t, 3*time.Minute, fmt.Sprintf("%d tasks finished", n), func() (bool, error) {
		s := l.book.Summary()
		return s.Completed+s.DeadLettered >= n, nil
	})
}

// waitAllAccounted waits until every submitted task is accounted for and
// the loop's task stream is empty (nothing is left to run again), and fails
// the test for each task that is not, for each sink task that was
// dead-lettered, and for duplicates beyond the scenario's bound
// (allowDuplicates; none by default).
//
// A sink task is accounted for when it finished at the sink (the test's own
// record) or is in the dead letters; any other task when the ledger has its
// result record or dead letter. A result record for a sink task that never
// finished at the sink is a task recorded as done without being run, and
// fails the test; a sink task that finished with no result record is fine
// (the worker acks without one when publishing it failed three times) and
// is counted in the log. Duplicates are the extra finishes at the sink.
func (l *loop) waitAllAccounted(timeout time.Duration) ledger.Summary {
	l.t.Helper()
	start := time.Now()
	l.mu.Lock()
	atSink := maps.Clone(l.atSink)
	bound, why := l.dupBound, l.dupWhy
	deadBound, deadReason, deadWhy := l.deadBound, l.deadReason, l.deadWhy
	l.mu.Unlock()
	var (
		s          ledger.Summary
		c          sinkCount
		open       []string
		queued     int
		progressAt time.Time
	)
	deadline := start.Add(timeout)
	for {
		s, c = l.book.Summary(), l.sink.count(atSink)
		open = l.unaccounted(atSink, 10)
		if len(open) == 0 {
			if queued = l.pending(); queued == 0 {
				break
			}
		}
		if time.Since(progressAt) >= 5*time.Second {
			queued = l.pending()
			l.t.Logf("progress: %d of %d sink tasks finished at the sink; ledger: %s; %d in the task stream", c.Finished, len(atSink), s, queued)
			progressAt = time.Now()
		}
		if time.Now().After(deadline) {
			l.t.Fatalf("after %s: tasks neither finished nor dead-lettered (first 10): %v; %d tasks still in the task stream", timeout, open, queued)
		}
		select {
		case <-l.t.Context().Done():
			l.t.Fatalf("waiting for every task: %v", l.t.Context().Err())
		case <-time.After(250 * time.Millisecond):
		}
	}
	if len(atSink) > 0 {
		s.Duplicates = c.Duplicates
	}
	l.t.Logf("submitted %d, finished at the sink %d (of %d sink tasks), dead-lettered %d, lost 0, duplicates %d (bound %d: %s), in %s; at the sink %d attempts started, %d cut short; %d finished without a result record",
		s.Expected, c.Finished, len(atSink), s.DeadLettered, c.Duplicates, bound, why, time.Since(start).Round(time.Second), c.Started, c.Cancelled, s.Open)
	if unrun := l.ackedUnrun(atSink, 10); len(unrun) > 0 {
		l.t.Errorf("sink tasks with a result record that never finished at the sink (recorded as done without being run): %v", unrun)
	}
	if c.Duplicates > bound {
		l.t.Errorf("%d extra finishes at the sink; this scenario allows %d (%s)", c.Duplicates, bound, why)
	}
	var dead, allowed []ledger.Failure
	for _, f := range l.book.Failures() {
		switch {
		case !atSink[f.ID]:
		case deadReason != "" && strings.Contains(f.Error, deadReason):
			allowed = append(allowed, f)
		default:
			dead = append(dead, f)
		}
	}
	if len(allowed) > 0 {
		l.t.Logf("%d sink tasks were dead-lettered with %q (bound %d: %s): %+v", len(allowed), deadReason, deadBound, deadWhy, allowed)
	}
	if len(allowed) > deadBound {
		l.t.Errorf("%d sink tasks were dead-lettered with %q; this scenario allows %d (%s)", len(allowed), deadReason, deadBound, deadWhy)
	}
	if len(dead) > 0 {
		l.t.Errorf("%d sink tasks were dead-lettered: %+v", len(dead), dead)
	}
	return s
}

// unaccounted lists up to max submitted tasks not accounted for yet: sink
// tasks neither finished at the sink nor dead-lettered, other tasks with
// neither a result record nor a dead letter.
func (l *loop) unaccounted(atSink map[string]bool, max int) []string {
	dead := map[string]bool{}
	for _, f := range l.book.Failures() {
		dead[f.ID] = true
	}
	var out []string
	for _, id := range l.book.Open(math.MaxInt) { // neither a result nor a dead letter
		if !atSink[id] {
			out = append(out, id)
		}
	}
	for id := range atSink {
		if !dead[id] && l.sink.finishedTimes(id) == 0 {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return out[:min(max, len(out))]
}

// ackedUnrun lists up to max sink tasks that have a result record but never
// finished at the sink. The sink records a finish before it answers, and
// the worker records the result after the answer, so any such task was
// recorded as done without being run.
func (l *loop) ackedUnrun(atSink map[string]bool, max int) []string {
	var out []string
	for _, id := range l.book.Completed() {
		if atSink[id] && l.sink.finishedTimes(id) == 0 {
			out = append(out, id)
			if len(out) == max {
				break
			}
		}
	}
	return out
}

// cleanup deletes the LoopDeployment and waits until it is gone, so that
// its worker processes stop before the next scenario, and then deletes
// the namespace without waiting (a kind cluster outlives the suite).
func (l *loop) cleanup() {
	ctx, cancel := CleanupContext(3 * time.Minute)
	defer cancel()
	ld := &loopsv1alpha1.LoopDeployment{ObjectMeta: metav1.ObjectMeta{Name: l.name, Namespace: l.ns}}
	if err := env.Client.Delete(ctx, ld); err != nil && !apierrors.IsNotFound(err) {
		l.t.Errorf("deleting the LoopDeployment: %v", err)
		return
	}
	for {
		err := env.Client.Get(ctx, l.key(), ld)
		if apierrors.IsNotFound(err) {
			ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: l.ns}}
			if err := env.Client.Delete(ctx, ns); err != nil && !apierrors.IsNotFound(err) {
				l.t.Errorf("deleting the namespace %s: %v", l.ns, err)
			}
			return
		}
		select {
		case <-ctx.Done():
			l.t.Errorf("the LoopDeployment %s was not gone after 3 minutes", l.key())
			return
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// podWatch follows the loop's pods and records what the drain contract
// forbids: more than max pods draining at once, or a pod asked to drain
// that was deleted before it reported Drained.
type podWatch struct {
	mu          sync.Mutex
	max         int
	maxDraining int
	draining    map[string]bool
	drained     map[string]bool
	deleted     []string
	// direct holds the pods seen terminating without a drain request:
	// deleted directly (by the operator as idle, or by the test).
	direct         map[string]bool
	violations     []string
	allowUndrained bool
	// reasons holds the reason of each pod's Drained condition.
	reasons map[string]string
	// serving holds the pods that are ready and not terminating;
	// minServing is the fewest seen since trackServing was called, -1
	// before.
	serving    map[string]bool
	minServing int
}

// watchNamespacePods runs a pod informer on ns that calls seen for each
// added or updated pod and gone for each deleted one, until the returned
// stop, which is also a clean-up of t.
func watchNamespacePods(t *testing.T, ns string, seen, gone func(*corev1.Pod)) (stop func()) {
	t.Helper()
	factory := informers.NewSharedInformerFactoryWithOptions(env.Clientset, 0, informers.WithNamespace(ns))
	informer := factory.Core().V1().Pods().Informer()
	if _, err := informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { seen(obj.(*corev1.Pod)) },
		UpdateFunc: func(_, obj any) { seen(obj.(*corev1.Pod)) },
		DeleteFunc: func(obj any) {
			if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = tomb.Obj
			}
			if p, ok := obj.(*corev1.Pod); ok {
				gone(p)
			}
		},
	}); err != nil {
		t.Fatal(err)
	}
	ch := make(chan struct{})
	factory.Start(ch)
	factory.WaitForCacheSync(ch)
	var once sync.Once
	stop = func() { once.Do(func() { close(ch); factory.Shutdown() }) }
	t.Cleanup(stop)
	return stop
}

func (l *loop) watchPods(max int) *podWatch {
	l.t.Helper()
	w := &podWatch{max: max, draining: map[string]bool{}, drained: map[string]bool{}, reasons: map[string]string{},
		serving: map[string]bool{}, minServing: -1, direct: map[string]bool{}}
	watchNamespacePods(l.t, l.ns, w.seen, w.gone)
	return w
}

func (w *podWatch) seen(p *corev1.Pod) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if c, ok := contract.Drained(p); ok {
		w.drained[p.Name] = true
		w.reasons[p.Name] = c.Reason
	}
	if p.DeletionTimestamp == nil && podReady(p) {
		w.serving[p.Name] = true
	} else {
		delete(w.serving, p.Name)
	}
	w.noteServing()
	if contract.DrainRequested(p) && !w.drained[p.Name] && p.DeletionTimestamp == nil {
		w.draining[p.Name] = true
	} else {
		delete(w.draining, p.Name)
	}
	w.maxDraining = max(w.maxDraining, len(w.draining))
	if p.DeletionTimestamp != nil && !contract.DrainRequested(p) {
		w.direct[p.Name] = true
	}
	if p.DeletionTimestamp != nil && contract.DrainRequested(p) && !w.drained[p.Name] && !w.allowUndrained {
		w.violations = append(w.violations, fmt.Sprintf("pod %s was deleted before it reported Drained", p.Name))
	}
}

func (w *podWatch) gone(p *corev1.Pod) {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.draining, p.Name)
	delete(w.serving, p.Name)
	w.noteServing()
	w.deleted = append(w.deleted, p.Name)
}

// noteServing updates minServing; w.mu is held.
func (w *podWatch) noteServing() {
	if w.minServing >= 0 {
		w.minServing = min(w.minServing, len(w.serving))
	}
}

// trackServing starts counting the fewest pods serving at once.
func (w *podWatch) trackServing() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.minServing = len(w.serving)
}

// fewestServing returns the fewest pods that were ready and not
// terminating at once since trackServing.
func (w *podWatch) fewestServing() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.minServing
}

// drainedReason returns the reason of the pod's Drained condition, if it
// reported one.
func (w *podWatch) drainedReason(pod string) (string, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	r, ok := w.reasons[pod]
	return r, ok
}

// deletedDirectly reports whether the pod was deleted without a drain
// request.
func (w *podWatch) deletedDirectly(pod string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.direct[pod]
}

// checkRemovals checks how each pod the watch saw deleted went, when only
// the operator deletes pods: asked to drain and deleted once it reported
// Drained (check flags the others), or deleted directly because its
// worker announced no task in flight, which the operator's DeletedIdle
// events name. It returns how many went each way.
func (l *loop) checkRemovals(w *podWatch) (drained, direct int) {
	l.t.Helper()
	list, err := env.Clientset.EventsV1().Events(l.ns).List(l.t.Context(), metav1.ListOptions{})
	if err != nil {
		l.t.Fatalf("listing the events: %v", err)
	}
	var notes []string
	for _, e := range list.Items {
		if e.Regarding.Kind == "LoopDeployment" && e.Regarding.Name == l.name && e.Reason == loopsv1alpha1.EventDeletedIdle {
			notes = append(notes, e.Note)
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, p := range w.deleted {
		switch {
		case w.drained[p]:
			drained++
		case w.direct[p]:
			direct++
			named := slices.ContainsFunc(notes, func(n string) bool { return strings.Contains(n, p) || strings.Contains(n, " more") })
			if !named {
				l.t.Errorf("pod %s was deleted without a drain request, and no %s event names it: %q", p, loopsv1alpha1.EventDeletedIdle, notes)
			}
		default:
			l.t.Errorf("pod %s was deleted after a drain request without reporting Drained", p)
		}
	}
	l.t.Logf("pods removed: %d drained (asked, reported Drained, deleted), %d deleted directly as idle", drained, direct)
	return drained, direct
}

// wasDeleted reports whether the pod was deleted.
func (w *podWatch) wasDeleted(pod string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Contains(w.deleted, pod)
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// check fails the test for what the watch saw wrong.
func (w *podWatch) check(t *testing.T) {
	t.Helper()
	w.mu.Lock()
	defer w.mu.Unlock()
	t.Logf("pods: at most %d draining at once (limit %d), %d deleted", w.maxDraining, w.max, len(w.deleted))
	if w.maxDraining > w.max {
		t.Errorf("%d pods were draining at once; drain.maxConcurrent is %d", w.maxDraining, w.max)
	}
	for _, v := range w.violations {
		t.Error(v)
	}
}

// waitDeleted waits until the watch has seen at least n pods deleted; why
// says where n comes from. Its events trail the API server: a list may
// show the pods gone before the watch has heard of every deletion, so
// reading the count at once races the watch and may miss some.
func (w *podWatch) waitDeleted(t *testing.T, n int, why string) {
	t.Helper()
	eventually(t, 30*time.Second, fmt.Sprintf("the watch to see %d pods deleted (%s)", n, why), func() (bool, error) {
		return len(w.deletedPods()) >= n, nil
	})
}

// eventually polls cond until it holds or timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() (bool, error)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	ticker := time.NewTicker(250 * time.Millisecond)
	defer ticker.Stop()
	var lastErr error
	for {
		ok, err := cond()
		if ok {
			return
		}
		if err != nil {
			lastErr = err
		}
		if time.Now().After(deadline) {
			t.Fatalf("waited %s for %s (last error: %v)", timeout, what, lastErr)
		}
		select {
		case <-t.Context().Done():
			t.Fatalf("waiting for %s: %v", what, t.Context().Err())
		case <-ticker.C:
		}
	}
}

// kubectlContext is kubectl with a context of its own, for clean-ups. It
// is given the suite's kubeconfig when it has one (local mode); in kind
// mode it reads KUBECONFIG, as the suite's clients do.
func kubectlContext(ctx context.Context, args ...string) (string, error) {
	if env.Kubeconfig != "" {
		args = append([]string{"--kubeconfig", env.Kubeconfig}, args...)
	}
	cmd := exec.CommandContext(ctx, "kubectl", args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// workerStatus reads the loop-worker status of a pod from its admin port.
func (l *loop) workerStatus(pod string) (workerloop.Status, error) {
	return env.WorkerStatus(l.t.Context(), l.ns, pod)
}

// busyPod waits until one of the loop's ready pods holds at least one task
// of kind and returns its name and how many it holds.
func (l *loop) busyPod(kind string) (string, int) {
	l.t.Helper()
	var name string
	var held int
	eventually(l.t, time.Minute, "a pod holding a "+kind+" task", func() (bool, error) {
		var lastErr error
		for _, p := range l.pods() {
			if p.DeletionTimestamp != nil || contract.DrainRequested(&p) || !podReady(&p) {
				continue
			}
			st, err := l.workerStatus(p.Name)
			if err != nil {
				lastErr = err
				continue
			}
			if n := st.InFlightByKind[kind]; n > 0 {
				name, held = p.Name, n
				return true, nil
			}
		}
		return false, lastErr
	})
	return name, held
}

// result is one result record of the loop. Finish is the record's stream
// timestamp (the attempt ended just before); Start is Finish − Duration.
type result struct {
	ID            string
	Worker        string
	Attempts      int
	Deliveries    int // the server's delivery count: above 1 after a hand-back or a crash
	Duration      time.Duration
	Start, Finish time.Time
}

// results reads every result record the loop's result stream holds now.
func (l *loop) results() []result {
	l.t.Helper()
	ctx := l.t.Context()
	stream, err := l.js.Stream(ctx, l.names.ResultStream())
	if err != nil {
		l.t.Fatal(err)
	}
	info, err := stream.Info(ctx)
	if err != nil {
		l.t.Fatal(err)
	}
	last := info.State.LastSeq
	c, err := stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverAllPolicy})
	if err != nil {
		l.t.Fatal(err)
	}
	var out []result
	var seq uint64
	for seq < last {
		batch, err := c.Fetch(1000, jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			l.t.Fatalf("reading the result stream: %v", err)
		}
		n := 0
		for m := range batch.Messages() {
			n++
			md, err := m.Metadata()
			if err != nil {
				l.t.Fatal(err)
			}
			seq = md.Sequence.Stream
			h := m.Headers()
			attempts, _ := strconv.Atoi(h.Get(queue.HeaderAttempts))
			deliveries, _ := strconv.Atoi(h.Get(queue.HeaderDeliveries))
			took, err := time.ParseDuration(h.Get(queue.HeaderDuration))
			if err != nil {
				l.t.Fatalf("result record %d: %s %q: %v", seq, queue.HeaderDuration, h.Get(queue.HeaderDuration), err)
			}
			out = append(out, result{ID: h.Get(queue.HeaderTaskID), Worker: h.Get(queue.HeaderWorker), Attempts: attempts, Deliveries: deliveries, Duration: took,
				Start: md.Timestamp.Add(-took), Finish: md.Timestamp})
		}
		if n == 0 {
			l.t.Fatalf("reading the result stream: stopped at %d of %d: %v", seq, last, batch.Error())
		}
	}
	return out
}

// pending returns how many tasks the loop's task stream still holds.
func (l *loop) pending() int {
	l.t.Helper()
	stream, err := l.js.Stream(l.t.Context(), l.names.Stream)
	if err != nil {
		l.t.Fatal(err)
	}
	info, err := stream.Info(l.t.Context())
	if err != nil {
		l.t.Fatal(err)
	}
	return int(info.State.Msgs)
}

// checkpoint returns the last checkpoint of a task, nil when it has none.
func (l *loop) checkpoint(id string) ([]byte, error) {
	kv, err := l.js.KeyValue(l.t.Context(), l.names.CheckpointBucket)
	if err != nil {
		return nil, err
	}
	e, err := kv.Get(l.t.Context(), checkpoint.Key(id))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return e.Value(), nil
}

// queuedEqualsOpen waits until the tasks left in the task stream are
// exactly the ledger's open ones (none lost: what did not run is still
// queued) and returns how many there are.
func (l *loop) queuedEqualsOpen() int {
	l.t.Helper()
	var open, queued int
	eventually(l.t, 30*time.Second, "the open tasks to be the queued ones", func() (bool, error) {
		open, queued = l.book.Summary().Open, l.pending()
		return open == queued, nil
	})
	l.t.Logf("%d tasks open in the ledger, %d still queued in stream %s", open, queued, l.names.Stream)
	return open
}

// deletePod deletes a pod of the loop with kubectl, as a user would, waits
// until it is gone (its grace period and 30 s more at most) and returns how
// long that took and its grace period.
func (l *loop) deletePod(name string) (took, grace time.Duration) {
	l.t.Helper()
	pod := &corev1.Pod{}
	if err := env.Client.Get(l.t.Context(), clientKey(l.ns, name), pod); err != nil {
		l.t.Fatal(err)
	}
	grace = time.Duration(*pod.Spec.TerminationGracePeriodSeconds) * time.Second
	start := time.Now()
	if out, err := kubectl(l.t, "-n", l.ns, "delete", "pod", name, "--wait=false"); err != nil {
		l.t.Fatalf("kubectl delete pod: %v\n%s", err, out)
	}
	eventually(l.t, grace+30*time.Second, "pod "+name+" to be gone", func() (bool, error) {
		err := env.Client.Get(l.t.Context(), clientKey(l.ns, name), &corev1.Pod{})
		if apierrors.IsNotFound(err) {
			return true, nil
		}
		return false, err
	})
	return time.Since(start), grace
}

func clientKey(namespace, name string) client.ObjectKey {
	return client.ObjectKey{Namespace: namespace, Name: name}
}
