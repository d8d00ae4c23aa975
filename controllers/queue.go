package controllers

import (
	"context"
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	loopsv1alpha1 "github.com/tenire/loop-operator/api/v1alpha1"
	"github.com/tenire/loop-operator/controllers/policy"
	"github.com/tenire/loop-operator/controllers/stream"
)

// Event actions of the queue and the autoscaler.
const (
	actionProvision = "Provision"
	actionScale     = "Scale"
)

// reconcileQueue records the Poller's latest observation of the queue:
// the QueueReady condition (an event when it changes), status.queue when
// a figure changed materially (policy.QueueStatusDue). The poller records
// the moves of tasks itself. It never talks to NATS.
func (r *LoopDeploymentReconciler) reconcileQueue(_ context.Context, s *scope) (ctrl.Result, error) {
	if r.Queues == nil {
		return ctrl.Result{}, nil
	}
	o, ok := r.Queues.Observation(s.ld.UID)
	if !ok || o.Generation != s.ld.Generation {
		r.Queues.Kick(s.key) // a new LD's workers wait for their queue; a changed spec may change it
	}
	if !ok {
		setCondition(s, loopsv1alpha1.ConditionQueueReady, false, "Pending", "the operator has not polled the queue yet")
		return ctrl.Result{}, nil
	}
	s.queue = &o
	s.loads = r.Queues.Loads(s.ld.UID)
	before := meta.FindStatusCondition(s.ld.Status.Conditions, loopsv1alpha1.ConditionQueueReady)
	setCondition(s, loopsv1alpha1.ConditionQueueReady, o.Ready, o.Reason, "%s", o.Message)
	if before == nil || before.Reason != o.Reason {
		if o.Ready {
			r.Recorder.Eventf(s.ld, nil, corev1.EventTypeNormal, loopsv1alpha1.EventQueueProvisioned, actionProvision, "%s", o.Message)
		} else {
			r.Recorder.Eventf(s.ld, nil, corev1.EventTypeWarning, loopsv1alpha1.EventQueueNotReady, actionProvision, "%s: %s", o.Reason, o.Message)
		}
	}
	if !o.Ready {
		return ctrl.Result{}, nil // keep the last figures read
	}
	next := queueStatusOf(o)
	if policy.QueueStatusDue(s.ld.Status.Queue, next, s.now) {
		s.ld.Status.Queue = next
		return ctrl.Result{}, nil
	}
	// Not due yet: come back when it is, for nothing else may bring the
	// reconciler back (the poller wakes it on material changes only).
	if after, ok := policy.QueueStatusRecheck(s.ld.Status.Queue, next, s.now); ok {
		return ctrl.Result{RequeueAfter: after}, nil
	}
	return ctrl.Result{}, nil
}

// queueStatusOf is status.queue for an observation.
func queueStatusOf(o stream.Observation) *loopsv1alpha1.QueueStatus {
	q := &loopsv1alpha1.QueueStatus{
		Stream:         o.Stream,
		RetiringStream: o.RetiringStream,
		DeadLetters:    int64(o.Backlog.DeadLetters),
		ObservedTime:   &metav1.Time{Time: o.At},
	}
	if !o.Backlog.Oldest.IsZero() {
		q.OldestTaskTime = &metav1.Time{Time: o.Backlog.Oldest}
	}
	for _, p := range o.Backlog.Priorities {
		q.Pending += int64(p.Pending)
		q.InFlight += int64(p.InFlight)
		q.Redelivered += int64(p.Redelivered)
		q.Priorities = append(q.Priorities, loopsv1alpha1.PriorityQueueStatus{
			Name: p.Priority, Pending: int64(p.Pending), InFlight: int64(p.InFlight),
			Redelivered: int64(p.Redelivered), Retiring: p.Retiring,
		})
	}
	return q
}

