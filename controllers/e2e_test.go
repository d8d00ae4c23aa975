//go:build e2e

package controllers

import (
	"strconv"
	"testing"
	"time"

	"github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	loopsv1alpha1 "github.com/tenire/loop-operator/api/v1alpha1"
	"github.com/tenire/loop-operator/internal/localcluster"
	"github.com/tenire/loop-operator/internal/testenv"
)

// TestWithTheControllerManager runs the operator against a control plane
// with kube-controller-manager (disruption controller, garbage collector),
// where the PodDisruptionBudget and the owner references matter.
func TestWithTheControllerManager(t *testing.T) {
	lc := localcluster.StartForTest(t, localcluster.Options{WithoutScheduler: true})
	crds, err := testenv.CRDPath()
	if err != nil {
		t.Fatal(err)
	}
	if err := lc.InstallCRDs(crds); err != nil {
		t.Fatal(err)
	}
	h := newHarnessOn(t, lc.Config)
	// The fake node must exist, or the pod garbage collector deletes the
	// pods bound to it as orphans.
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: testNode}}
	h.g.Expect(h.c.Create(h.ctx, node)).To(gomega.Succeed())
	h.g.SetDefaultEventuallyTimeout(90 * time.Second)
	ld := h.newLD("orders", 4)
	h.create(ld)
	h.g.Eventually(func() []string { return h.readyPods("orders") }).Should(gomega.HaveLen(4))

	// The PodDisruptionBudget: the disruption controller resolves it against
	// the LoopDeployment's /scale.
	pdb := &policyv1.PodDisruptionBudget{ObjectMeta: metav1.ObjectMeta{Namespace: h.ns, Name: "orders"}}
	// The controller-manager finds the new CRD's kind only at its next
	// discovery refresh (every 30s) and retries a PDB only on events, so the
	// test pokes the PDB until the disruption controller has synced it.
	poke := 0
	h.g.Eventually(func() []int32 {
		if err := h.c.Get(h.ctx, client.ObjectKeyFromObject(pdb), pdb); err == nil && pdb.Status.ExpectedPods == 0 {
			poke++
			before := pdb.DeepCopy()
			metav1.SetMetaDataAnnotation(&pdb.ObjectMeta, "test.tenire.io/poke", strconv.Itoa(poke))
			_ = h.c.Patch(h.ctx, pdb, client.MergeFrom(before))
		}
		return []int32{pdb.Status.ExpectedPods, pdb.Status.DesiredHealthy, pdb.Status.DisruptionsAllowed}
	}, 2*time.Minute, time.Second).Should(gomega.Equal([]int32{4, 3, 1}))

	// An eviction is a drain too (the worker drains on SIGTERM): while the
	// evicted pod terminates it takes the one drain slot, so a scale-down
	// waits for it.
	h.holdTerminating(true)
	evicted := h.pods("orders")[0]
	h.g.Eventually(func() error {
		err := h.c.SubResource("eviction").Create(h.ctx, &evicted, &policyv1.Eviction{ObjectMeta: metav1.ObjectMeta{Name: evicted.Name, Namespace: h.ns}})
		if apierrors.IsNotFound(err) || h.c.Get(h.ctx, client.ObjectKeyFromObject(&evicted), &evicted) == nil && evicted.DeletionTimestamp != nil {
			return nil // evicted, perhaps by an earlier attempt
		}
		return err
	}).Should(gomega.Succeed())
	h.g.Eventually(func() []string { return h.readyPods("orders") }).Should(gomega.HaveLen(4)) // a replacement
	h.update("orders", func(ld *loopsv1alpha1.LoopDeployment) { ld.Spec.Replicas = ptr.To[int32](3) })
	h.g.Eventually(func() int32 { return h.get("orders").Status.Replicas }).Should(gomega.BeEquivalentTo(4))
	h.g.Consistently(func() int {
		n := 0
		for _, p := range h.pods("orders") {
			if policyRequested(&p) {
				n++
			}
		}
		return n
	}, 2*time.Second).Should(gomega.BeZero(), "a drain started while an evicted pod was terminating")
	h.holdTerminating(false)
	h.g.Eventually(func() []string { return h.readyPods("orders") }).Should(gomega.HaveLen(3))
	h.g.Eventually(func() int32 { return h.get("orders").Status.DrainingReplicas }).Should(gomega.BeZero())

	// The garbage collector removes what the last LoopDeployment owned.
	h.g.Expect(h.c.Delete(h.ctx, h.get("orders"))).To(gomega.Succeed())
	h.g.Eventually(h.gone(&loopsv1alpha1.LoopDeployment{ObjectMeta: metav1.ObjectMeta{Namespace: h.ns, Name: "orders"}})).Should(gomega.BeTrue())
	for _, obj := range []client.Object{
		&policyv1.PodDisruptionBudget{ObjectMeta: metav1.ObjectMeta{Namespace: h.ns, Name: "orders"}},
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: h.ns, Name: WorkerServiceAccountName("orders")}},
		&rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: h.ns, Name: WorkerServiceAccountName("orders")}},
		&rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: h.ns, Name: WorkerServiceAccountName("orders")}},
	} {
		h.g.Eventually(h.gone(obj)).Should(gomega.BeTrue(), "%T %s", obj, obj.GetName())
	}
}
