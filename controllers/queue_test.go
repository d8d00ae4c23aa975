package controllers

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/onsi/gomega"
	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	loopsv1alpha1 "github.com/tenire/loop-operator/api/v1alpha1"
	"github.com/tenire/loop-operator/api/v1alpha1/contract"
	"github.com/tenire/loop-operator/controllers/policy"
	"github.com/tenire/loop-operator/internal/natstest"
	"github.com/tenire/loop-operator/worker/loop"
	"github.com/tenire/loop-operator/worker/queue"
)

// queueHarness is a harness whose operator provisions and polls queues on
// a real embedded JetStream, every 200ms.
func queueHarness(t *testing.T) (*harness, *natstest.Server, jetstream.JetStream) {
	t.Helper()
	srv := natstest.Start(t)
	_, js := srv.Connect()
	h := newHarnessOn(t, cfg, func(h *harness) { h.pollQueues = 200 * time.Millisecond })
	return h, srv, js
}

func (h *harness) queueLD(name, url string, priorities ...string) *loopsv1alpha1.LoopDeployment {
	ld := h.newLD(name, 1)
	ld.Spec.Queue.NATS.URL = url
	for _, p := range priorities {
		ld.Spec.Loop.Priorities = append(ld.Spec.Loop.Priorities, loopsv1alpha1.PriorityClass{Name: p, Weight: 1})
	}
	return ld
}

// queueReady returns the QueueReady condition of name, nil until set.
func (h *harness) queueReady(name string) func() *metav1.Condition {
	return func() *metav1.Condition {
		return meta.FindStatusCondition(h.get(name).Status.Conditions, loopsv1alpha1.ConditionQueueReady)
	}
}

func haveReason(reason string) gomega.OmegaMatcher {
	return gomega.And(gomega.Not(gomega.BeNil()), gomega.HaveField("Reason", reason))
}

func submit(t *testing.T, js jetstream.JetStream, ld *loopsv1alpha1.LoopDeployment, priority string, n int) {
	t.Helper()
	p := queue.NewProducer(js, queue.NewNames(contract.QueueNames(ld.Namespace, ld.Name, ld.Spec.Queue.NATS)))
	batch := time.Now().UnixNano() // ids unique across calls: the stream drops a repeated id
	for i := range n {
		if _, _, err := p.Submit(t.Context(), queue.Task{ID: fmt.Sprintf("%s-%s-%d-%d", ld.Name, priority, batch, i), Kind: "sleep", Priority: priority}); err != nil {
			t.Fatalf("submitting task %d: %v", i, err)
		}
	}
}

func TestTheOperatorProvisionsTheQueueAndRecordsItsBacklog(t *testing.T) {
	h, srv, js := queueHarness(t)
	ld := h.queueLD("orders", srv.URL, "high", "low")
	h.create(ld)
	h.g.Eventually(h.queueReady("orders")).Should(haveReason(loopsv1alpha1.ReasonQueueProvisioned))

	ld = h.get("orders")
	names := queue.NewNames(contract.QueueNames(ld.Namespace, ld.Name, ld.Spec.Queue.NATS))
	s, err := js.Stream(t.Context(), names.Stream)
	if err != nil {
		t.Fatalf("the stream %s was not provisioned: %v", names.Stream, err)
	}
	if owner, ok := queue.OwnerOf(s.CachedInfo().Config.Metadata); !ok || owner.UID != string(ld.UID) {
		t.Errorf("the stream records owner %+v, want the LoopDeployment's uid %s", owner, ld.UID)
	}
	if _, err := queue.Bind(t.Context(), js, names, []string{"high", "low"}, time.Hour); err != nil {
		t.Errorf("a worker cannot bind to what the operator provisioned: %v", err)
	}

	submit(t, js, ld, "high", 30)
	submit(t, js, ld, "low", 5)
	// A poll may catch the submissions half-way and write that; the rest
	// is written within the bounds of policy.QueueStatusDue (a change by
	// a fifth after 30s, any change after 60s), hence the longer wait.
	h.g.Eventually(func() *loopsv1alpha1.QueueStatus { return h.get("orders").Status.Queue }, 2*policy.QueueStatusMaxAge).Should(gomega.And(
		gomega.Not(gomega.BeNil()),
		gomega.HaveField("Pending", int64(35)),
		gomega.HaveField("Stream", names.Stream),
		gomega.HaveField("Priorities", gomega.HaveLen(2)),
		gomega.HaveField("OldestTaskTime", gomega.Not(gomega.BeNil())),
	))
	q := h.get("orders").Status.Queue
	if q.Priorities[0].Name != "high" || q.Priorities[0].Pending != 30 || q.Priorities[1].Pending != 5 {
		t.Errorf("status.queue.priorities = %+v, want high 30 then low 5", q.Priorities)
	}
}

