package controllers

import (
	"context"
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/onsi/gomega"
	"github.com/prometheus/client_golang/prometheus/testutil"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	loopsv1alpha1 "github.com/tenire/loop-operator/api/v1alpha1"
	"github.com/tenire/loop-operator/api/v1alpha1/contract"
	"github.com/tenire/loop-operator/controllers/policy"
	"github.com/tenire/loop-operator/internal/testenv"
)

func conditionReason(ld *loopsv1alpha1.LoopDeployment, t string) string {
	c := meta.FindStatusCondition(ld.Status.Conditions, t)
	if c == nil {
		return ""
	}
	return string(c.Status) + "/" + c.Reason
}

func TestScaleUpCreatesWorkerPodsThatFollowTheContract(t *testing.T) {
	h := newHarness(t)
	w := h.watch()
	ld := h.newLD("orders", 3)
	h.create(ld)

	h.g.Eventually(func() []string { return h.readyPods("orders") }).Should(gomega.HaveLen(3))
	h.g.Eventually(func() int32 { return h.get("orders").Status.AvailableReplicas }).Should(gomega.BeEquivalentTo(3))
	got := h.get("orders")
	h.g.Expect(conditionReason(got, loopsv1alpha1.ConditionProgressing)).To(gomega.Equal("False/" + loopsv1alpha1.ReasonComplete))
	h.g.Expect(got.Finalizers).To(gomega.ContainElement(loopsv1alpha1.FinalizerDrain))
	h.g.Expect(got.Status.Replicas).To(gomega.BeEquivalentTo(3))
	h.g.Expect(got.Status.ReadyReplicas).To(gomega.BeEquivalentTo(3))
	h.g.Expect(got.Status.AvailableReplicas).To(gomega.BeEquivalentTo(3))
	h.g.Expect(got.Status.UpdatedReplicas).To(gomega.BeEquivalentTo(3))
	h.g.Expect(got.Status.Selector).To(gomega.Equal(loopsv1alpha1.LabelName + "=orders"))
	h.g.Expect(got.Status.UpdateRevision).NotTo(gomega.BeEmpty())
	h.g.Expect(got.Status.CurrentRevision).To(gomega.Equal(got.Status.UpdateRevision))
	h.g.Expect(got.Status.ObservedGeneration).To(gomega.Equal(got.Generation))
	h.g.Expect(conditionReason(got, loopsv1alpha1.ConditionAvailable)).To(gomega.Equal("True/" + loopsv1alpha1.ReasonMinimumReplicasAvailable))
	h.g.Expect(conditionReason(got, loopsv1alpha1.ConditionDegraded)).To(gomega.Equal("False/" + loopsv1alpha1.ReasonAsExpected))
	h.g.Expect(conditionReason(got, loopsv1alpha1.ConditionSuspended)).To(gomega.Equal("False/" + loopsv1alpha1.ReasonNotSuspended))
	h.g.Expect(h.events("orders")).To(gomega.ContainElement(loopsv1alpha1.EventScaledUp))
	if _, serving := w.max(); serving > 3 {
		t.Errorf("%d pods served at once, replicas is 3", serving)
	}

	p := h.pods("orders")[0]
	h.g.Expect(p.Labels).To(gomega.HaveKeyWithValue(loopsv1alpha1.LabelRevision, got.Status.UpdateRevision))
	h.g.Expect(metav1.IsControlledBy(&p, got)).To(gomega.BeTrue())
	h.g.Expect(p.Spec.ServiceAccountName).To(gomega.Equal("orders-loop-worker"))
	h.g.Expect(*p.Spec.TerminationGracePeriodSeconds).To(gomega.BeEquivalentTo(60)) // 30s drain + 30s margin
	c := p.Spec.Containers[0]
	h.g.Expect(c.Ports).To(gomega.ContainElement(gomega.HaveField("Name", loopsv1alpha1.WorkerAdminPortName)))
	h.g.Expect(c.ReadinessProbe.HTTPGet.Path).To(gomega.Equal("/readyz"))
	h.g.Expect(*c.SecurityContext.AllowPrivilegeEscalation).To(gomega.BeFalse())
	var settings loopsv1alpha1.WorkerSettings
	for _, e := range c.Env {
		if e.Name == loopsv1alpha1.EnvWorkerSettings {
			h.g.Expect(json.Unmarshal([]byte(e.Value), &settings)).To(gomega.Succeed())
		}
	}
	h.g.Expect(settings.Name).To(gomega.Equal("orders"))
	h.g.Expect(settings.Stream).To(gomega.Equal("LOOP_" + h.ns + "_orders"))
	h.g.Expect(settings.DrainTimeout.Duration).To(gomega.Equal(30 * time.Second))

	pdb := &policyv1.PodDisruptionBudget{}
	h.g.Expect(h.c.Get(h.ctx, client.ObjectKey{Namespace: h.ns, Name: "orders"}, pdb)).To(gomega.Succeed())
	h.g.Expect(pdb.Spec.MaxUnavailable).To(gomega.Equal(ptr.To(intstr.FromInt32(1))))
	h.g.Expect(pdb.Spec.Selector.MatchLabels).To(gomega.Equal(map[string]string{loopsv1alpha1.LabelName: "orders"}))
	role := &rbacv1.Role{}
	h.g.Expect(h.c.Get(h.ctx, client.ObjectKey{Namespace: h.ns, Name: "orders-loop-worker"}, role)).To(gomega.Succeed())
	h.g.Expect(role.Rules).To(gomega.Equal(workerRules))
	h.g.Expect(metav1.IsControlledBy(role, got)).To(gomega.BeTrue())
	sa := &corev1.ServiceAccount{}
	h.g.Expect(h.c.Get(h.ctx, client.ObjectKey{Namespace: h.ns, Name: "orders-loop-worker"}, sa)).To(gomega.Succeed())
	h.g.Expect(metav1.IsControlledBy(sa, got)).To(gomega.BeTrue())
	rb := &rbacv1.RoleBinding{}
	h.g.Expect(h.c.Get(h.ctx, client.ObjectKey{Namespace: h.ns, Name: "orders-loop-worker"}, rb)).To(gomega.Succeed())
	h.g.Expect(rb.Subjects).To(gomega.Equal([]rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: h.ns, Name: "orders-loop-worker"}}))
}

