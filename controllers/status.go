package controllers

import (
	"fmt"
	"strings"
	"sync"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"

	loopsv1alpha1 "github.com/tenire/loop-operator/api/v1alpha1"
	"github.com/tenire/loop-operator/api/v1alpha1/contract"
)

// counts is what the status reports about the pods, after this
// reconcile's actions.
type counts struct {
	replicas, ready, available, updated, draining int32
	serving, outdated                             int32 // outdated: active pods of another revision
	drainingNames                                 []string
	currentRevision                               string
}

func (s *scope) count() counts {
	var c counts
	for _, p := range s.present() { // oldest first
		if isFinished(p) {
			continue
		}
		draining := contract.Draining(p)
		// A terminating pod that holds nothing drains nothing and takes
		// no drain slot (terminatingEmpty): it is not reported draining,
		// as a Deployment's terminating pod is no replica.
		if draining && !s.terminatingEmpty(p) {
			c.draining++
			c.drainingNames = append(c.drainingNames, p.Name)
		}
		if isTerminating(p) {
			continue
		}
		c.replicas++
		rev := p.Labels[loopsv1alpha1.LabelRevision]
		if c.currentRevision == "" {
			c.currentRevision = rev
		}
		if rev != s.revision {
			c.outdated++
		}
		if isReady(p) {
			c.ready++
			if !draining {
				c.available++
			}
		}
		if !draining {
			c.serving++
			if rev == s.revision {
				c.updated++
			}
		}
	}
	if c.currentRevision == "" {
		c.currentRevision = s.revision
	}
	return c
}

// computeStatus sets the status of s.ld from the scope: the counts of its
// pods and one condition of each type.
func (r *LoopDeploymentReconciler) computeStatus(s *scope) {
	c := s.count()
	st := &s.ld.Status
	st.Replicas = c.replicas
	st.ReadyReplicas = c.ready
	st.AvailableReplicas = c.available
	st.UpdatedReplicas = c.updated
	st.DrainingReplicas = c.draining
	st.Selector = labels.SelectorFromSet(selectorLabels(s.ld)).String()
	st.UpdateRevision = s.revision
	st.CurrentRevision = c.currentRevision

	setAvailableCondition(s, c)
	setProgressingCondition(s, c)
	setDrainingCondition(s, c)
	setSuspendedCondition(s)
	r.setDegradedCondition(s) // reads the previous observedGeneration
	st.ObservedGeneration = s.ld.Generation
}

func setCondition(s *scope, t string, status bool, reason, format string, args ...any) {
	cs := metav1.ConditionFalse
	if status {
		cs = metav1.ConditionTrue
	}
	meta.SetStatusCondition(&s.ld.Status.Conditions, metav1.Condition{
		Type: t, Status: cs, Reason: reason, Message: fmt.Sprintf(format, args...), ObservedGeneration: s.ld.Generation,
	})
}

// setAvailableCondition: True when at least max(1, replicas -
// max(maxConcurrent, maxUnavailable)) pods are ready and not draining, at
// any time, as a Deployment's: the operator's own drains and a rolling
// update remove no ready pod below that bound.
func setAvailableCondition(s *scope, c counts) {
	if s.replicas == 0 {
		setCondition(s, loopsv1alpha1.ConditionAvailable, false, loopsv1alpha1.ReasonScaledToZero, "%s", zeroWhy(s))
		return
	}
	need := max(1, s.replicas-max(s.maxConcurrent, s.maxUnavailable))
	if c.available >= need {
		setCondition(s, loopsv1alpha1.ConditionAvailable, true, loopsv1alpha1.ReasonMinimumReplicasAvailable,
			"%d of %d pods available (at least %d needed)", c.available, s.replicas, need)
		return
	}
	setCondition(s, loopsv1alpha1.ConditionAvailable, false, loopsv1alpha1.ReasonMinimumReplicasUnavailable,
		"%d of %d pods available, at least %d needed", c.available, s.replicas, need)
}

func zeroWhy(s *scope) string {
	switch {
	case !s.ld.DeletionTimestamp.IsZero():
		return "the LoopDeployment is being deleted"
	case s.ld.Spec.Suspend:
		return "the LoopDeployment is suspended"
	default:
		return "replicas is 0"
	}
}

// setProgressingCondition: True while pods are created, drained or
// replaced; False once the right number of pods of the current revision
// serve and none drains.
func setProgressingCondition(s *scope, c counts) {
	const t = loopsv1alpha1.ConditionProgressing
	switch {
	case !s.ld.DeletionTimestamp.IsZero():
		setCondition(s, t, true, loopsv1alpha1.ReasonDeleting, "draining %d pod(s) before the LoopDeployment goes", c.replicas)
	case s.replicas == 0 && c.replicas+c.draining > 0:
		setCondition(s, t, true, loopsv1alpha1.ReasonScalingDown, "%d pod(s) left to drain (%s)", c.replicas, zeroWhy(s))
	case c.outdated > 0:
		setCondition(s, t, true, loopsv1alpha1.ReasonRollingUpdate, "%d of %d pods updated to revision %s, %d outdated left",
			c.updated, s.replicas, s.revision, c.outdated)
	case c.serving < s.replicas:
		setCondition(s, t, true, loopsv1alpha1.ReasonScalingUp, "%d of %d pods", c.serving, s.replicas)
	case c.serving > s.replicas || c.draining > 0:
		setCondition(s, t, true, loopsv1alpha1.ReasonScalingDown, "%d pods serving, %d draining, %d wanted", c.serving, c.draining, s.replicas)
	default:
		setCondition(s, t, false, loopsv1alpha1.ReasonComplete, "%d pods of revision %s", c.serving, s.revision)
	}
}