func TestAStreamOwnedByAnotherLoopDeploymentIsNeverTouched(t *testing.T) {
	h, srv, js := queueHarness(t)
	first := h.queueLD("first", srv.URL, "high")
	first.Spec.Queue.NATS.Stream = "SHARED"
	h.create(first)
	h.g.Eventually(h.queueReady("first")).Should(haveReason(loopsv1alpha1.ReasonQueueProvisioned))

	second := h.queueLD("second", srv.URL, "other")
	second.Spec.Queue.NATS.Stream = "SHARED"
	h.create(second)
	h.g.Eventually(h.queueReady("second")).Should(gomega.And(
		haveReason(loopsv1alpha1.ReasonQueueOwnedElsewhere),
		gomega.HaveField("Status", metav1.ConditionFalse),
		gomega.HaveField("Message", gomega.ContainSubstring(h.ns+"/first")),
	))
	s, err := js.Stream(t.Context(), "SHARED")
	if err != nil {
		t.Fatal(err)
	}
	if subjects := s.CachedInfo().Config.Subjects; !slices.Equal(subjects, []string{"loops." + h.ns + ".first.tasks.high", "loops." + h.ns + ".first.scheduled.high.>"}) {
		t.Errorf("the owner's stream now holds %v: the second LoopDeployment rewrote it", subjects)
	}
	if _, err := js.Consumer(t.Context(), "SHARED", "other"); err == nil {
		t.Error("the second LoopDeployment created a consumer on the first one's stream")
	}
}

func TestAnUnreachableQueueSaysSoAndTheAutoscalerHoldsTheCount(t *testing.T) {
	h, _, _ := queueHarness(t)
	ld := h.queueLD("cut-off", "nats://127.0.0.1:1")
	ld.Spec.Replicas = ptr.To[int32](2)
	ld.Spec.Autoscaling = &loopsv1alpha1.AutoscalingSpec{MinReplicas: ptr.To[int32](1), MaxReplicas: 5, TargetBacklogPerReplica: ptr.To[int32](10)}
	h.create(ld)
	h.g.Eventually(h.queueReady("cut-off")).Should(haveReason(loopsv1alpha1.ReasonQueueUnreachable))
	h.g.Eventually(func() *metav1.Condition {
		return meta.FindStatusCondition(h.get("cut-off").Status.Conditions, loopsv1alpha1.ConditionScalingActive)
	}).Should(haveReason(loopsv1alpha1.ReasonBacklogUnavailable))
	h.g.Consistently(func() int32 { return *h.get("cut-off").Spec.Replicas }, 2*time.Second).Should(gomega.Equal(int32(2)))
	h.g.Eventually(func() []string { return h.events("cut-off") }).Should(gomega.ContainElement(loopsv1alpha1.EventAutoscalingHeld))
}