func TestScaleDownDrainsTheNewestPodsOneAtATime(t *testing.T) {
	h := newHarness(t)
	h.create(h.newLD("orders", 4))
	h.g.Eventually(func() []string { return h.readyPods("orders") }).Should(gomega.HaveLen(4))
	all := h.pods("orders")
	before := testutil.ToFloat64(drainsTotal.WithLabelValues(DrainResultCompleted))

	w := h.watch()
	// As `kubectl scale ld/orders --replicas=2` does: through /scale.
	scale := &autoscalingv1.Scale{Spec: autoscalingv1.ScaleSpec{Replicas: 2}}
	h.g.Expect(h.c.SubResource("scale").Update(h.ctx, h.get("orders"), client.WithSubResourceBody(scale))).To(gomega.Succeed())
	h.g.Eventually(func() []corev1.Pod { return h.pods("orders") }).Should(gomega.HaveLen(2))
	// Creation times have a resolution of one second: no pod that went may
	// be older than a pod that stayed.
	kept := h.pods("orders")
	for _, p := range all {
		if slices.ContainsFunc(kept, func(k corev1.Pod) bool { return k.Name == p.Name }) {
			continue
		}
		for _, k := range kept {
			if p.CreationTimestamp.Before(&k.CreationTimestamp) {
				t.Errorf("pod %s (created %s) was drained before the newer %s (created %s)", p.Name, p.CreationTimestamp, k.Name, k.CreationTimestamp)
			}
		}
	}
	h.g.Eventually(func() int32 { return h.get("orders").Status.Replicas }).Should(gomega.BeEquivalentTo(2))
	h.g.Expect(h.c.SubResource("scale").Get(h.ctx, h.get("orders"), scale)).To(gomega.Succeed())
	h.g.Expect(scale.Status.Selector).To(gomega.Equal(loopsv1alpha1.LabelName + "=orders"))
	if draining, _ := w.max(); draining != 1 {
		t.Errorf("at most %d pods drained at once, want exactly 1 (maxConcurrent 1)", draining)
	}
	h.g.Expect(h.events("orders")).To(gomega.ContainElements(loopsv1alpha1.EventDrainStarted, loopsv1alpha1.EventDrainCompleted))
	h.g.Expect(testutil.ToFloat64(drainsTotal.WithLabelValues(DrainResultCompleted)) - before).To(gomega.BeNumerically(">=", 2))
	h.g.Eventually(func() string {
		return conditionReason(h.get("orders"), loopsv1alpha1.ConditionDraining)
	}).Should(gomega.Equal("False/" + loopsv1alpha1.ReasonNoDrains))
}

func TestScaleDownDrainsAPodThatIsNotReadyFirst(t *testing.T) {
	h := newHarness(t)
	h.create(h.newLD("orders", 3))
	h.g.Eventually(func() []string { return h.readyPods("orders") }).Should(gomega.HaveLen(3))
	sick := podNames(h.pods("orders"))[0] // the oldest: only its readiness puts it first
	h.setNotReady(sick, true)
	h.g.Eventually(func() int32 { return h.get("orders").Status.ReadyReplicas }).Should(gomega.BeEquivalentTo(2))

	h.update("orders", func(ld *loopsv1alpha1.LoopDeployment) { ld.Spec.Replicas = ptr.To[int32](2) })
	h.g.Eventually(func() []string { return podNames(h.pods("orders")) }).ShouldNot(gomega.ContainElement(sick))
	h.g.Consistently(func() []string { return podNames(h.pods("orders")) }, time.Second).Should(gomega.HaveLen(2))
}

func TestMaxConcurrentIsRespectedAtEveryInstant(t *testing.T) {
	h := newHarness(t)
	ld := h.newLD("orders", 8)
	ld.Spec.Drain.MaxConcurrent = ptr.To(intstr.FromString("25%")) // of the pods there are, more than the replicas wanted: 2 of 8
	h.create(ld)
	h.g.Eventually(func() []string { return h.readyPods("orders") }).Should(gomega.HaveLen(8))

	w := h.watch()
	h.setSilent("", true) // drains pile up until the workers report
	h.update("orders", func(ld *loopsv1alpha1.LoopDeployment) { ld.Spec.Replicas = ptr.To[int32](4) })
	h.g.Eventually(func() int32 { return h.get("orders").Status.DrainingReplicas }).Should(gomega.BeEquivalentTo(2))
	h.g.Consistently(func() int32 { return h.get("orders").Status.DrainingReplicas }, time.Second).Should(gomega.BeEquivalentTo(2))
	h.setSilent("", false)
	h.g.Eventually(func() []corev1.Pod { return h.pods("orders") }).Should(gomega.HaveLen(4))
	if draining, _ := w.max(); draining != 2 {
		t.Errorf("at most %d pods drained at once, want exactly 2 (25%% of 8)", draining)
	}
}

