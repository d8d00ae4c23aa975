package controllers

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	kerrors "k8s.io/apimachinery/pkg/util/errors"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	loopsv1alpha1 "github.com/tenire/loop-operator/api/v1alpha1"
	"github.com/tenire/loop-operator/api/v1alpha1/contract"
	"github.com/tenire/loop-operator/controllers/policy"
)

// Event actions (the events.k8s.io "action" field).
const (
	actionCreate = "Create"
	actionDrain  = "Drain"
	actionDelete = "Delete"
	actionIgnore = "Ignore"
)

// reconcileFailedPods deletes pods whose containers stopped for good
// (phase Failed or Succeeded): they hold no task, so they go without a
// drain, and reconcileReplicas replaces them.
func (r *LoopDeploymentReconciler) reconcileFailedPods(ctx context.Context, s *scope) (ctrl.Result, error) {
	var errs []error
	for _, p := range s.pods {
		if !isFinished(p) || isTerminating(p) {
			continue
		}
		s.failing = append(s.failing, p.Name)
		deleted, err := r.deletePod(ctx, s, p)
		if err != nil {
			errs = append(errs, err)
		}
		if !deleted {
			continue
		}
		r.Recorder.Eventf(s.ld, p, corev1.EventTypeWarning, loopsv1alpha1.EventPodReplaced, actionDelete,
			"Pod %s stopped (phase %s, reason %q) and is replaced", p.Name, p.Status.Phase, p.Status.Reason)
	}
	for _, p := range s.pods {
		if isActive(p) && crashLooping(p) {
			s.failing = append(s.failing, p.Name)
		}
	}
	return ctrl.Result{}, kerrors.NewAggregate(errs)
}

// crashLooping reports whether a container of p waits to be restarted or
// cannot pull its image.
func crashLooping(p *corev1.Pod) bool {
	for _, c := range p.Status.ContainerStatuses {
		if w := c.State.Waiting; w != nil {
			switch w.Reason {
			case "CrashLoopBackOff", "ImagePullBackOff", "ErrImagePull", "CreateContainerConfigError", "InvalidImageName":
				return true
			}
		}
	}
	return false
}

// reconcileDrains finishes drains: it deletes pods that report Drained and
// pods whose deadline plus grace passed, and asks again, with fresh times,
// pods whose drain annotations cannot be read. It comes back when the
// earliest pending drain runs out of time.
func (r *LoopDeploymentReconciler) reconcileDrains(ctx context.Context, s *scope) (ctrl.Result, error) {
	logger := log.FromContext(ctx)
	var res ctrl.Result
	var errs []error
	var drained []drainedPod
	defer func() { r.eventDrained(s, drained) }()
	var unrequested []types.UID
	defer func() { r.unrequested.keep(s.key, unrequested) }()
	for _, p := range s.pods {
		if !isActive(p) {
			continue
		}
		d := policy.DrainOf(p, r.Clock, r.DrainGrace)
		switch d.Phase {
		case policy.DrainNotRequested:
		case policy.DrainInProgress:
			wait := d.GiveUpAt.Sub(s.now) + time.Second
			if res.RequeueAfter == 0 || wait < res.RequeueAfter {
				res.RequeueAfter = wait
			}
		case policy.DrainUnrequested:
			unrequested = append(unrequested, p.UID)
			if !r.unrequested.seen(s.key, p.UID) {
				logger.Info("Pod reports Drained but was not asked to drain; ignoring the report and keeping the pod",
					"pod", p.Name, "reason", d.Reason, "report", d.Message)
				r.Recorder.Eventf(s.ld, p, corev1.EventTypeWarning, loopsv1alpha1.EventUnrequestedDrainReport, actionIgnore,
					"Pod %s reports %s=True (%s) but was not asked to drain and is not terminating; the report is ignored and the pod kept",
					p.Name, contract.PodConditionDrained, d.Reason)
			}
		case policy.DrainInvalid:
			logger.Info("Drain annotations unreadable; requesting the drain again", "pod", p.Name)
			if err := r.requestDrain(ctx, s, p); err != nil {
				errs = append(errs, err)
			}
		case policy.DrainDrained:
			deleted, err := r.deletePod(ctx, s, p)
			if err != nil {
				errs = append(errs, err)
			}
			if !deleted {
				continue
			}
			s.reportedDrain = true
			result := DrainResultCompleted
			if d.Reason == contract.DrainedReasonDeadlineExceeded {
				result = DrainResultDeadlineExceeded
			}
			observeDrain(result, d, s.now)
			logger.Info("Pod drained; deleted it", "pod", p.Name, "reason", d.Reason, "report", d.Message)
			drained = append(drained, drainedPod{pod: p, reason: d.Reason, message: d.Message})
		case policy.DrainTimedOut:
			deleted, err := r.deletePod(ctx, s, p)
			if err != nil {
				errs = append(errs, err)
			}
			if !deleted {
				continue
			}
			s.timedOut = append(s.timedOut, p.Name)
			observeDrain(DrainResultTimedOut, d, s.now)
			logger.Info("Pod did not report Drained in time; deleted it anyway", "pod", p.Name, "deadline", d.Deadline)
			r.Recorder.Eventf(s.ld, p, corev1.EventTypeWarning, loopsv1alpha1.EventDrainTimedOut, actionDelete,
				"Pod %s did not report Drained by %s plus %s and was deleted; the queue redelivers its tasks",
				p.Name, d.Deadline.Format(time.RFC3339), r.DrainGrace)
		}
	}
	return res, kerrors.NewAggregate(errs)
}