func setDrainingCondition(s *scope, c counts) {
	if c.draining > 0 {
		setCondition(s, loopsv1alpha1.ConditionDraining, true, loopsv1alpha1.ReasonDrainInProgress,
			"%d pod(s) draining: %s", c.draining, nameList(c.drainingNames))
		return
	}
	setCondition(s, loopsv1alpha1.ConditionDraining, false, loopsv1alpha1.ReasonNoDrains, "no pod is draining")
}

func setSuspendedCondition(s *scope) {
	if s.ld.Spec.Suspend {
		setCondition(s, loopsv1alpha1.ConditionSuspended, true, loopsv1alpha1.ReasonSuspendRequested, "spec.suspend is true: every pod is drained")
		return
	}
	setCondition(s, loopsv1alpha1.ConditionSuspended, false, loopsv1alpha1.ReasonNotSuspended, "spec.suspend is false")
}

// timeouts remembers, per LoopDeployment, the generation at which a drain
// last timed out, so that Degraded=DrainTimedOut stays even when the cache
// does not show the status that said so yet.
type timeouts struct {
	mu sync.Mutex
	m  map[types.NamespacedName]int64
}

// note records a timeout at generation, or forgets it when clear is true.
func (t *timeouts) note(key types.NamespacedName, generation int64, clear bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.m == nil {
		t.m = map[types.NamespacedName]int64{}
	}
	if clear {
		delete(t.m, key)
		return
	}
	t.m[key] = generation
}

func (t *timeouts) at(key types.NamespacedName) (int64, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	g, ok := t.m[key]
	return g, ok
}

// setDegradedCondition: True when pods cannot be created, a drain timed
// out, or pods fail. A DrainTimedOut stays until a worker reports Drained
// again or the spec changes, so that a human sees it.
func (r *LoopDeploymentReconciler) setDegradedCondition(s *scope) {
	const t = loopsv1alpha1.ConditionDegraded
	prev := meta.FindStatusCondition(s.ld.Status.Conditions, t)
	prevTimedOut := prev != nil && prev.Status == metav1.ConditionTrue && prev.Reason == loopsv1alpha1.ReasonDrainTimedOut &&
		s.ld.Status.ObservedGeneration == s.ld.Generation
	if g, ok := r.timeouts.at(s.key); ok && g == s.ld.Generation {
		prevTimedOut = true
	}
	switch {
	case len(s.timedOut) > 0:
		r.timeouts.note(s.key, s.ld.Generation, false)
	case s.reportedDrain || !prevTimedOut:
		r.timeouts.note(s.key, 0, true)
		prevTimedOut = false
	}
	switch {
	case s.createErr != nil:
		setCondition(s, t, true, loopsv1alpha1.ReasonPodCreateFailed, "creating a pod failed: %v", s.createErr)
	case len(s.timedOut) > 0:
		setCondition(s, t, true, loopsv1alpha1.ReasonDrainTimedOut,
			"pod(s) %s did not report Drained in time and were deleted; the queue redelivers their tasks", nameList(s.timedOut))
	case prevTimedOut:
		if prev != nil && prev.Reason == loopsv1alpha1.ReasonDrainTimedOut {
			break // keep it as it is
		}
		setCondition(s, t, true, loopsv1alpha1.ReasonDrainTimedOut,
			"a pod did not report Drained in time and was deleted; the queue redelivers its tasks")
	case len(s.failing) > 0:
		setCondition(s, t, true, loopsv1alpha1.ReasonPodsFailing, "pod(s) failing: %s", nameList(s.failing))
	default:
		setCondition(s, t, false, loopsv1alpha1.ReasonAsExpected, "nothing needs attention")
	}
}

// listedNames is how many names a message lists before it counts the rest.
const listedNames = 10

// nameList joins names for an event or condition message, the first
// listedNames of them and then a count, so that a message about 200 pods
// stays short (the API server rejects an event message over 1 kB).
func nameList(names []string) string {
	if len(names) <= listedNames {
		return strings.Join(names, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(names[:listedNames], ", "), len(names)-listedNames)
}

// unrequestedReports remembers, per LoopDeployment, the pods whose
// unrequested Drained report was already recorded, so that the warning
// fires once per pod, not on every reconcile. Memory only: a new process
// warns again once.
type unrequestedReports struct {
	mu sync.Mutex
	m  map[types.NamespacedName]map[types.UID]bool
}

// seen reports whether pod's report was recorded for key, and marks it.
func (u *unrequestedReports) seen(key types.NamespacedName, pod types.UID) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.m == nil {
		u.m = map[types.NamespacedName]map[types.UID]bool{}
	}
	if u.m[key] == nil {
		u.m[key] = map[types.UID]bool{}
	}
	was := u.m[key][pod]
	u.m[key][pod] = true
	return was
}

// keep forgets, for key, every pod but those listed (still reporting).
func (u *unrequestedReports) keep(key types.NamespacedName, pods []types.UID) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(pods) == 0 {
		delete(u.m, key)
		return
	}
	next := make(map[types.UID]bool, len(pods))
	for _, p := range pods {
		next[p] = u.m[key][p]
	}
	u.m[key] = next
}