func TestADrainThatTimesOutDeletesThePodAndDegrades(t *testing.T) {
	h := newHarness(t)
	ld := h.newLD("orders", 2)
	ld.Spec.Drain.Timeout = &metav1.Duration{Duration: 2 * time.Second}
	h.create(ld)
	h.g.Eventually(func() []string { return h.readyPods("orders") }).Should(gomega.HaveLen(2))
	before := testutil.ToFloat64(drainsTotal.WithLabelValues(DrainResultTimedOut))

	h.setSilent("", true)
	h.update("orders", func(ld *loopsv1alpha1.LoopDeployment) { ld.Spec.Replicas = ptr.To[int32](1) })
	h.g.Eventually(func() int32 { return h.get("orders").Status.DrainingReplicas }).Should(gomega.BeEquivalentTo(1))
	start := time.Now()
	h.g.Eventually(func() []corev1.Pod { return h.pods("orders") }).Should(gomega.HaveLen(1))
	if waited := time.Since(start); waited < time.Second {
		t.Errorf("the silent pod was deleted after %s, before its deadline", waited)
	}
	h.g.Eventually(func() string {
		return conditionReason(h.get("orders"), loopsv1alpha1.ConditionDegraded)
	}).Should(gomega.Equal("True/" + loopsv1alpha1.ReasonDrainTimedOut))
	h.g.Expect(h.events("orders")).To(gomega.ContainElement(loopsv1alpha1.EventDrainTimedOut))
	h.g.Expect(testutil.ToFloat64(drainsTotal.WithLabelValues(DrainResultTimedOut)) - before).To(gomega.BeEquivalentTo(1))
	// It stays Degraded for a human to see, until a worker reports again.
	h.g.Consistently(func() string {
		return conditionReason(h.get("orders"), loopsv1alpha1.ConditionDegraded)
	}, time.Second).Should(gomega.Equal("True/" + loopsv1alpha1.ReasonDrainTimedOut))
}

func TestRollingUpdateSurgesThenDrainsOldPods(t *testing.T) {
	h := newHarness(t)
	ld := h.newLD("orders", 3)
	ld.Spec.UpdateStrategy.MaxSurge = ptr.To(intstr.FromInt32(1))
	h.create(ld)
	h.g.Eventually(func() []string { return h.readyPods("orders") }).Should(gomega.HaveLen(3))
	oldRev := h.get("orders").Status.UpdateRevision

	w := h.watch()
	const v2 = "ghcr.io/tenire/loop-worker:v2"
	h.holdImage(v2) // the new pods start but are not ready yet
	h.update("orders", func(ld *loopsv1alpha1.LoopDeployment) {
		ld.Spec.Template.Spec.Containers[0].Image = v2
	})
	h.g.Eventually(func() []corev1.Pod { return h.pods("orders") }).Should(gomega.HaveLen(4))
	h.g.Consistently(func() int32 { return h.get("orders").Status.DrainingReplicas }, time.Second).Should(
		gomega.BeEquivalentTo(0), "an old pod drained before its replacement was ready")
	h.g.Expect(h.pods("orders")).To(gomega.HaveLen(4), "more than maxSurge new pods")
	h.holdImage("")
	h.g.Eventually(func() []string {
		var revs []string
		for _, p := range h.pods("orders") {
			revs = append(revs, p.Labels[loopsv1alpha1.LabelRevision]+"/"+p.Spec.Containers[0].Image)
		}
		return revs
	}).Should(gomega.SatisfyAll(gomega.HaveLen(3), gomega.HaveEach(gomega.HaveSuffix("/ghcr.io/tenire/loop-worker:v2"))))
	h.waitRolledOut("orders", w, 4, 1)
	got := h.get("orders")
	h.g.Expect(got.Status.UpdateRevision).NotTo(gomega.Equal(oldRev))
	h.g.Expect(got.Status.CurrentRevision).To(gomega.Equal(got.Status.UpdateRevision))
	h.g.Expect(got.Status.UpdatedReplicas).To(gomega.BeEquivalentTo(3))
}

func TestSuspendDrainsEveryPodAndResumeScalesBackUp(t *testing.T) {
	h := newHarness(t)
	ld := h.newLD("orders", 4)
	ld.Spec.Drain.MaxConcurrent = ptr.To(intstr.FromInt32(2))
	h.create(ld)
	h.g.Eventually(func() []string { return h.readyPods("orders") }).Should(gomega.HaveLen(4))

	w := h.watch()
	h.update("orders", func(ld *loopsv1alpha1.LoopDeployment) { ld.Spec.Suspend = true })
	h.g.Eventually(func() []corev1.Pod { return h.pods("orders") }).Should(gomega.BeEmpty())
	h.g.Eventually(func() []string {
		got := h.get("orders")
		return []string{
			conditionReason(got, loopsv1alpha1.ConditionSuspended),
			conditionReason(got, loopsv1alpha1.ConditionAvailable),
			conditionReason(got, loopsv1alpha1.ConditionProgressing),
		}
	}).Should(gomega.Equal([]string{
		"True/" + loopsv1alpha1.ReasonSuspendRequested,
		"False/" + loopsv1alpha1.ReasonScaledToZero,
		"False/" + loopsv1alpha1.ReasonComplete,
	}))
	if draining, _ := w.max(); draining > 2 {
		t.Errorf("%d pods drained at once, want at most 2", draining)
	}

	h.update("orders", func(ld *loopsv1alpha1.LoopDeployment) { ld.Spec.Suspend = false })
	h.g.Eventually(func() []string { return h.readyPods("orders") }).Should(gomega.HaveLen(4))
	h.g.Eventually(func() string {
		return conditionReason(h.get("orders"), loopsv1alpha1.ConditionSuspended)
	}).Should(gomega.Equal("False/" + loopsv1alpha1.ReasonNotSuspended))
}

func TestDeletionWaitsForEveryPodToDrain(t *testing.T) {
	h := newHarness(t)
	ld := h.newLD("orders", 2)
	ld.Spec.Drain.MaxConcurrent = ptr.To(intstr.FromInt32(2))
	h.create(ld)
	h.g.Eventually(func() []string { return h.readyPods("orders") }).Should(gomega.HaveLen(2))
	first := podNames(h.pods("orders"))[0]
	h.setSilent(first, true)

	ld = h.get("orders")
	h.g.Expect(h.c.Delete(h.ctx, ld)).To(gomega.Succeed())
	h.g.Eventually(func() []string { return podNames(h.pods("orders")) }).Should(gomega.Equal([]string{first}))
	h.g.Eventually(func() bool {
		p := h.pods("orders")
		return len(p) == 1 && p[0].Annotations[contract.AnnotationDrainRequested] != ""
	}).Should(gomega.BeTrue())
	h.g.Consistently(h.gone(ld), time.Second).Should(gomega.BeFalse(), "the LoopDeployment went while a pod was draining")
	h.g.Expect(conditionReason(h.get("orders"), loopsv1alpha1.ConditionProgressing)).To(gomega.Equal("True/" + loopsv1alpha1.ReasonDeleting))

	h.setSilent(first, false)
	h.g.Eventually(h.gone(ld)).Should(gomega.BeTrue())
	h.g.Expect(h.pods("orders")).To(gomega.BeEmpty())
}