func observeDrain(result string, d policy.Drain, now time.Time) {
	drainsTotal.WithLabelValues(result).Inc()
	if !d.Requested.IsZero() {
		drainDuration.WithLabelValues(result).Observe(now.Sub(d.Requested).Seconds())
	}
}

// reconcileReplicas creates missing pods and starts drains, as
// policy.PlanPods decides, unless the cache has yet to show this
// reconciler's previous writes.
func (r *LoopDeploymentReconciler) reconcileReplicas(ctx context.Context, s *scope) (ctrl.Result, error) {
	if ok, expire := r.expectations.met(s.key, s.pods); !ok {
		s.waiting = true
		log.FromContext(ctx).V(1).Info("Waiting for the cache to show earlier changes", "expiresIn", expire)
		// The pod's watch event normally brings the next reconcile; look
		// again soon anyway, in case that event came before the cache had it.
		return ctrl.Result{RequeueAfter: min(expire, expectationRecheck)}, nil
	}

	in := policy.PlanInput{Replicas: s.replicas, MaxSurge: s.maxSurge, MaxUnavailable: s.maxUnavailable, MaxConcurrent: s.maxConcurrent}
	for _, p := range s.pods {
		// Pods deleted by this reconcile still count as draining: the
		// cache shows them until they are really gone. A terminating pod
		// that holds nothing takes no slot.
		switch {
		case contract.Draining(p) || (s.gone[p.Name] && !isFinished(p)):
			if !s.terminatingEmpty(p) {
				in.Draining++
			}
		case isServing(p):
			in.Pods = append(in.Pods, s.candidate(p))
		}
	}
	plan := policy.PlanPods(in)

	var errs []error
	if err := r.deleteIdle(ctx, s, plan.Delete); err != nil {
		errs = append(errs, err)
	}
	var asked []*corev1.Pod
	defer func() { r.eventDrainStarted(s, asked) }()
	for _, name := range plan.Drain {
		p := s.pod(name)
		if err := r.requestDrain(ctx, s, p); err != nil {
			errs = append(errs, err)
			continue
		}
		asked = append(asked, p)
	}
	if plan.Create > 0 {
		if err := r.createPods(ctx, s, plan.Create); err != nil {
			errs = append(errs, err)
		}
	}
	return ctrl.Result{}, kerrors.NewAggregate(errs)
}