func TestTheAutoscalerFollowsTheBacklogUpAndDownToZeroAndBack(t *testing.T) {
	h, srv, js := queueHarness(t)
	ld := h.queueLD("elastic", srv.URL)
	ld.Spec.Autoscaling = &loopsv1alpha1.AutoscalingSpec{
		MinReplicas: ptr.To[int32](0), MaxReplicas: 4, TargetBacklogPerReplica: ptr.To[int32](10),
		ScaleToZeroAfter: &metav1.Duration{Duration: time.Second},
		Behavior: &loopsv1alpha1.AutoscalingBehavior{ScaleDown: &loopsv1alpha1.ScalingRules{
			StabilizationWindowSeconds: ptr.To[int32](0),
		}},
	}
	h.create(ld)
	h.g.Eventually(h.queueReady("elastic")).Should(haveReason(loopsv1alpha1.ReasonQueueProvisioned))
	replicas := func() int32 { return *h.get("elastic").Spec.Replicas }

	submit(t, js, ld, queue.DefaultPriority, 100)
	h.g.Eventually(replicas).Should(gomega.Equal(int32(4)), "100 tasks at 10 per replica, at most 4")
	h.g.Eventually(func() []string { return h.events("elastic") }).Should(gomega.ContainElement(loopsv1alpha1.EventAutoscaled))

	// The tasks are done: a stand-in for the workers takes and acks them.
	names := queue.NewNames(contract.QueueNames(ld.Namespace, ld.Name, ld.Spec.Queue.NATS))
	cons, err := queue.Bind(t.Context(), js, names, []string{queue.DefaultPriority}, 0)
	if err != nil {
		t.Fatal(err)
	}
	for done := 0; done < 100; {
		batch, err := cons[0].Fetch(100, jetstream.FetchMaxWait(time.Second))
		if err != nil {
			t.Fatal(err)
		}
		for m := range batch.Messages() {
			if err := m.DoubleAck(t.Context()); err != nil {
				t.Fatal(err)
			}
			done++
		}
	}
	h.g.Eventually(replicas, time.Minute).Should(gomega.Equal(int32(0)), "an empty queue for scaleToZeroAfter")
	h.g.Eventually(func() int { return len(h.pods("elastic")) }, time.Minute).Should(gomega.Equal(0))

	submit(t, js, ld, queue.DefaultPriority, 1)
	h.g.Eventually(replicas).Should(gomega.Equal(int32(1)), "one pending task wakes the loop")
}

// A loop with minReplicas 0 whose queue never held a task goes to zero
// scaleToZeroAfter after the operator first read the queue empty: the idle
// time does not wait for a first task.
func TestALoopWhoseQueueNeverHeldATaskScalesToZero(t *testing.T) {
	h, srv, _ := queueHarness(t)
	ld := h.queueLD("never-busy", srv.URL)
	ld.Spec.Autoscaling = &loopsv1alpha1.AutoscalingSpec{
		MinReplicas: ptr.To[int32](0), MaxReplicas: 2, TargetBacklogPerReplica: ptr.To[int32](10),
		ScaleToZeroAfter: &metav1.Duration{Duration: time.Second},
		Behavior: &loopsv1alpha1.AutoscalingBehavior{ScaleDown: &loopsv1alpha1.ScalingRules{
			StabilizationWindowSeconds: ptr.To[int32](0),
		}},
	}
	h.create(ld)
	h.g.Eventually(func() int32 { return *h.get("never-busy").Spec.Replicas }, time.Minute).Should(gomega.Equal(int32(0)),
		"an empty queue for scaleToZeroAfter, though it never held a task")
	st := h.get("never-busy").Status.Autoscaling
	if st == nil || st.LastActiveTime == nil {
		t.Errorf("status.autoscaling = %+v, want lastActiveTime set to the first reading", st)
	}
}

// A new autoscaled loop is reconciled before its queue is first read: the
// autoscaler holds the count without a Warning event, which it keeps for a
// queue that could not be read.
func TestANewAutoscaledLoopIsNotReportedAsHeld(t *testing.T) {
	h, srv, _ := queueHarness(t)
	ld := h.queueLD("fresh", srv.URL)
	ld.Spec.Autoscaling = &loopsv1alpha1.AutoscalingSpec{MinReplicas: ptr.To[int32](1), MaxReplicas: 2, TargetBacklogPerReplica: ptr.To[int32](10)}
	h.create(ld)
	h.g.Eventually(func() *metav1.Condition {
		return meta.FindStatusCondition(h.get("fresh").Status.Conditions, loopsv1alpha1.ConditionScalingActive)
	}).Should(haveReason(loopsv1alpha1.ReasonAutoscaling))
	h.g.Consistently(func() []string { return h.events("fresh") }, time.Second).ShouldNot(gomega.ContainElement(loopsv1alpha1.EventAutoscalingHeld))
}