func TestAPodDeletedFromOutsideIsReplaced(t *testing.T) {
	h := newHarness(t)
	h.create(h.newLD("orders", 3))
	h.g.Eventually(func() []string { return h.readyPods("orders") }).Should(gomega.HaveLen(3))
	victim := h.pods("orders")[1]
	h.g.Expect(h.c.Delete(h.ctx, &victim)).To(gomega.Succeed())

	h.g.Eventually(func() []string { return h.readyPods("orders") }).Should(gomega.SatisfyAll(
		gomega.HaveLen(3), gomega.Not(gomega.ContainElement(victim.Name))))
	h.g.Eventually(func() []string { return h.events("orders") }).Should(gomega.ContainElement(loopsv1alpha1.EventPodReplaced))
}

func TestAFailedPodIsReplaced(t *testing.T) {
	h := newHarness(t)
	h.create(h.newLD("orders", 2))
	h.g.Eventually(func() []string { return h.readyPods("orders") }).Should(gomega.HaveLen(2))
	failed := h.pods("orders")[0]
	failed.Status.Phase = corev1.PodFailed
	failed.Status.Reason = "Evicted"
	h.g.Expect(h.c.Status().Update(h.ctx, &failed)).To(gomega.Succeed())

	h.g.Eventually(func() []string { return h.readyPods("orders") }).Should(gomega.SatisfyAll(
		gomega.HaveLen(2), gomega.Not(gomega.ContainElement(failed.Name))))
	h.g.Expect(h.events("orders")).To(gomega.ContainElement(loopsv1alpha1.EventPodReplaced))
}

func TestAnOperatorRestartedMidDrainFinishesTheDrain(t *testing.T) {
	h := newHarness(t)
	h.create(h.newLD("orders", 2))
	h.g.Eventually(func() []string { return h.readyPods("orders") }).Should(gomega.HaveLen(2))
	h.setSilent("", true)
	h.update("orders", func(ld *loopsv1alpha1.LoopDeployment) { ld.Spec.Replicas = ptr.To[int32](1) })
	var draining string
	h.g.Eventually(func() bool {
		for _, p := range h.pods("orders") {
			if p.Annotations[contract.AnnotationDrainRequested] != "" {
				draining = p.Name
				return true
			}
		}
		return false
	}).Should(gomega.BeTrue())

	h.stopOperator()
	h.setSilent("", false) // the worker reports while no operator runs
	h.g.Eventually(func() bool {
		for _, p := range h.pods("orders") {
			if _, ok := drainedCondition(&p); ok && p.Name == draining {
				return true
			}
		}
		return false
	}).Should(gomega.BeTrue())
	h.g.Consistently(func() []string { return podNames(h.pods("orders")) }, 500*time.Millisecond).Should(gomega.ContainElement(draining))

	h.startOperator()
	h.g.Eventually(func() []string { return podNames(h.pods("orders")) }).Should(gomega.SatisfyAll(
		gomega.HaveLen(1), gomega.Not(gomega.ContainElement(draining))))
	h.g.Eventually(func() int32 { return h.get("orders").Status.DrainingReplicas }).Should(gomega.BeEquivalentTo(0))
}

func drainedCondition(p *corev1.Pod) (corev1.PodCondition, bool) {
	i := slices.IndexFunc(p.Status.Conditions, func(c corev1.PodCondition) bool {
		return c.Type == contract.PodConditionDrained && c.Status == corev1.ConditionTrue
	})
	if i < 0 {
		return corev1.PodCondition{}, false
	}
	return p.Status.Conditions[i], true
}

func TestTheSampleIsAcceptedAndRuns(t *testing.T) {
	h := newHarness(t)
	ld := &loopsv1alpha1.LoopDeployment{}
	decodeRepoFile(t, ld, "config", "samples", "loops_v1alpha1_loopdeployment.yaml")
	ld.Namespace = h.ns
	h.create(ld)
	h.g.Eventually(func() []string { return h.readyPods(ld.Name) }).Should(gomega.HaveLen(3))
	h.g.Eventually(func() int32 { return h.get(ld.Name).Status.AvailableReplicas }).Should(gomega.BeEquivalentTo(3))
}

func TestRollingUpdateWithoutSurgeDrainsOldPodsFirst(t *testing.T) {
	h := newHarness(t)
	ld := h.newLD("orders", 3)
	ld.Spec.UpdateStrategy.MaxSurge = ptr.To(intstr.FromInt32(0))
	h.create(ld)
	h.g.Eventually(func() []string { return h.readyPods("orders") }).Should(gomega.HaveLen(3))

	w := h.watch()
	h.update("orders", func(ld *loopsv1alpha1.LoopDeployment) { ld.Spec.Loop.Pool.MaxWorkers = 4 })
	h.g.Eventually(func() []int32 {
		var got []int32
		for _, p := range h.pods("orders") {
			var s loopsv1alpha1.WorkerSettings
			e, _ := envOf(&p.Spec.Containers[0], loopsv1alpha1.EnvWorkerSettings)
			h.g.Expect(json.Unmarshal([]byte(e.Value), &s)).To(gomega.Succeed())
			got = append(got, s.Loop.Pool.MaxWorkers)
		}
		return got
	}).Should(gomega.Equal([]int32{4, 4, 4}))
	h.waitRolledOut("orders", w, 3, 1) // no surge
}