// autoscalers keeps each autoscaled LoopDeployment's recent
// recommendations and changes, which stabilization and rate policies look
// back on. It lives in memory, as an HPA controller's does: after an
// operator restart the history starts with the current count, so the
// restart itself never scales down before a full window has passed.
type autoscalers struct {
	mu sync.Mutex
	by map[types.UID]*autoscaleHistory
}

type autoscaleHistory struct {
	recs   []policy.Recommendation
	events []policy.ScaleEvent
	held   bool
}

func (a *autoscalers) get(uid types.UID, current int32, now time.Time) *autoscaleHistory {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.by == nil {
		a.by = map[types.UID]*autoscaleHistory{}
	}
	h := a.by[uid]
	if h == nil {
		h = &autoscaleHistory{recs: []policy.Recommendation{{At: now, Replicas: current}}}
		a.by[uid] = h
	}
	return h
}

func (a *autoscalers) forget(uid types.UID) {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.by, uid)
}

// prune drops what is older than keep.
func (h *autoscaleHistory) prune(now time.Time, keep time.Duration) {
	i := 0
	for i < len(h.recs) && now.Sub(h.recs[i].At) > keep {
		i++
	}
	h.recs = h.recs[i:]
	j := 0
	for j < len(h.events) && now.Sub(h.events[j].At) > keep {
		j++
	}
	h.events = h.events[j:]
}

// reconcileAutoscaling sets spec.replicas from the backlog when
// spec.autoscaling is set (policy.Autoscale decides), so that the phases
// after it scale to the new count in the same reconcile. Suspended and
// deleted loops are not autoscaled. It holds the count, with
// ScalingActive=False and an event, while the queue cannot be read.
func (r *LoopDeploymentReconciler) reconcileAutoscaling(ctx context.Context, s *scope) (ctrl.Result, error) {
	spec := s.ld.Spec.Autoscaling
	if spec == nil || r.Queues == nil {
		s.ld.Status.Autoscaling = nil
		meta.RemoveStatusCondition(&s.ld.Status.Conditions, loopsv1alpha1.ConditionScalingActive)
		r.autoscale.forget(s.ld.UID)
		return ctrl.Result{}, nil
	}
	if s.ld.Spec.Suspend || !s.ld.DeletionTimestamp.IsZero() {
		setCondition(s, loopsv1alpha1.ConditionScalingActive, false, loopsv1alpha1.ReasonAutoscalingSuspended,
			"the loop is suspended or being deleted; the autoscaler waits")
		return ctrl.Result{}, nil
	}
	in := policy.AutoscaleInput{
		Spec:       loopsv1alpha1.AutoscalingWithDefaults(*spec),
		Current:    *s.spec.Replicas,
		MaxWorkers: s.spec.Loop.Pool.MaxWorkers,
	}
	if o := s.queue; o != nil && o.Ready {
		pending, inFlight := o.Backlog.Demand()
		in.Demand = &policy.Demand{Pending: int64(pending), InFlight: int64(inFlight)}
		in.LastActive = o.LastActive
	}
	h := r.autoscale.get(s.ld.UID, in.Current, s.now)
	h.prune(s.now, policy.AutoscaleHistory(in.Spec))
	in.Recommendations, in.Events = h.recs, h.events
	d := policy.Autoscale(in, s.now)

	st := s.ld.Status.Autoscaling
	if st == nil {
		st = &loopsv1alpha1.AutoscalingStatus{}
	} else {
		st = st.DeepCopy()
	}
	st.DesiredReplicas = d.Replicas
	if !in.LastActive.IsZero() && (st.LastActiveTime == nil || in.LastActive.Sub(st.LastActiveTime.Time) >= policy.QueueStatusMaxAge) {
		st.LastActiveTime = &metav1.Time{Time: in.LastActive}
	}
	if d.Held && s.queue == nil {
		// Not read yet: a new LoopDeployment (its first poll is kicked) or
		// a restarted operator. Nothing failed, so no Warning event; the
		// next poll wakes this reconciler.
		setCondition(s, loopsv1alpha1.ConditionScalingActive, false, loopsv1alpha1.ReasonBacklogUnavailable,
			"the operator has not read the queue yet; holding %d replicas", in.Current)
		s.ld.Status.Autoscaling = st
		return ctrl.Result{}, nil
	}
	if d.Held {
		if !h.held {
			r.Recorder.Eventf(s.ld, nil, corev1.EventTypeWarning, loopsv1alpha1.EventAutoscalingHeld, actionScale, "%s", d.Reason)
		}
		h.held = true
		setCondition(s, loopsv1alpha1.ConditionScalingActive, false, loopsv1alpha1.ReasonBacklogUnavailable,
			"the queue cannot be read (see QueueReady); holding %d replicas", in.Current)
		s.ld.Status.Autoscaling = st
		return ctrl.Result{}, nil
	}
	h.held = false
	h.recs = append(h.recs, policy.Recommendation{At: s.now, Replicas: d.Recommendation})
	// A stable message: the figures of each decision go to events, so that
	// the condition does not rewrite the status at every poll.
	setCondition(s, loopsv1alpha1.ConditionScalingActive, true, loopsv1alpha1.ReasonAutoscaling,
		"replicas follow the backlog between %d and %d", *in.Spec.MinReplicas, in.Spec.MaxReplicas)
	if d.Replicas != in.Current {
		before := s.ld.DeepCopy()
		s.ld.Spec.Replicas = &d.Replicas
		// Only spec.replicas is sent: a concurrent edit of other fields is
		// kept; a concurrent kubectl scale is overwritten, as documented.
		if err := r.Client.Patch(ctx, s.ld, client.MergeFrom(before)); err != nil {
			s.ld.Spec.Replicas = before.Spec.Replicas
			return ctrl.Result{}, fmt.Errorf("setting replicas to %d: %w", d.Replicas, err)
		}
		h.events = append(h.events, policy.ScaleEvent{At: s.now, From: in.Current, To: d.Replicas})
		st.LastScaleTime = &metav1.Time{Time: s.now}
		s.spec.Replicas = &d.Replicas
		s.replicas = d.Replicas
		r.Recorder.Eventf(s.ld, nil, corev1.EventTypeNormal, loopsv1alpha1.EventAutoscaled, actionScale, "%s", d.Reason)
		log.FromContext(ctx).Info("Autoscaled", "from", in.Current, "to", d.Replicas, "reason", d.Reason)
	}
	s.ld.Status.Autoscaling = st
	return ctrl.Result{}, nil
}