func TestTasksOfARemovedPriorityAreMovedNotStranded(t *testing.T) {
	h, srv, js := queueHarness(t)
	ld := h.queueLD("shrinking", srv.URL, "high", "low")
	h.create(ld)
	h.g.Eventually(h.queueReady("shrinking")).Should(haveReason(loopsv1alpha1.ReasonQueueProvisioned))
	submit(t, js, ld, "high", 20)
	h.update("shrinking", func(ld *loopsv1alpha1.LoopDeployment) {
		ld.Spec.Loop.Priorities = []loopsv1alpha1.PriorityClass{{Name: "low", Weight: 1}}
	})
	h.g.Eventually(func() []loopsv1alpha1.PriorityQueueStatus {
		if q := h.get("shrinking").Status.Queue; q != nil {
			return q.Priorities
		}
		return nil
	}).Should(gomega.Equal([]loopsv1alpha1.PriorityQueueStatus{{Name: "low", Pending: 20}}))
	h.g.Eventually(func() []string { return h.events("shrinking") }).Should(gomega.ContainElement(loopsv1alpha1.EventTasksMoved))
	names := queue.NewNames(contract.QueueNames(ld.Namespace, ld.Name, ld.Spec.Queue.NATS))
	if _, err := js.Consumer(t.Context(), names.Stream, "high"); err == nil {
		t.Error("the consumer of the removed priority is still there after its tasks moved")
	}
	if _, err := js.Publish(t.Context(), names.TaskSubject("high"), nil); err == nil {
		t.Error("a publish to the removed priority was accepted")
	}
}

func TestARenamedStreamHandsItsTasksToTheNewOne(t *testing.T) {
	h, srv, js := queueHarness(t)
	ld := h.queueLD("renamed", srv.URL)
	ld.Spec.Queue.NATS.Stream = "BEFORE"
	h.create(ld)
	h.g.Eventually(func() *loopsv1alpha1.QueueStatus { return h.get("renamed").Status.Queue }).Should(gomega.Not(gomega.BeNil()))
	submit(t, js, ld, queue.DefaultPriority, 15)
	h.update("renamed", func(ld *loopsv1alpha1.LoopDeployment) { ld.Spec.Queue.NATS.Stream = "AFTER" })
	h.g.Eventually(func() *loopsv1alpha1.QueueStatus { return h.get("renamed").Status.Queue }).Should(gomega.And(
		gomega.HaveField("Stream", "AFTER"), gomega.HaveField("RetiringStream", ""), gomega.HaveField("Pending", int64(15))))
	h.g.Eventually(func() error { _, err := js.Stream(t.Context(), "BEFORE"); return err }).Should(gomega.MatchError(jetstream.ErrStreamNotFound))
}

func TestDeletionPolicyDeleteRemovesTheQueueAndRetainKeepsIt(t *testing.T) {
	h, srv, js := queueHarness(t)
	for _, policy := range []loopsv1alpha1.DeletionPolicy{loopsv1alpha1.DeletionPolicyDelete, loopsv1alpha1.DeletionPolicyRetain} {
		name := strings.ToLower(string(policy))
		ld := h.queueLD(name, srv.URL)
		ld.Spec.Queue.NATS.DeletionPolicy = policy
		h.create(ld)
		h.g.Eventually(h.queueReady(name)).Should(haveReason(loopsv1alpha1.ReasonQueueProvisioned))
		submit(t, js, ld, queue.DefaultPriority, 3)
		ld = h.get(name)
		if err := h.c.Delete(h.ctx, ld); err != nil {
			t.Fatal(err)
		}
		h.g.Eventually(h.gone(ld), time.Minute).Should(gomega.BeTrue())
		names := queue.NewNames(contract.QueueNames(ld.Namespace, ld.Name, ld.Spec.Queue.NATS))
		_, err := js.Stream(t.Context(), names.Stream)
		switch policy {
		case loopsv1alpha1.DeletionPolicyDelete:
			if err == nil {
				t.Errorf("deletionPolicy Delete left the stream %s", names.Stream)
			}
		default:
			if err != nil {
				t.Errorf("deletionPolicy Retain lost the stream %s with its 3 tasks: %v", names.Stream, err)
			}
		}
	}
}

