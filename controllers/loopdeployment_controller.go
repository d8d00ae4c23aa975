package controllers

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/apimachinery/pkg/types"
	kerrors "k8s.io/apimachinery/pkg/util/errors"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	loopsv1alpha1 "github.com/tenire/loop-operator/api/v1alpha1"
	"github.com/tenire/loop-operator/controllers/stream"
)

// ControllerName names the controller, its event reporter and its field
// manager.
const ControllerName = "loopdeployment"

// DefaultDrainGrace is how long after a drain's deadline the operator still
// waits for the worker's Drained report before it deletes the pod anyway.
const DefaultDrainGrace = 15 * time.Second

// Labels the operator puts on the objects it creates besides pods, and by
// which its cache selects them.
const (
	// LabelManagedBy is the standard label that marks the operator's
	// objects.
	LabelManagedBy = "app.kubernetes.io/managed-by"
	// ManagedByValue is the value of LabelManagedBy.
	ManagedByValue = "tenire-loop-operator"
)

// LoopDeploymentReconciler runs the worker pods of LoopDeployments and
// drains them before they go.
//
// Reconcile contract: a returned error means the reconcile is retried with
// backoff; a reconcile.TerminalError (the API server rejected the pod
// template as invalid) is not retried until the LoopDeployment changes; a
// RequeueAfter is when the next deadline falls (a drain's deadline plus
// grace, an expectation's timeout). Every other change arrives as a watch
// event on the LoopDeployment or the objects it owns.
type LoopDeploymentReconciler struct {
	// Client reads from the manager's cache and writes to the API server.
	Client client.Client
	// APIReader reads from the API server, for objects the cache does not
	// hold (a worker ServiceAccount created by someone else).
	APIReader client.Reader
	// Recorder records events on LoopDeployments.
	Recorder events.EventRecorder
	// Clock tells the time; tests may inject a fake one. Defaults to the
	// real clock.
	Clock clock.PassiveClock
	// DrainGrace is how long after a drain's deadline the reconciler still
	// waits for the Drained report. Defaults to DefaultDrainGrace.
	DrainGrace time.Duration
	// Queues provisions and reads the LoopDeployments' queues; the
	// reconciler records what it observed and autoscales on it. Nil: the
	// operator leaves the queues alone (QueueReady is not set).
	Queues *stream.Poller

	expectations *expectations
	timeouts     timeouts
	autoscale    autoscalers
	unrequested  unrequestedReports
}

// CacheOptions are the manager's cache options: CacheByObject, and
// managedFields dropped from every object cached (the operator never
// reads them; on a pod they are often a third of its size, and the cache
// holds every worker pod of the cluster). Callers add the namespaces.
func CacheOptions() cache.Options {
	return cache.Options{ByObject: CacheByObject(), DefaultTransform: cache.TransformStripManagedFields()}
}

// ShardCacheOptions is CacheOptions for a manager that runs one shard of
// a cluster: the LoopDeployments of namespaces (every namespace when
// empty) whose labels match loops (every LoopDeployment when nil or
// empty). Worker pods and the per-loop objects are still cached by their
// own labels, including those of other shards' loops; a reconcile of a
// loop the cache does not hold finds it gone and does nothing.
func ShardCacheOptions(namespaces []string, loops labels.Selector) cache.Options {
	c := CacheOptions()
	if len(namespaces) > 0 {
		c.DefaultNamespaces = make(map[string]cache.Config, len(namespaces))
		for _, ns := range namespaces {
			c.DefaultNamespaces[ns] = cache.Config{}
		}
	}
	if loops != nil && !loops.Empty() {
		c.ByObject[&loopsv1alpha1.LoopDeployment{}] = cache.ByObject{Label: loops}
	}
	return c
}

// CacheByObject restricts the manager's cache to the objects the operator
// manages: worker pods (they carry loops.tenire.io/name) and the
// ServiceAccounts, Roles, RoleBindings and PodDisruptionBudgets it labelled
// as its own. Pass it as cache.Options.ByObject.
func CacheByObject() map[client.Object]cache.ByObject {
	podReq, err := labels.NewRequirement(loopsv1alpha1.LabelName, selection.Exists, nil)
	if err != nil {
		panic(err) // a constant, valid requirement
	}
	managed := labels.SelectorFromSet(labels.Set{LabelManagedBy: ManagedByValue})
	return map[client.Object]cache.ByObject{
		&corev1.Pod{}:                   {Label: labels.NewSelector().Add(*podReq)},
		&corev1.ServiceAccount{}:        {Label: managed},
		&rbacv1.Role{}:                  {Label: managed},
		&rbacv1.RoleBinding{}:           {Label: managed},
		&policyv1.PodDisruptionBudget{}: {Label: managed},
	}
}