// TestRollingUpdateWithMaxUnavailableDrainsBeforeReplacementsAreReady:
// with updateStrategy.maxUnavailable 1, as a Deployment's, an old pod
// drains while its replacement cannot become Ready, and no second one
// while that keeps fewer than replicas-1 pods Ready.
func TestRollingUpdateWithMaxUnavailableDrainsBeforeReplacementsAreReady(t *testing.T) {
	h := newHarness(t)
	ld := h.newLD("orders", 4)
	ld.Spec.UpdateStrategy.MaxSurge = ptr.To(intstr.FromInt32(1))
	ld.Spec.UpdateStrategy.MaxUnavailable = ptr.To(intstr.FromInt32(1))
	ld.Spec.Drain.MaxConcurrent = ptr.To(intstr.FromInt32(2))
	h.create(ld)
	h.g.Eventually(func() []string { return h.readyPods("orders") }).Should(gomega.HaveLen(4))

	w := h.watch()
	const v2 = "ghcr.io/tenire/loop-worker:v2"
	h.holdImage(v2) // the new pods start but are not ready yet
	h.update("orders", func(ld *loopsv1alpha1.LoopDeployment) {
		ld.Spec.Template.Spec.Containers[0].Image = v2
	})
	h.g.Eventually(func() []string { return w.askedNames() }).ShouldNot(gomega.BeEmpty(),
		"no old pod was asked to drain while its replacement could not be ready")
	h.g.Consistently(func() []string { return h.readyPods("orders") }, time.Second).Should(gomega.HaveLen(3),
		"not exactly replicas-maxUnavailable pods stayed ready and serving")
	h.holdImage("")
	h.g.Eventually(func() []string {
		var imgs []string
		for _, p := range h.pods("orders") {
			imgs = append(imgs, p.Spec.Containers[0].Image)
		}
		return imgs
	}).Should(gomega.SatisfyAll(gomega.HaveLen(4), gomega.HaveEach(v2)))
	h.waitRolledOut("orders", w, 5, 2) // replicas+maxSurge, drain.maxConcurrent
}

func TestAPodTemplateTheAPIServerRejectsDegrades(t *testing.T) {
	h := newHarness(t)
	ld := h.newLD("orders", 2)
	ld.Spec.Template.Spec.Containers[0].Name = "Not_A_DNS_Label" // the CRD takes it, a Pod does not
	h.create(ld)

	h.g.Eventually(func() string {
		return conditionReason(h.get("orders"), loopsv1alpha1.ConditionDegraded)
	}).Should(gomega.Equal("True/" + loopsv1alpha1.ReasonPodCreateFailed))
	h.g.Expect(h.pods("orders")).To(gomega.BeEmpty())
	h.g.Expect(conditionReason(h.get("orders"), loopsv1alpha1.ConditionAvailable)).To(gomega.Equal("False/" + loopsv1alpha1.ReasonMinimumReplicasUnavailable))

	h.update("orders", func(ld *loopsv1alpha1.LoopDeployment) { ld.Spec.Template.Spec.Containers[0].Name = "worker" })
	h.g.Eventually(func() []string { return h.readyPods("orders") }).Should(gomega.HaveLen(2))
	h.g.Eventually(func() string {
		return conditionReason(h.get("orders"), loopsv1alpha1.ConditionDegraded)
	}).Should(gomega.Equal("False/" + loopsv1alpha1.ReasonAsExpected))
}

func TestATerminatingPodTakesADrainSlot(t *testing.T) {
	h := newHarness(t)
	h.create(h.newLD("orders", 3))
	h.g.Eventually(func() []string { return h.readyPods("orders") }).Should(gomega.HaveLen(3))

	h.holdTerminating(true) // its worker drains on SIGTERM and takes its time
	victim := h.pods("orders")[0]
	h.g.Expect(h.c.Delete(h.ctx, &victim)).To(gomega.Succeed())
	h.g.Eventually(func() []string { return h.readyPods("orders") }).Should(gomega.HaveLen(3)) // a replacement
	h.g.Eventually(func() int32 { return h.get("orders").Status.DrainingReplicas }).Should(gomega.BeEquivalentTo(1))

	h.update("orders", func(ld *loopsv1alpha1.LoopDeployment) { ld.Spec.Replicas = ptr.To[int32](2) })
	h.g.Consistently(func() []string {
		var asked []string
		for _, p := range h.pods("orders") {
			if policyRequested(&p) {
				asked = append(asked, p.Name)
			}
		}
		return asked
	}, time.Second).Should(gomega.BeEmpty(), "a drain started while a terminating pod drained")

	h.holdTerminating(false)
	h.g.Eventually(func() []string { return h.readyPods("orders") }).Should(gomega.HaveLen(2))
	h.g.Eventually(func() int32 { return h.get("orders").Status.DrainingReplicas }).Should(gomega.BeZero())
}

func policyRequested(p *corev1.Pod) bool {
	_, ok := p.Annotations[contract.AnnotationDrainRequested]
	return ok
}

func TestAScaleUpNeverOvershootsWhileTheCacheCatchesUp(t *testing.T) {
	h := newHarness(t)
	w := h.watch()
	ld := h.newLD("orders", 30)
	ld.Spec.Drain.MaxConcurrent = ptr.To(intstr.FromString("10%"))
	h.create(ld)
	// Every pod event (binding, status) triggers a reconcile while the
	// creations go on; none of them may create a pod the cache has not
	// shown yet a second time.
	h.g.Eventually(func() []string { return h.readyPods("orders") }, time.Minute).Should(gomega.HaveLen(30))
	h.g.Eventually(func() int32 { return h.get("orders").Status.AvailableReplicas }).Should(gomega.BeEquivalentTo(30))
	if _, serving := w.max(); serving != 30 {
		t.Errorf("at most %d pods served at once, want exactly 30", serving)
	}
	h.update("orders", func(ld *loopsv1alpha1.LoopDeployment) { ld.Spec.Replicas = ptr.To[int32](40) })
	h.g.Eventually(func() []string { return h.readyPods("orders") }, time.Minute).Should(gomega.HaveLen(40))
	if _, serving := w.max(); serving != 40 {
		t.Errorf("at most %d pods served at once, want exactly 40", serving)
	}
}