// createPods creates n pods of the current revision in batches that
// double (1, 2, 4, …), the pods of a batch in parallel, as the ReplicaSet
// controller does: a large scale-up is not n requests one after another,
// and a template the API server rejects fails one request, not n. It stops
// after a batch with a failure.
func (r *LoopDeploymentReconciler) createPods(ctx context.Context, s *scope, n int32) error {
	logger := log.FromContext(ctx)
	var created []string
	var err error
	for batch, left := 1, int(n); left > 0 && err == nil; batch *= 2 {
		pods := make([]*corev1.Pod, min(batch, left))
		left -= len(pods)
		for i := range pods {
			if pods[i], err = newPod(s.ld, s.spec, s.revision, r.Client.Scheme()); err != nil {
				err = reconcile.TerminalError(err)
				break
			}
		}
		if err != nil {
			break
		}
		failed := make([]error, len(pods))
		var wg sync.WaitGroup
		for i, pod := range pods {
			wg.Go(func() { failed[i] = r.Client.Create(ctx, pod) })
		}
		wg.Wait()
		for i, pod := range pods {
			if failed[i] != nil {
				if err == nil {
					err = fmt.Errorf("creating a pod: %w", failed[i])
					if apierrors.IsInvalid(failed[i]) {
						err = reconcile.TerminalError(err)
					}
				}
				continue
			}
			r.expectations.expect(s.key, pod.Name, expectCreated)
			s.pods = append(s.pods, pod)
			created = append(created, pod.Name)
		}
	}
	if len(created) > 0 {
		logger.Info("Created pods", "count", len(created), "revision", s.revision, "pods", created)
		reason, why := loopsv1alpha1.EventScaledUp, "to reach"
		if lost := s.ld.Status.Replicas - s.activeBefore; lost > 0 && s.ld.Status.ObservedGeneration == s.ld.Generation {
			reason, why = loopsv1alpha1.EventPodReplaced, fmt.Sprintf("replacing %d lost outside the operator's control, to keep", lost)
		}
		r.Recorder.Eventf(s.ld, nil, corev1.EventTypeNormal, reason, actionCreate,
			"Created %d pod(s) of revision %s %s %d replicas: %s", len(created), s.revision, why, s.replicas, nameList(created))
	}
	if err != nil {
		s.createErr = err
		logger.Error(err, "Creating a worker pod failed")
	}
	return err
}

// deleteIdle deletes, in parallel, the pods the plan removes without a
// drain: pods no node runs, and pods whose worker announced that it held
// no task. The kubelet's SIGTERM makes such a worker drain whatever it
// picked up since its announcement, within its grace period (at least the
// drain timeout plus a margin, see gracePeriodSeconds), so that nothing is
// lost; the drain request, the Drained report and the operator's own
// deletion are saved. It expects the cache to show each pod terminating.
func (r *LoopDeploymentReconciler) deleteIdle(ctx context.Context, s *scope, names []string) error {
	if len(names) == 0 {
		return nil
	}
	victims := make([]*corev1.Pod, len(names))
	deleted := make([]bool, len(names))
	failed := make([]error, len(names))
	var wg sync.WaitGroup
	for i, name := range names {
		victims[i] = s.pod(name)
		wg.Go(func() { deleted[i], failed[i] = r.deletePodOnly(ctx, victims[i]) })
	}
	wg.Wait()
	var gone []string
	for i, p := range victims {
		s.gone[p.Name] = failed[i] == nil
		if !deleted[i] {
			continue
		}
		r.expectations.expect(s.key, p.Name, expectDeleted)
		reason := deletedIdle
		if !isScheduled(p) {
			reason = deletedUnscheduled
		}
		podsDeletedWithoutDrain.WithLabelValues(reason).Inc()
		gone = append(gone, p.Name)
	}
	if len(gone) > 0 {
		log.FromContext(ctx).Info("Deleted pods that held no task, without a drain request", "count", len(gone), "pods", gone)
		r.Recorder.Eventf(s.ld, nil, corev1.EventTypeNormal, loopsv1alpha1.EventDeletedIdle, actionDelete,
			"Deleted %d pod(s) holding no task without a drain request (unscheduled, or no task in flight in their workers' last announcement; SIGTERM drains anything picked up since): %s",
			len(gone), nameList(gone))
	}
	return kerrors.NewAggregate(failed)
}

// requestDrain sets the drain annotations on p (now, and now plus
// drain.timeout; contract.RequestDrain, which first removes a Drained
// report nobody asked for) and expects the cache to show them.
func (r *LoopDeploymentReconciler) requestDrain(ctx context.Context, s *scope, p *corev1.Pod) error {
	if err := contract.RequestDrain(ctx, r.Client, p, r.Clock.Now(), s.spec.Drain.Timeout.Duration); err != nil {
		if apierrors.IsNotFound(err) {
			s.gone[p.Name] = true
			return nil
		}
		return err
	}
	r.expectations.expect(s.key, p.Name, expectDrainRequested)
	log.FromContext(ctx).Info("Asked a pod to drain", "pod", p.Name, "deadline", p.Annotations[contract.AnnotationDrainDeadline])
	return nil
}

