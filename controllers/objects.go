package controllers

import (
	"context"
	"fmt"
	"slices"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	loopsv1alpha1 "github.com/tenire/loop-operator/api/v1alpha1"
)

// workerRules are the only permissions a worker needs: read its own Pod
// (it watches for the drain annotations) and patch the status of its Pod
// (it reports Drained).
var workerRules = []rbacv1.PolicyRule{
	{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get", "list", "watch"}},
	{APIGroups: []string{""}, Resources: []string{"pods/status"}, Verbs: []string{"patch"}},
}

func managedLabels() map[string]string {
	return map[string]string{LabelManagedBy: ManagedByValue, "app.kubernetes.io/component": "loop-worker"}
}

// reconcileWorkerRBAC makes sure the namespace of the LoopDeployment has
// the workers' ServiceAccount, Role and RoleBinding. They are shared by
// every LoopDeployment of the namespace, each of which is one of their
// (non-controller) owners, so the garbage collector removes them with the
// last LoopDeployment.
func (r *LoopDeploymentReconciler) reconcileWorkerRBAC(ctx context.Context, s *scope) (ctrl.Result, error) {
	ns := s.ld.Namespace
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: WorkerServiceAccountName}}
	if err := r.ensureShared(ctx, s, sa, func() {}); err != nil {
		return ctrl.Result{}, err
	}
	role := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: WorkerServiceAccountName}}
	if err := r.ensureShared(ctx, s, role, func() { role.Rules = workerRules }); err != nil {
		return ctrl.Result{}, err
	}
	rb := &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: WorkerServiceAccountName}}
	err := r.ensureShared(ctx, s, rb, func() {
		rb.RoleRef = rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: WorkerServiceAccountName}
		rb.Subjects = []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: ns, Name: WorkerServiceAccountName}}
	})
	return ctrl.Result{}, err
}

// ensureShared creates obj or brings it to what mutate sets, with the
// managed-by labels and an owner reference to s.ld among its owners. An
// object of that name the cache does not hold (created by someone else,
// without our labels) is read from the API server and adopted.
func (r *LoopDeploymentReconciler) ensureShared(ctx context.Context, s *scope, obj client.Object, mutate func()) error {
	kind := fmt.Sprintf("%T", obj)
	key := client.ObjectKeyFromObject(obj)
	err := r.Client.Get(ctx, key, obj)
	if apierrors.IsNotFound(err) {
		mutate()
		setShared(obj, s.ld)
		err = r.Client.Create(ctx, obj)
		if err == nil || !apierrors.IsAlreadyExists(err) {
			if err != nil {
				return fmt.Errorf("creating %s %s: %w", kind, key, err)
			}
			return nil
		}
		err = r.APIReader.Get(ctx, key, obj)
	}
	if err != nil {
		return fmt.Errorf("getting %s %s: %w", kind, key, err)
	}
	before := obj.DeepCopyObject().(client.Object)
	mutate()
	setShared(obj, s.ld)
	if equality.Semantic.DeepEqual(before, obj) {
		return nil
	}
	if err := r.Client.Patch(ctx, obj, client.MergeFromWithOptions(before, client.MergeFromWithOptimisticLock{})); err != nil {
		return fmt.Errorf("updating %s %s: %w", kind, key, err)
	}
	return nil
}

// setShared puts the managed-by labels and a non-controller owner
// reference to ld on obj.
func setShared(obj client.Object, ld *loopsv1alpha1.LoopDeployment) {
	l := obj.GetLabels()
	if l == nil {
		l = map[string]string{}
	}
	for k, v := range managedLabels() {
		l[k] = v
	}
	obj.SetLabels(l)
	refs := obj.GetOwnerReferences()
	if !slices.ContainsFunc(refs, func(o metav1.OwnerReference) bool { return o.UID == ld.UID }) {
		refs = append(refs, metav1.OwnerReference{
			APIVersion: loopsv1alpha1.GroupVersion.String(), Kind: "LoopDeployment", Name: ld.Name, UID: ld.UID,
		})
		obj.SetOwnerReferences(refs)
	}
}

// reconcilePDB keeps the PodDisruptionBudget of the LoopDeployment: its
// pods, maxUnavailable = drain.maxConcurrent, so that evictions (node
// drains) keep to the same budget as the operator's own drains. Pods that
// are not ready may always be evicted: they serve nothing.
func (r *LoopDeploymentReconciler) reconcilePDB(ctx context.Context, s *scope) (ctrl.Result, error) {
	pdb := &policyv1.PodDisruptionBudget{ObjectMeta: metav1.ObjectMeta{Namespace: s.ld.Namespace, Name: s.ld.Name}}
	_, err := controllerutil.CreateOrPatch(ctx, r.Client, pdb, func() error {
		l := pdb.GetLabels()
		if l == nil {
			l = map[string]string{}
		}
		for k, v := range managedLabels() {
			l[k] = v
		}
		pdb.SetLabels(l)
		pdb.Spec.Selector = &metav1.LabelSelector{MatchLabels: selectorLabels(s.ld)}
		pdb.Spec.MaxUnavailable = ptr.To(*s.spec.Drain.MaxConcurrent)
		pdb.Spec.MinAvailable = nil
		pdb.Spec.UnhealthyPodEvictionPolicy = ptr.To(policyv1.AlwaysAllow)
		return controllerutil.SetControllerReference(s.ld, pdb, r.Client.Scheme())
	})
	if err != nil {
		return ctrl.Result{}, fmt.Errorf("reconciling the PodDisruptionBudget: %w", err)
	}
	return ctrl.Result{}, nil
}