func TestTheOperatorProvisionsWithTheSecretsCredentialsAndSaysWhenNATSRefusesThem(t *testing.T) {
	srv := natstest.StartSecured(t)
	h := newHarnessOn(t, cfg, func(h *harness) { h.pollQueues = 200 * time.Millisecond })
	for name, creds := range map[string][]byte{"trusted": srv.Creds, "foreign": srv.Untrusted} {
		h.g.Expect(h.c.Create(h.ctx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: h.ns},
			Data:       map[string][]byte{loopsv1alpha1.DefaultCredentialsKey: creds},
		})).To(gomega.Succeed())
	}
	withSecret := func(name, secret string) *loopsv1alpha1.LoopDeployment {
		ld := h.queueLD(name, srv.URL, "high")
		ld.Spec.Replicas = ptr.To[int32](2)
		ld.Spec.Queue.NATS.CredentialsSecretRef = &corev1.LocalObjectReference{Name: secret}
		return ld
	}
	h.create(withSecret("granted", "trusted"))
	h.create(withSecret("refused", "foreign"))

	h.g.Eventually(h.queueReady("granted")).Should(haveReason(loopsv1alpha1.ReasonQueueProvisioned))
	h.g.Eventually(h.queueReady("refused")).Should(gomega.And(
		haveReason(loopsv1alpha1.ReasonQueueUnauthorized),
		gomega.HaveField("Status", metav1.ConditionFalse),
	))
	t.Logf("QueueReady of the refused loop: %s", h.queueReady("refused")().Message)

	// The granted loop's queue is there, read with the trusted user's own
	// credentials; the refused loop keeps its pods.
	nc, err := srv.Connect(t, srv.Creds)
	if err != nil {
		t.Fatal(err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ld := h.get("granted")
	stream := queue.NewNames(contract.QueueNames(ld.Namespace, ld.Name, ld.Spec.Queue.NATS)).Stream
	if _, err := js.Stream(t.Context(), stream); err != nil {
		t.Errorf("stream %s of the granted loop: %v", stream, err)
	}
	h.g.Consistently(func() int { return len(h.pods("refused")) }, 2*time.Second).Should(gomega.Equal(2))
}

// announceLoads publishes, as the workers of ld's pods, every 100ms (as
// loop.announce does every 2s) until the test ends, the tasks in flight of
// each pod that loads returns.
func announceLoads(t *testing.T, srv *natstest.Server, ld *loopsv1alpha1.LoopDeployment, loads func() map[string]int) {
	t.Helper()
	nc, _ := srv.Connect()
	subject := queue.NewNames(contract.QueueNames(ld.Namespace, ld.Name, ld.Spec.Queue.NATS)).StatusSubject()
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			for pod, n := range loads() {
				a := loop.Announcement{Worker: pod, At: time.Now(), Status: loop.Status{State: "Running", InFlightByKind: map[string]int{}}}
				if n > 0 {
					a.Status.InFlightByKind["sleep"] = n
				}
				data, _ := json.Marshal(a)
				_ = nc.Publish(subject, data)
			}
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	}()
	t.Cleanup(func() { close(stop); <-done })
}

// TestATerminatingPodThatHoldsNothingTakesNoDrainSlot: a pod that
// terminates (here evicted, and held terminating as a slow kubelet would)
// while its worker announces nothing in flight does not hold up a drain
// that the loop's single slot (maxConcurrent 1) allows; a pod that may
// hold tasks would (TestATerminatingPodTakesADrainSlot).
func TestATerminatingPodThatHoldsNothingTakesNoDrainSlot(t *testing.T) {
	h, srv, _ := queueHarness(t)
	ld := h.queueLD("empty", srv.URL)
	ld.Spec.Replicas = ptr.To[int32](3) // newLD's drain budget: one at a time
	h.create(ld)
	h.g.Eventually(func() []string { return h.readyPods("empty") }).Should(gomega.HaveLen(3))
	h.g.Eventually(h.queueReady("empty")).Should(haveReason(loopsv1alpha1.ReasonQueueProvisioned))
	ld = h.get("empty")

	evicted := h.pods("empty")[0].Name
	var mu sync.Mutex
	everyone := map[string]bool{}
	// Every pod's worker holds two tasks but the evicted one's, which
	// holds none; the evicted pod is announced after it terminates too.
	announceLoads(t, srv, ld, func() map[string]int {
		mu.Lock()
		defer mu.Unlock()
		// Not h.pods, which fails the test: this runs on the announcer's
		// goroutine, also after the test's context has ended and before
		// the clean-up stops it; a list that fails then announces the
		// pods known so far.
		list := &corev1.PodList{}
		if err := h.c.List(h.ctx, list, client.InNamespace(h.ns), client.MatchingLabels{loopsv1alpha1.LabelName: "empty"}); err == nil {
			for _, p := range list.Items {
				everyone[p.Name] = true
			}
		}
		load := map[string]int{}
		for name := range everyone {
			load[name] = 2
		}
		load[evicted] = 0
		return load
	})
	h.g.Eventually(func() int { return len(h.queues.Loads(ld.UID)) }).Should(gomega.Equal(3))

	h.holdTerminating(true)
	t.Cleanup(func() { h.holdTerminating(false) })
	h.g.Expect(h.c.Delete(h.ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: h.ns, Name: evicted}})).To(gomega.Succeed())
	h.g.Eventually(func() []string { return h.readyPods("empty") }).Should(gomega.HaveLen(3)) // a replacement

	busy := podNames(h.pods("empty"))
	w := h.watch()
	h.update("empty", func(ld *loopsv1alpha1.LoopDeployment) { ld.Spec.Replicas = ptr.To[int32](2) })
	h.g.Eventually(func() bool {
		return slices.ContainsFunc(busy, w.wasAsked)
	}).Should(gomega.BeTrue(), "no busy pod was asked to drain while an empty one terminated")
	var still corev1.Pod
	h.g.Expect(h.c.Get(h.ctx, client.ObjectKey{Namespace: h.ns, Name: evicted}, &still)).To(gomega.Succeed(), "the evicted pod is gone: the test proves nothing")
	h.g.Expect(still.DeletionTimestamp).NotTo(gomega.BeNil())
}