func TestNoOvershootWhenTheCacheLags(t *testing.T) {
	h := newHarness(t)
	h.stopOperator()
	h.lag = 2 * time.Second // the operator's cache hides its own changes for 1-2s
	h.startOperator()
	w := h.watch()

	h.create(h.newLD("orders", 5))
	h.g.Eventually(func() []string { return h.readyPods("orders") }).Should(gomega.HaveLen(5))
	h.g.Consistently(func() []corev1.Pod { return h.pods("orders") }, 3*time.Second).Should(gomega.HaveLen(5))
	if _, serving := w.max(); serving != 5 {
		t.Errorf("at most %d pods served at once, want exactly 5", serving)
	}

	h.setSilent("", true) // drains stay open while the cache hides them
	h.update("orders", func(ld *loopsv1alpha1.LoopDeployment) { ld.Spec.Replicas = ptr.To[int32](2) })
	asked := func() int {
		n := 0
		for _, p := range h.pods("orders") {
			if policyRequested(&p) {
				n++
			}
		}
		return n
	}
	h.g.Eventually(asked).Should(gomega.Equal(1))
	h.g.Consistently(asked, 3*time.Second).Should(gomega.Equal(1))
	h.setSilent("", false)
	h.g.Eventually(func() []corev1.Pod { return h.pods("orders") }).Should(gomega.HaveLen(2))
	if draining, _ := w.max(); draining != 1 {
		t.Errorf("at most %d pods drained at once, want exactly 1", draining)
	}
}

func TestADrainRequestedByHandRecyclesThePod(t *testing.T) {
	h := newHarness(t)
	h.create(h.newLD("orders", 2))
	h.g.Eventually(func() []string { return h.readyPods("orders") }).Should(gomega.HaveLen(2))

	// As `kubectl loops drain POD` does: the annotations, set by hand.
	p := h.pods("orders")[0]
	before := p.DeepCopy()
	p.Annotations = map[string]string{
		contract.AnnotationDrainRequested: time.Now().UTC().Format(time.RFC3339),
		contract.AnnotationDrainDeadline:  time.Now().Add(time.Minute).UTC().Format(time.RFC3339),
	}
	h.g.Expect(h.c.Patch(h.ctx, &p, client.MergeFrom(before))).To(gomega.Succeed())

	h.g.Eventually(func() []string { return h.readyPods("orders") }).Should(gomega.SatisfyAll(
		gomega.HaveLen(2), gomega.Not(gomega.ContainElement(p.Name))))
	h.g.Eventually(func() []corev1.Pod { return h.pods("orders") }).Should(gomega.HaveLen(2))
	h.g.Eventually(func() []string { return h.events("orders") }).Should(gomega.ContainElement(loopsv1alpha1.EventDrainCompleted))
}

// TestWithDefaultsMatchesTheCRD keeps loopsv1alpha1.WithDefaults in step with the
// defaults the API server applies: a minimal LoopDeployment read back from
// the server must equal the same object defaulted in memory.
func TestWithDefaultsMatchesTheCRD(t *testing.T) {
	c, err := client.New(cfg, client.Options{Scheme: testenv.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "defaults-"}}
	if err := c.Create(t.Context(), ns); err != nil {
		t.Fatal(err)
	}
	minimal := &loopsv1alpha1.LoopDeployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: "minimal"},
		Spec: loopsv1alpha1.LoopDeploymentSpec{
			Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "worker", Image: "w"}}}},
			Queue:    loopsv1alpha1.QueueSpec{NATS: loopsv1alpha1.NATSQueueSpec{URL: "nats://nats:4222"}},
			Loop:     loopsv1alpha1.LoopSpec{Priorities: []loopsv1alpha1.PriorityClass{{Name: "default"}}},
		},
	}
	inMemory := loopsv1alpha1.WithDefaults(minimal.Spec)
	if err := c.Create(t.Context(), minimal); err != nil {
		t.Fatal(err)
	}
	fromServer := loopsv1alpha1.WithDefaults(minimal.Spec) // what Create returned, server defaults applied
	if !equality.Semantic.DeepEqual(inMemory, fromServer) {
		t.Errorf("loopsv1alpha1.WithDefaults differs from the CRD defaults:\nin memory   %+v\nfrom server %+v", inMemory, fromServer)
	}
	a, _ := policy.Revision(minimal.Spec)
	b, _ := policy.Revision(inMemory)
	if a != b {
		t.Errorf("the revision of the server-defaulted spec %s differs from the in-memory one %s", a, b)
	}
}

func TestEachLoopHasItsOwnWorkersAccount(t *testing.T) {
	h := newHarness(t)
	a, b := h.newLD("orders", 1), h.newLD("invoices", 1)
	h.create(a)
	h.create(b)
	h.g.Eventually(func() []string { return append(h.readyPods("orders"), h.readyPods("invoices")...) }).Should(gomega.HaveLen(2))
	for _, name := range []string{"orders", "invoices"} {
		for _, obj := range []client.Object{&corev1.ServiceAccount{}, &rbacv1.Role{}, &rbacv1.RoleBinding{}} {
			h.g.Expect(h.c.Get(h.ctx, client.ObjectKey{Namespace: h.ns, Name: WorkerServiceAccountName(name)}, obj)).To(gomega.Succeed())
			h.g.Expect(obj.GetOwnerReferences()).To(gomega.ConsistOf(gomega.HaveField("Name", name)), "%T", obj)
		}
		h.g.Expect(h.pods(name)[0].Spec.ServiceAccountName).To(gomega.Equal(WorkerServiceAccountName(name)))
		pdb := &policyv1.PodDisruptionBudget{}
		h.g.Expect(h.c.Get(h.ctx, client.ObjectKey{Namespace: h.ns, Name: name}, pdb)).To(gomega.Succeed())
		h.g.Expect(pdb.Spec.Selector.MatchLabels).To(gomega.Equal(map[string]string{loopsv1alpha1.LabelName: name}))
	}
}

