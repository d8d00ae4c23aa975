package controllers

import (
	"context"
	"fmt"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	loopsv1alpha1 "github.com/tenire/loop-operator/api/v1alpha1"
	"github.com/tenire/loop-operator/api/v1alpha1/contract"
	"github.com/tenire/loop-operator/controllers/policy"
	"github.com/tenire/loop-operator/controllers/stream"
)

// scope is what one reconcile of one LoopDeployment knows and did. The
// phases update pods as they act, so that later phases and the status see
// the state after the actions, not before.
type scope struct {
	ld       *loopsv1alpha1.LoopDeployment
	key      types.NamespacedName
	spec     loopsv1alpha1.LoopDeploymentSpec // defaults applied
	revision string
	now      time.Time

	// replicas is the number of serving pods wanted: spec.replicas, or 0
	// when suspended or being deleted.
	replicas       int32
	maxConcurrent  int32
	maxSurge       int32
	maxUnavailable int32

	// pods are the pods ld controls, as the cache shows them, with this
	// reconcile's changes applied; gone holds the names it deleted.
	pods []*corev1.Pod
	gone map[string]bool
	// activeBefore counts the pods that were neither terminating nor
	// finished when the reconcile began.
	activeBefore int32

	// What happened, for the status.
	createErr     error                        // the last pod creation that failed
	timedOut      []string                     // drains given up this reconcile
	reportedDrain bool                         // a worker reported Drained this reconcile
	failing       []string                     // pods failed or crash-looping
	waiting       bool                         // the cache lags behind this reconciler's writes
	queue         *stream.Observation          // the Poller's latest, when the operator manages queues
	loads         map[string]stream.WorkerLoad // the workers' announced tasks in flight, by pod
	released      bool                         // the finalizer was removed
}

func (r *LoopDeploymentReconciler) newScope(ctx context.Context, ld *loopsv1alpha1.LoopDeployment) (*scope, error) {
	s := &scope{
		ld:   ld,
		key:  client.ObjectKeyFromObject(ld),
		spec: loopsv1alpha1.WithDefaults(ld.Spec),
		now:  r.Clock.Now(),
		gone: map[string]bool{},
	}
	var err error
	if s.revision, err = policy.Revision(ld.Spec); err != nil {
		return nil, err
	}
	s.replicas = *s.spec.Replicas
	if ld.Spec.Suspend || !ld.DeletionTimestamp.IsZero() {
		s.replicas = 0
	}
	if s.maxSurge, err = policy.MaxSurge(*s.spec.UpdateStrategy.MaxSurge, *s.spec.Replicas); err != nil {
		return nil, err
	}

	list := &corev1.PodList{}
	if err := r.Client.List(ctx, list, client.InNamespace(ld.Namespace), client.MatchingFields{podControllerIndex: string(ld.UID)},
		client.MatchingLabels(selectorLabels(ld))); err != nil {
		return nil, fmt.Errorf("listing the pods of %s: %w", s.key, err)
	}
	for i := range list.Items {
		p := &list.Items[i]
		if ref := metav1.GetControllerOf(p); ref == nil || ref.UID != ld.UID {
			continue // a pod with our label that another object controls
		}
		s.pods = append(s.pods, p)
		if isActive(p) {
			s.activeBefore++
		}
	}
	slices.SortFunc(s.pods, func(a, b *corev1.Pod) int { return a.CreationTimestamp.Compare(b.CreationTimestamp.Time) })
	// A percentage is of the larger of the replicas wanted and the pods
	// there are beyond a rollout's surge: scaling 200 pods to 0 drains a
	// quarter of them at once by default, not one at a time, while a
	// rolling update keeps to the replicas wanted.
	if s.maxConcurrent, err = policy.MaxConcurrent(*s.spec.Drain.MaxConcurrent, max(*s.spec.Replicas, s.activeBefore-s.maxSurge)); err != nil {
		return nil, err
	}
	if s.maxUnavailable, err = policy.MaxUnavailable(s.spec.UpdateStrategy.MaxUnavailable, *s.spec.Replicas, s.maxSurge, s.maxConcurrent); err != nil {
		return nil, err
	}
	return s, nil
}

// present returns the pods not deleted by this reconcile.
func (s *scope) present() []*corev1.Pod {
	return slices.DeleteFunc(slices.Clone(s.pods), func(p *corev1.Pod) bool { return s.gone[p.Name] })
}

// isFinished reports whether the pod's containers have all stopped for
// good (phase Failed or Succeeded): it runs nothing and holds no task.
func isFinished(p *corev1.Pod) bool {
	return p.Status.Phase == corev1.PodFailed || p.Status.Phase == corev1.PodSucceeded
}

// isTerminating reports whether the pod is being deleted.
func isTerminating(p *corev1.Pod) bool { return p.DeletionTimestamp != nil }

// isActive reports whether the pod counts as a replica: neither
// terminating nor finished.
func isActive(p *corev1.Pod) bool { return !isTerminating(p) && !isFinished(p) }

// isServing reports whether the pod pulls tasks or will: active and not
// draining.
func isServing(p *corev1.Pod) bool { return isActive(p) && !contract.Draining(p) }

// isReady reports the pod's Ready condition.
func isReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// isScheduled reports whether the pod is bound to a node.
func isScheduled(p *corev1.Pod) bool { return p.Spec.NodeName != "" }

// candidate is the plan's view of a serving pod.
func (s *scope) candidate(p *corev1.Pod) policy.Candidate {
	c := policy.Candidate{
		Name:      p.Name,
		Scheduled: isScheduled(p),
		Ready:     isReady(p),
		Updated:   p.Labels[loopsv1alpha1.LabelRevision] == s.revision,
		Created:   p.CreationTimestamp.Time,
		InFlight:  -1,
	}
	if l, ok := s.loads[p.Name]; ok && !l.Stale {
		c.InFlight = l.InFlight
		c.Idle = l.InFlight == 0
	}
	return c
}

// terminatingEmpty reports whether p is terminating (or deleted by this
// reconcile) without a drain request and holds no task, as the plan judges
// a serving pod (policy.Candidate.HoldsNoTask: no node runs it, or its
// worker's last announcement had nothing in flight). Such a pod
// takes no drain slot, as an idle pod a scale-down deletes takes none:
// its SIGTERM drain has nothing to hand back, and a task it picked up
// since makes its worker announce again at once (loop.announceChange),
// after which it takes its slot. Without this, a rolling update would
// wait for each idle old pod to be gone from the API server (its kubelet
// to stop it and report) before it removed the next, where a ReplicaSet
// does not wait.
//
// For such a pod the worker's last announcement counts however old it is
// (stream.WorkerLoad.Stale): an idle worker ends soon after SIGTERM and
// announces no more, while its pod can stay terminating for as long as its
// kubelet takes to report. Letting the announcement lapse there made every
// such pod take a slot again, and count in drainingReplicas, until the
// API server let it go: at 100 loops on kwok a third of a rollout's
// status writes only moved drainingReplicas, and at 1,000 loops the
// rollout took 1.77× a Deployment's time instead of 1.01×
// (docs/benchmarks.md).
func (s *scope) terminatingEmpty(p *corev1.Pod) bool {
	if contract.DrainRequested(p) || (!isTerminating(p) && !s.gone[p.Name]) {
		return false
	}
	if !isScheduled(p) {
		return true
	}
	l, ok := s.loads[p.Name]
	return ok && l.InFlight == 0
}

// pod returns the pod named name.
func (s *scope) pod(name string) *corev1.Pod {
	for _, p := range s.pods {
		if p.Name == name {
			return p
		}
	}
	return nil
}