// SetupWithManager registers the reconciler with mgr, filling in the
// defaults of unset fields.
func (r *LoopDeploymentReconciler) SetupWithManager(mgr ctrl.Manager, options controller.Options) error {
	if r.Client == nil {
		r.Client = mgr.GetClient()
	}
	if r.APIReader == nil {
		r.APIReader = mgr.GetAPIReader()
	}
	if r.Recorder == nil {
		r.Recorder = mgr.GetEventRecorder(ControllerName)
	}
	if r.Clock == nil {
		r.Clock = clock.RealClock{}
	}
	if r.DrainGrace == 0 {
		r.DrainGrace = DefaultDrainGrace
	}
	r.expectations = newExpectations(r.Clock)
	if err := mgr.GetFieldIndexer().IndexField(context.Background(), &corev1.Pod{}, podControllerIndex, podControllerUID); err != nil {
		return fmt.Errorf("indexing pods by their controller: %w", err)
	}
	b := ctrl.NewControllerManagedBy(mgr)
	if r.Queues != nil {
		if r.Queues.Recorder == nil {
			r.Queues.Recorder = r.Recorder
		}
		if err := mgr.Add(r.Queues); err != nil {
			return fmt.Errorf("adding the queue poller: %w", err)
		}
		b = b.WatchesRawSource(r.Queues.Source())
	}
	err := b.
		Named(ControllerName).
		WithOptions(options).
		For(&loopsv1alpha1.LoopDeployment{}).
		Owns(&corev1.Pod{}).
		Owns(&policyv1.PodDisruptionBudget{}, builder.WithPredicates(notStatusOnly)).
		Owns(&corev1.ServiceAccount{}).
		Owns(&rbacv1.Role{}).
		Owns(&rbacv1.RoleBinding{}).
		Complete(r)
	if err != nil {
		return fmt.Errorf("setting up the %s controller: %w", ControllerName, err)
	}
	return nil
}

// notStatusOnly drops the update events of a LoopDeployment's
// PodDisruptionBudget that change nothing but its status, which
// kube-controller-manager rewrites as each pod comes and goes and which no
// reconcile reads. Every other change passes: spec (the generation),
// labels, annotations, finalizers, owners and deletion.
//
// The LoopDeployment's own status events still pass, though the operator
// wrote that status itself: a reconcile compares the status it computes
// with the cached one and writes only a difference, and a reconcile that
// ran before the cache showed the previous write compares with an older
// status. The event of that write brings the reconcile that puts it right
// (a drained pod's Draining condition stayed True without it).
var notStatusOnly = predicate.Funcs{UpdateFunc: func(e event.UpdateEvent) bool {
	o, n := e.ObjectOld, e.ObjectNew
	if o == nil || n == nil {
		return true
	}
	return o.GetGeneration() != n.GetGeneration() ||
		!o.GetDeletionTimestamp().Equal(n.GetDeletionTimestamp()) ||
		!equality.Semantic.DeepEqual(o.GetLabels(), n.GetLabels()) ||
		!equality.Semantic.DeepEqual(o.GetAnnotations(), n.GetAnnotations()) ||
		!equality.Semantic.DeepEqual(o.GetFinalizers(), n.GetFinalizers()) ||
		!equality.Semantic.DeepEqual(o.GetOwnerReferences(), n.GetOwnerReferences())
}}

// podControllerIndex indexes the cached pods by the UID of the
// LoopDeployment that controls them, so that a reconcile reads its own
// pods without scanning every pod of the namespace: with a thousand loops
// in one namespace a label selector alone made each reconcile match ten
// thousand pods.
const podControllerIndex = "loops.tenire.io/controller-uid"

// podControllerUID is the index function of podControllerIndex: the UID
// of the pod's controller, whatever its kind (a UID names one object).
func podControllerUID(obj client.Object) []string {
	if ref := metav1.GetControllerOf(obj); ref != nil {
		return []string{string(ref.UID)}
	}
	return nil
}

// +kubebuilder:rbac:groups=loops.tenire.io,resources=loopdeployments,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups=loops.tenire.io,resources=loopdeployments/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=loops.tenire.io,resources=loopdeployments/finalizers,verbs=update
// +kubebuilder:rbac:groups="",resources=pods,verbs=get;list;watch;create;delete;patch
// +kubebuilder:rbac:groups="",resources=pods/status,verbs=patch
// +kubebuilder:rbac:groups="",resources=serviceaccounts,verbs=get;list;watch;create;update;patch
// +kubebuilder:rbac:groups=rbac.authorization.k8s.io,resources=roles;rolebindings,verbs=get;list;watch;create;update;patch
// +kubebuilder:rbac:groups=policy,resources=poddisruptionbudgets,verbs=get;list;watch;create;update;patch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch
// +kubebuilder:rbac:groups="",resources=events,verbs=create;patch
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get