// TestAScaleDownDeletesIdlePodsAndDrainsBusyOnes: the pods whose workers
// announce no task in flight are deleted at once without a drain request
// and take no drain slot; the pods that hold tasks are drained one at a
// time (maxConcurrent 1), and so is a pod nobody heard from.
func TestAScaleDownDeletesIdlePodsAndDrainsBusyOnes(t *testing.T) {
	h, srv, _ := queueHarness(t)
	ld := h.queueLD("idle", srv.URL)
	ld.Spec.Replicas = ptr.To[int32](5)
	h.create(ld)
	h.g.Eventually(func() []string { return h.readyPods("idle") }).Should(gomega.HaveLen(5))
	h.g.Eventually(h.queueReady("idle")).Should(haveReason(loopsv1alpha1.ReasonQueueProvisioned))
	ld = h.get("idle")

	names := podNames(h.pods("idle"))
	idle, busy, quiet := names[:2], names[2:4], names[4]
	load := map[string]int{}
	for _, n := range idle {
		load[n] = 0
	}
	for _, n := range busy {
		load[n] = 2
	}
	// quiet announces nothing.
	announceLoads(t, srv, ld, func() map[string]int { return load })
	h.g.Eventually(func() int { return len(h.queues.Loads(ld.UID)) }).Should(gomega.Equal(4))

	idleBefore := testutil.ToFloat64(podsDeletedWithoutDrain.WithLabelValues(deletedIdle))
	w := h.watch()
	h.update("idle", func(ld *loopsv1alpha1.LoopDeployment) { ld.Spec.Replicas = ptr.To[int32](0) })
	h.g.Eventually(func() []corev1.Pod { return h.pods("idle") }, time.Minute).Should(gomega.BeEmpty())

	for _, p := range idle {
		if w.wasAsked(p) {
			t.Errorf("idle pod %s was asked to drain; it should have been deleted directly", p)
		}
	}
	for _, p := range append(slices.Clone(busy), quiet) {
		if !w.wasAsked(p) {
			t.Errorf("pod %s, which holds tasks or said nothing, was deleted without a drain request", p)
		}
	}
	if draining, _ := w.max(); draining != 1 {
		t.Errorf("at most %d pods drained at once, want exactly 1 (maxConcurrent 1)", draining)
	}
	if got := testutil.ToFloat64(podsDeletedWithoutDrain.WithLabelValues(deletedIdle)) - idleBefore; got != float64(len(idle)) {
		t.Errorf("%s{reason=idle} grew by %v, want %d", "tenire_loop_pods_deleted_without_drain_total", got, len(idle))
	}
	h.g.Expect(h.events("idle")).To(gomega.ContainElements(loopsv1alpha1.EventDeletedIdle, loopsv1alpha1.EventDrainStarted, loopsv1alpha1.EventDrainCompleted))
}