// releaseQueue deletes the queue of a LoopDeployment being deleted whose
// deletionPolicy is Delete, once its pods are gone; with Retain it leaves
// it. An error keeps the finalizer, so the queue is never left half
// deleted by a LoopDeployment that is already gone (set the policy to
// Retain to let go of an unreachable queue).
func (r *LoopDeploymentReconciler) releaseQueue(ctx context.Context, s *scope) error {
	defer r.autoscale.forget(s.ld.UID)
	defer stream.Forget(s.ld.Namespace, s.ld.Name)
	if r.Queues == nil || s.spec.Queue.NATS.DeletionPolicy != loopsv1alpha1.DeletionPolicyDelete {
		return nil
	}
	if err := r.Queues.Delete(ctx, s.ld); err != nil {
		r.Recorder.Eventf(s.ld, nil, corev1.EventTypeWarning, loopsv1alpha1.EventQueueNotReady, actionDelete,
			"Deleting the queue (deletionPolicy Delete) failed, the LoopDeployment waits: %v", err)
		return fmt.Errorf("deleting the queue: %w", err)
	}
	r.Recorder.Eventf(s.ld, nil, corev1.EventTypeNormal, loopsv1alpha1.EventQueueDeleted, actionDelete,
		"Deleted the queue's streams and bucket (deletionPolicy Delete)")
	return nil
}