// TestAnAccountOfTheSameNameIsNeverAdopted: a ServiceAccount named
// <name>-loop-worker that someone else made is not given the workers'
// rights; its pods are still created, with no RBAC of the operator's.
func TestAnAccountOfTheSameNameIsNeverAdopted(t *testing.T) {
	h := newHarness(t)
	foreign := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: h.ns, Name: WorkerServiceAccountName("orders")}}
	h.g.Expect(h.c.Create(h.ctx, foreign)).To(gomega.Succeed())
	h.create(h.newLD("orders", 1))
	h.g.Eventually(func() []string { return h.readyPods("orders") }).Should(gomega.HaveLen(1))
	h.g.Expect(h.c.Get(h.ctx, client.ObjectKeyFromObject(foreign), foreign)).To(gomega.Succeed())
	h.g.Expect(foreign.OwnerReferences).To(gomega.BeEmpty())
	err := h.c.Get(h.ctx, client.ObjectKey{Namespace: h.ns, Name: WorkerServiceAccountName("orders")}, &rbacv1.RoleBinding{})
	h.g.Expect(apierrors.IsNotFound(err)).To(gomega.BeTrue(), "the RoleBinding: %v", err)
}

// TestADrainedReportNobodyAskedForIsIgnored: the drain contract fails
// closed. A pod that reports Drained without a drain request and without
// being deleted is not deleted; the operator warns once and the pod keeps
// serving.
func TestADrainedReportNobodyAskedForIsIgnored(t *testing.T) {
	h := newHarness(t)
	h.create(h.newLD("orders", 2))
	h.g.Eventually(func() []string { return h.readyPods("orders") }).Should(gomega.HaveLen(2))

	p := h.pods("orders")[0]
	p.Status.Conditions = append(p.Status.Conditions, contract.DrainedCondition(false, "0 finished, 0 handed back", time.Now()))
	h.g.Expect(h.c.Status().Update(h.ctx, &p)).To(gomega.Succeed())

	// The warning is recorded by the reconcile that saw the report and
	// decided not to delete the pod.
	h.g.Eventually(func() []string { return h.events("orders") }).Should(gomega.ContainElement(loopsv1alpha1.EventUnrequestedDrainReport))
	var still corev1.Pod
	h.g.Expect(h.c.Get(h.ctx, client.ObjectKeyFromObject(&p), &still)).To(gomega.Succeed())
	h.g.Expect(still.UID).To(gomega.Equal(p.UID))
	h.g.Expect(still.DeletionTimestamp).To(gomega.BeNil())
	h.g.Expect(still.Annotations).NotTo(gomega.HaveKey(contract.AnnotationDrainRequested))
	h.g.Expect(h.readyPods("orders")).To(gomega.HaveLen(2))
	h.g.Eventually(func() loopsv1alpha1.LoopDeploymentStatus { return h.get("orders").Status }).Should(gomega.SatisfyAll(
		gomega.HaveField("Replicas", int32(2)), gomega.HaveField("ReadyReplicas", int32(2)), gomega.HaveField("DrainingReplicas", int32(0))))
	n := 0
	for _, e := range h.events("orders") {
		if e == loopsv1alpha1.EventUnrequestedDrainReport {
			n++
		}
	}
	h.g.Expect(n).To(gomega.Equal(1), "one warning per pod")
}

// TestAShardManagesOnlyTheLoopsItsSelectorPicks: a manager started with a
// label selector (--loop-selector) runs the loops it matches and leaves
// the others alone, not even adding its finalizer; a loop relabelled into
// the shard is taken up.
func TestAShardManagesOnlyTheLoopsItsSelectorPicks(t *testing.T) {
	sel, err := labels.Parse("shard=a")
	if err != nil {
		t.Fatal(err)
	}
	h := newHarnessOn(t, cfg, func(h *harness) { h.loopSelector = sel })
	other := h.newLD("other", 2)
	other.Labels = map[string]string{"shard": "b"}
	h.create(other)
	mine := h.newLD("mine", 2)
	mine.Labels = map[string]string{"shard": "a"}
	h.create(mine)
	h.g.Eventually(func() []string { return h.readyPods("mine") }).Should(gomega.HaveLen(2))
	// Both were there before the first reconcile of "mine"; a manager that
	// saw "other" would have added its finalizer by now.
	h.g.Expect(h.get("other").Finalizers).To(gomega.BeEmpty())
	h.g.Expect(h.pods("other")).To(gomega.BeEmpty())

	h.update("other", func(ld *loopsv1alpha1.LoopDeployment) { ld.Labels["shard"] = "a" })
	h.g.Eventually(func() []string { return h.readyPods("other") }).Should(gomega.HaveLen(2))
}

