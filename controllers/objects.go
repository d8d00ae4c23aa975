package controllers

import (
	"context"
	"errors"
	"fmt"

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
)

// workerRules are the only permissions a worker needs: read and watch its
// own Pod (it watches for the drain annotations) and patch the status of
// its Pod (it reports Drained). RBAC cannot name a pod whose name is
// generated, so the rules cover the namespace's pods; the admission policy
// of config/admission narrows pods/status to the pod a token is bound to.
var workerRules = []rbacv1.PolicyRule{
	{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get", "watch"}},
	{APIGroups: []string{""}, Resources: []string{"pods/status"}, Verbs: []string{"patch"}},
}

func managedLabels() map[string]string {
	return map[string]string{LabelManagedBy: ManagedByValue, "app.kubernetes.io/component": "loop-worker"}
}

// ErrNotOurs is wrapped by the error of a reconcile that finds the
// workers' ServiceAccount, Role or RoleBinding name taken by an object the
// LoopDeployment does not control: the operator never adopts one, since
// that would hand the workers' rights to whoever else uses it.
var ErrNotOurs = errors.New("exists and is not controlled by the LoopDeployment")

// reconcileWorkerRBAC makes sure the LoopDeployment's workers have their
// own ServiceAccount <name>-loop-worker, and a Role and RoleBinding of that
// name that grant it workerRules, all controlled by the LoopDeployment (the
// garbage collector removes them with it). A template that names its own
// service account gets none of them.
func (r *LoopDeploymentReconciler) reconcileWorkerRBAC(ctx context.Context, s *scope) (ctrl.Result, error) {
	if s.spec.Template.Spec.ServiceAccountName != "" {
		return ctrl.Result{}, nil
	}
	ns, name := s.ld.Namespace, WorkerServiceAccountName(s.ld.Name)
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	if err := r.ensureOwned(ctx, s, sa, func() {}); err != nil {
		return ctrl.Result{}, err
	}
	role := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	if err := r.ensureOwned(ctx, s, role, func() { role.Rules = workerRules }); err != nil {
		return ctrl.Result{}, err
	}
	rb := &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	err := r.ensureOwned(ctx, s, rb, func() {
		rb.RoleRef = rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: name}
		rb.Subjects = []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: ns, Name: name}}
	})
	return ctrl.Result{}, err
}

// ensureOwned creates obj, controlled by s.ld and labelled as managed, or
// brings the existing one to what mutate sets. An object of that name that
// s.ld does not control (the cache does not hold it, so it is read from
// the API server) is an error wrapping ErrNotOurs.
func (r *LoopDeploymentReconciler) ensureOwned(ctx context.Context, s *scope, obj client.Object, mutate func()) error {
	kind := fmt.Sprintf("%T", obj)
	key := client.ObjectKeyFromObject(obj)
	err := r.Client.Get(ctx, key, obj)
	if apierrors.IsNotFound(err) {
		mutate()
		obj.SetLabels(managedLabels())
		if err := controllerutil.SetControllerReference(s.ld, obj, r.Client.Scheme()); err != nil {
			return fmt.Errorf("owning %s %s: %w", kind, key, err)
		}
		err = r.Client.Create(ctx, obj)
		if err == nil {
			return nil
		}
		if !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("creating %s %s: %w", kind, key, err)
		}
		err = r.APIReader.Get(ctx, key, obj)
	}
	if err != nil {
		return fmt.Errorf("getting %s %s: %w", kind, key, err)
	}
	if !metav1.IsControlledBy(obj, s.ld) {
		return fmt.Errorf("%s %s %w %s; rename it or set spec.template.spec.serviceAccountName", kind, key, ErrNotOurs, s.ld.Name)
	}
	before := obj.DeepCopyObject().(client.Object)
	mutate()
	if equality.Semantic.DeepEqual(before, obj) {
		return nil
	}
	if err := r.Client.Patch(ctx, obj, client.MergeFromWithOptions(before, client.MergeFromWithOptimisticLock{})); err != nil {
		return fmt.Errorf("updating %s %s: %w", kind, key, err)
	}
	return nil
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
