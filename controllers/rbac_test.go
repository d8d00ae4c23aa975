package controllers

import (
	"context"
	"testing"

	"github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	loopsv1alpha1 "github.com/tenire/loop-operator/api/v1alpha1"
	"github.com/tenire/loop-operator/internal/testenv"
)

// TestAnOperatorBoundOnlyInItsNamespaceManagesItsLoops runs the operator as
// a service account whose only rights are the ClusterRole users install
// (config/rbac/role.yaml), bound by a RoleBinding in the namespace it
// watches, as the Helm chart binds it with watchNamespaces set. Those
// rights must be enough for everything it does there: the worker pods, the
// per-loop ServiceAccount, Role (which RBAC lets it grant only because it
// holds the same rights there), RoleBinding and PodDisruptionBudget, a
// drain, the finalizer; and it reads no Secret elsewhere.
func TestAnOperatorBoundOnlyInItsNamespaceManagesItsLoops(t *testing.T) {
	const saNamespace, saName = "tenire-system", "loop-operator-controller-manager"
	h := newHarnessOn(t, cfg, func(h *harness) {
		role := &rbacv1.ClusterRole{}
		decodeRepoFile(t, role, "config", "rbac", "role.yaml")
		role.Name = "manager-role-" + h.ns
		binding := &rbacv1.RoleBinding{
			ObjectMeta: role.ObjectMeta,
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role.Name},
			Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: saNamespace, Name: saName}},
		}
		binding.Namespace = h.ns
		for _, o := range []client.Object{role, binding} {
			if err := h.c.Create(h.ctx, o); err != nil {
				t.Fatal(err)
			}
		}
		t.Cleanup(func() {
			if err := h.c.Delete(context.WithoutCancel(h.ctx), role); client.IgnoreNotFound(err) != nil {
				t.Error(err)
			}
		})
		h.operatorCfg = rest.CopyConfig(cfg)
		h.operatorCfg.Impersonate = rest.ImpersonationConfig{UserName: "system:serviceaccount:" + saNamespace + ":" + saName, Groups: []string{"system:serviceaccounts", "system:authenticated"}}
	})

	// The identity is the restricted one: no Secret outside its namespace.
	as, err := client.New(h.operatorCfg, client.Options{Scheme: testenv.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	if err := as.Get(h.ctx, client.ObjectKey{Namespace: "default", Name: "any"}, &corev1.Secret{}); !apierrors.IsForbidden(err) {
		t.Fatalf("the operator's identity reading a Secret in another namespace: %v, want Forbidden", err)
	}

	ld := h.newLD("orders", 2)
	h.create(ld)
	h.g.Eventually(func() []string { return h.readyPods("orders") }).Should(gomega.HaveLen(2))
	h.g.Eventually(func() int32 { return h.get("orders").Status.AvailableReplicas }).Should(gomega.BeEquivalentTo(2))
	got := h.get("orders")
	h.g.Expect(got.Finalizers).To(gomega.ContainElement(loopsv1alpha1.FinalizerDrain))
	for _, o := range []client.Object{&corev1.ServiceAccount{}, &rbacv1.Role{}, &rbacv1.RoleBinding{}} {
		h.g.Expect(h.c.Get(h.ctx, client.ObjectKey{Namespace: h.ns, Name: WorkerServiceAccountName("orders")}, o)).To(gomega.Succeed())
	}
	h.g.Expect(h.c.Get(h.ctx, client.ObjectKey{Namespace: h.ns, Name: "orders"}, &policyv1.PodDisruptionBudget{})).To(gomega.Succeed())
	h.g.Expect(h.events("orders")).To(gomega.ContainElement(loopsv1alpha1.EventScaledUp))

	// A drain, and the deletion that waits for it.
	h.update("orders", func(ld *loopsv1alpha1.LoopDeployment) { ld.Spec.Replicas = ptr.To[int32](1) })
	h.g.Eventually(func() []corev1.Pod { return h.pods("orders") }).Should(gomega.HaveLen(1))
	h.g.Expect(h.c.Delete(h.ctx, got)).To(gomega.Succeed())
	h.g.Eventually(h.gone(got)).Should(gomega.BeTrue())
	h.g.Expect(h.pods("orders")).To(gomega.BeEmpty())
}