// Reconcile brings the pods of one LoopDeployment one step closer to its
// spec and records what it saw in its status, patched once at the end.
func (r *LoopDeploymentReconciler) Reconcile(ctx context.Context, req ctrl.Request) (_ ctrl.Result, reterr error) {
	logger := log.FromContext(ctx)

	ld := &loopsv1alpha1.LoopDeployment{}
	if err := r.Client.Get(ctx, req.NamespacedName, ld); err != nil {
		if apierrors.IsNotFound(err) {
			r.expectations.forget(req.NamespacedName)
			r.timeouts.note(req.NamespacedName, 0, true)
			r.unrequested.keep(req.NamespacedName, nil)
			return ctrl.Result{}, nil
		}
		return ctrl.Result{}, fmt.Errorf("getting LoopDeployment %s: %w", req.NamespacedName, err)
	}

	if ld.DeletionTimestamp.IsZero() && !controllerutil.ContainsFinalizer(ld, loopsv1alpha1.FinalizerDrain) {
		before := ld.DeepCopy()
		controllerutil.AddFinalizer(ld, loopsv1alpha1.FinalizerDrain)
		if err := r.Client.Patch(ctx, ld, client.MergeFromWithOptions(before, client.MergeFromWithOptimisticLock{})); err != nil {
			return ctrl.Result{}, fmt.Errorf("adding the finalizer: %w", err)
		}
	}
	if !ld.DeletionTimestamp.IsZero() && !controllerutil.ContainsFinalizer(ld, loopsv1alpha1.FinalizerDrain) {
		return ctrl.Result{}, nil // not ours to hold any more
	}

	s, err := r.newScope(ctx, ld)
	if err != nil {
		return ctrl.Result{}, err
	}

	before := ld.Status.DeepCopy() // the phases may set status fields too (queue, autoscaling)
	defer func() {
		if s.released {
			return // the object is gone or going; nothing to report on
		}
		r.computeStatus(s)
		if equality.Semantic.DeepEqual(*before, ld.Status) {
			return
		}
		if err := r.patchStatus(ctx, ld); err != nil {
			reterr = kerrors.NewAggregate([]error{reterr, err})
		}
	}()

	var phases []phase
	if !ld.DeletionTimestamp.IsZero() {
		logger.V(1).Info("Reconciling a LoopDeployment being deleted")
		phases = []phase{r.reconcileFailedPods, r.reconcileDrains, r.reconcileReplicas, r.reconcileRelease}
	} else {
		phases = []phase{r.reconcileQueue, r.reconcileAutoscaling, r.reconcileWorkerRBAC, r.reconcilePDB, r.reconcileFailedPods, r.reconcileDrains, r.reconcileReplicas}
	}
	return runPhases(ctx, s, phases)
}

// patchStatus writes the whole status of ld with a JSON merge patch. The
// whole status, not a diff against the cached object: the cache may not
// show the previous reconcile's status yet, and a diff against a stale
// status would leave stale fields behind.
func (r *LoopDeploymentReconciler) patchStatus(ctx context.Context, ld *loopsv1alpha1.LoopDeployment) error {
	body, err := json.Marshal(map[string]any{"status": ld.Status})
	if err != nil {
		return fmt.Errorf("encoding the status: %w", err)
	}
	if err := r.Client.Status().Patch(ctx, ld, client.RawPatch(types.MergePatchType, body)); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("patching the status: %w", err)
	}
	return nil
}

// phase is one step of a reconcile. It acts on the API server, records what
// it did in the scope, and returns when to come back.
type phase func(ctx context.Context, s *scope) (ctrl.Result, error)

// runPhases runs every phase, even after one failed (later phases act on
// a conservative view: a pod that failed to go is still counted), and
// returns the earliest requeue and every error.
func runPhases(ctx context.Context, s *scope, phases []phase) (ctrl.Result, error) {
	var res ctrl.Result
	var errs []error
	for _, p := range phases {
		r, err := p(ctx, s)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if r.RequeueAfter > 0 && (res.RequeueAfter == 0 || r.RequeueAfter < res.RequeueAfter) {
			res.RequeueAfter = r.RequeueAfter
		}
	}
	if len(errs) > 0 {
		return ctrl.Result{}, kerrors.NewAggregate(errs)
	}
	return res, nil
}