// deletePod deletes p and marks it gone. deleted is false when the pod
// was already gone (an earlier reconcile deleted it and the cache has not
// caught up), so that events and metrics count each deletion once.
func (r *LoopDeploymentReconciler) deletePod(ctx context.Context, s *scope, p *corev1.Pod) (deleted bool, err error) {
	deleted, err = r.deletePodOnly(ctx, p)
	if err == nil {
		s.gone[p.Name] = true
	}
	return deleted, err
}

// deletePodOnly deletes p if it is still the same pod (UID). deleted is
// false when it was already gone; an error means it may still be there.
// It touches no shared state, so deletions may run in parallel.
func (r *LoopDeploymentReconciler) deletePodOnly(ctx context.Context, p *corev1.Pod) (deleted bool, err error) {
	err = r.Client.Delete(ctx, p, client.Preconditions{UID: &p.UID})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		return false, fmt.Errorf("deleting pod %s: %w", p.Name, err)
	}
	return err == nil, nil
}

// reconcileRelease removes the finalizer of a LoopDeployment being deleted
// once none of its pods is left but terminating ones (which drain on
// SIGTERM within their grace period).
func (r *LoopDeploymentReconciler) reconcileRelease(ctx context.Context, s *scope) (ctrl.Result, error) {
	for _, p := range s.present() {
		if !isTerminating(p) {
			return ctrl.Result{}, nil
		}
	}
	if err := r.releaseQueue(ctx, s); err != nil {
		return ctrl.Result{}, err
	}
	before := s.ld.DeepCopy()
	controllerutil.RemoveFinalizer(s.ld, loopsv1alpha1.FinalizerDrain)
	if err := r.Client.Patch(ctx, s.ld, client.MergeFrom(before)); err != nil && !apierrors.IsNotFound(err) {
		return ctrl.Result{}, fmt.Errorf("removing the finalizer: %w", err)
	}
	s.released = true
	r.expectations.forget(s.key)
	log.FromContext(ctx).Info("Every pod drained; released the LoopDeployment")
	return ctrl.Result{}, nil
}

// drainedPod is a pod deleted after it reported Drained.
type drainedPod struct {
	pod             *corev1.Pod
	reason, message string
}

// eventDrained records the drains a reconcile completed: one event naming
// the pod and its worker's report, or one for all of them when there are
// several (a scale-down from 200 pods would otherwise write 200 events).
func (r *LoopDeploymentReconciler) eventDrained(s *scope, drained []drainedPod) {
	switch len(drained) {
	case 0:
	case 1:
		d := drained[0]
		r.Recorder.Eventf(s.ld, d.pod, corev1.EventTypeNormal, loopsv1alpha1.EventDrainCompleted, actionDelete,
			"Pod %s drained (%s: %s) and was deleted", d.pod.Name, d.reason, d.message)
	default:
		names := make([]string, len(drained))
		reasons := map[string]int{}
		for i, d := range drained {
			names[i] = d.pod.Name
			reasons[d.reason]++
		}
		counts := make([]string, 0, len(reasons))
		for _, reason := range slices.Sorted(maps.Keys(reasons)) {
			counts = append(counts, fmt.Sprintf("%s %d", reason, reasons[reason]))
		}
		r.Recorder.Eventf(s.ld, nil, corev1.EventTypeNormal, loopsv1alpha1.EventDrainCompleted, actionDelete,
			"%d pods drained (%s) and were deleted: %s", len(drained), strings.Join(counts, ", "), nameList(names))
	}
}

// eventDrainStarted records the drains a reconcile asked for, like
// eventDrained: one event per pod, or one for several.
func (r *LoopDeploymentReconciler) eventDrainStarted(s *scope, asked []*corev1.Pod) {
	switch len(asked) {
	case 0:
	case 1:
		p := asked[0]
		r.Recorder.Eventf(s.ld, p, corev1.EventTypeNormal, loopsv1alpha1.EventDrainStarted, actionDrain,
			"Asked pod %s to drain by %s", p.Name, p.Annotations[contract.AnnotationDrainDeadline])
	default:
		names := make([]string, len(asked))
		for i, p := range asked {
			names[i] = p.Name
		}
		r.Recorder.Eventf(s.ld, nil, corev1.EventTypeNormal, loopsv1alpha1.EventDrainStarted, actionDrain,
			"Asked %d pods to drain by %s: %s", len(asked), asked[0].Annotations[contract.AnnotationDrainDeadline], nameList(names))
	}
}