// TestAnOldDrainedReportDoesNotAnswerALaterRequest: a Drained report that
// nobody asked for stays ignored when the operator later chooses that pod:
// the request removes it, and the pod goes only once a report written
// after the request arrives.
func TestAnOldDrainedReportDoesNotAnswerALaterRequest(t *testing.T) {
	h := newHarness(t)
	h.create(h.newLD("orders", 1))
	h.g.Eventually(func() []string { return h.readyPods("orders") }).Should(gomega.HaveLen(1))
	p := h.pods("orders")[0]
	h.setSilent(p.Name, true) // its worker does not answer the request yet
	p.Status.Conditions = append(p.Status.Conditions, contract.DrainedCondition(false, "forged", time.Now()))
	h.g.Expect(h.c.Status().Update(h.ctx, &p)).To(gomega.Succeed())
	h.g.Eventually(func() []string { return h.events("orders") }).Should(gomega.ContainElement(loopsv1alpha1.EventUnrequestedDrainReport))

	h.update("orders", func(ld *loopsv1alpha1.LoopDeployment) { ld.Spec.Replicas = ptr.To[int32](0) })
	var asked corev1.Pod
	h.g.Eventually(func() map[string]string {
		h.g.Expect(h.c.Get(h.ctx, client.ObjectKeyFromObject(&p), &asked)).To(gomega.Succeed())
		return asked.Annotations
	}).Should(gomega.HaveKey(contract.AnnotationDrainRequested))
	_, drained := contract.Drained(&asked)
	h.g.Expect(drained).To(gomega.BeFalse(), "the report older than the request was removed before the request was written")
	// The operator has seen the request (the pod counts as draining) and
	// still keeps the pod: nothing answered it.
	h.g.Eventually(func() int32 { return h.get("orders").Status.DrainingReplicas }).Should(gomega.BeEquivalentTo(1))
	h.g.Expect(h.c.Get(h.ctx, client.ObjectKeyFromObject(&p), &asked)).To(gomega.Succeed())
	h.g.Expect(asked.UID).To(gomega.Equal(p.UID))
	h.g.Expect(asked.DeletionTimestamp).To(gomega.BeNil())

	h.setSilent(p.Name, false) // the worker reports its drain: now the pod goes
	h.g.Eventually(h.gone(&p)).Should(gomega.BeTrue())
}

// TestADrainRequestWaitsWhenThePodChangesAfterTheOldReportWasRemoved: the
// request is written with the resourceVersion the removal of an old report
// left, so a report written in between (here, as a worker would, between
// the two patches) makes the request fail with a conflict instead of
// landing beside a report that does not answer it.
func TestADrainRequestWaitsWhenThePodChangesAfterTheOldReportWasRemoved(t *testing.T) {
	h := newHarness(t)
	h.create(h.newLD("orders", 1))
	h.g.Eventually(func() []string { return h.readyPods("orders") }).Should(gomega.HaveLen(1))
	h.stopOperator()
	p := h.pods("orders")[0]
	h.setSilent(p.Name, true) // the stand-in worker does not answer: only the reports written here are on the pod
	p.Status.Conditions = append(p.Status.Conditions, contract.DrainedCondition(false, "old", time.Now()))
	h.g.Expect(h.c.Status().Update(h.ctx, &p)).To(gomega.Succeed())

	meddler := interceptor.NewClient(h.c, interceptor.Funcs{
		SubResourcePatch: func(ctx context.Context, c client.Client, sub string, obj client.Object, patch client.Patch, opts ...client.SubResourcePatchOption) error {
			if err := c.SubResource(sub).Patch(ctx, obj, patch, opts...); err != nil {
				return err
			}
			var again corev1.Pod // a report written right after the removal
			if err := c.Get(ctx, client.ObjectKeyFromObject(obj), &again); err != nil {
				return err
			}
			again.Status.Conditions = append(again.Status.Conditions, contract.DrainedCondition(false, "written between the two patches", time.Now()))
			return c.Status().Update(ctx, &again)
		},
	})
	err := contract.RequestDrain(h.ctx, meddler, &p, time.Now(), time.Minute)
	h.g.Expect(apierrors.IsConflict(err)).To(gomega.BeTrue(), "want a conflict, got %v", err)
	var now corev1.Pod
	h.g.Expect(h.c.Get(h.ctx, client.ObjectKeyFromObject(&p), &now)).To(gomega.Succeed())
	h.g.Expect(now.Annotations).NotTo(gomega.HaveKey(contract.AnnotationDrainRequested))
	h.g.Expect(p.Annotations).NotTo(gomega.HaveKey(contract.AnnotationDrainRequested), "the caller's pod is left as it was")

	// Asked again, it removes the newer report too and the request lands.
	h.g.Expect(contract.RequestDrain(h.ctx, h.c, &now, time.Now(), time.Minute)).To(gomega.Succeed())
	h.g.Expect(h.c.Get(h.ctx, client.ObjectKeyFromObject(&p), &now)).To(gomega.Succeed())
	h.g.Expect(now.Annotations).To(gomega.HaveKey(contract.AnnotationDrainRequested))
	_, drained := contract.Drained(&now)
	h.g.Expect(drained).To(gomega.BeFalse())
}

// A pod that carries a loop's name label but that the loop does not
// control (a user's, or one left by an earlier loop of that name) is no
// replica of it: the reconciler reads its pods through the index of
// their controller, counts only its own and never deletes the stranger.
func TestAPodWithTheLoopsLabelThatItDoesNotControlIsLeftAlone(t *testing.T) {
	h := newHarness(t)
	stray := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: h.ns, Name: "orders-stray", Labels: map[string]string{loopsv1alpha1.LabelName: "orders"}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "worker", Image: "example.com/stray:1"}}},
	}
	h.create(stray)
	h.create(h.newLD("orders", 2))
	h.g.Eventually(func() int32 { return h.get("orders").Status.AvailableReplicas }).Should(gomega.BeEquivalentTo(2))
	ld := h.get("orders")
	h.g.Expect(ld.Status.Replicas).To(gomega.BeEquivalentTo(2))
	owned := 0
	for _, p := range h.pods("orders") {
		if metav1.IsControlledBy(&p, ld) {
			owned++
		}
	}
	h.g.Expect(owned).To(gomega.Equal(2))

	h.update("orders", func(ld *loopsv1alpha1.LoopDeployment) { ld.Spec.Replicas = ptr.To(int32(0)) })
	h.g.Eventually(func() []string { return podNames(h.pods("orders")) }).Should(gomega.Equal([]string{"orders-stray"}))
	h.g.Eventually(func() int32 { return h.get("orders").Status.Replicas }).Should(gomega.BeEquivalentTo(0))
	h.g.Expect(h.c.Get(h.ctx, client.ObjectKeyFromObject(stray), stray)).To(gomega.Succeed())
	h.g.Expect(stray.DeletionTimestamp).To(gomega.BeNil())
}
