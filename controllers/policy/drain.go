package policy

import (
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/clock"

	"github.com/tenire/loop-operator/api/v1alpha1/contract"
)

// DrainPhase is where one pod stands in the drain contract.
type DrainPhase string

const (
	// DrainNotRequested means the pod serves; nobody asked it to drain.
	DrainNotRequested DrainPhase = "NotRequested"
	// DrainInProgress means the operator asked the pod to drain and the pod has
	// not reported yet; the deadline plus the grace has not passed.
	DrainInProgress DrainPhase = "InProgress"
	// DrainDrained means the pod reported loops.tenire.io/Drained=True; it holds
	// no task and may be deleted.
	DrainDrained DrainPhase = "Drained"
	// DrainTimedOut means the deadline plus the grace passed with no report; the
	// pod is deleted anyway and the queue redelivers what it held.
	DrainTimedOut DrainPhase = "TimedOut"
	// DrainUnrequested means the pod reports loops.tenire.io/Drained=True
	// although nobody asked it to drain and it is not terminating. The
	// contract fails closed: the report is ignored, the pod is not deleted
	// and counts as serving; the operator records a warning.
	DrainUnrequested DrainPhase = "Unrequested"
	// DrainInvalid means the drain annotations are there but cannot be read
	// (contract.ErrUnreadableDrainRequest); the operator requests the drain
	// again with fresh times.
	DrainInvalid DrainPhase = "Invalid"
)

// Drain is the state of one pod's drain at one instant.
type Drain struct {
	// Phase is where the pod stands.
	Phase DrainPhase
	// Requested is when the drain was requested (zero when not requested
	// or invalid).
	Requested time.Time
	// Deadline is when the worker must have handed back every task.
	Deadline time.Time
	// GiveUpAt is Deadline plus the grace: when the operator stops waiting
	// for the report. Zero unless Phase is DrainInProgress or DrainTimedOut.
	GiveUpAt time.Time
	// Reason and Message are those of the Drained condition, when reported.
	Reason, Message string
}

// DrainOf returns the state of pod's drain at clk's now. grace is how long
// after the deadline the operator still waits for the worker's report.
//
// A Drained report is honoured only on a pod that was asked to drain (the
// annotations are there, readable or not) or that is terminating (its
// worker drains on SIGTERM); on any other pod it is DrainUnrequested, so
// that a worker, or anyone allowed to patch pods/status, cannot make the
// operator delete a pod it did not choose, outside the drain budget.
func DrainOf(pod *corev1.Pod, clk clock.PassiveClock, grace time.Duration) Drain {
	var d Drain
	r, requested, err := contract.ParseDrainRequest(pod.Annotations)
	if c, ok := contract.Drained(pod); ok {
		if !contract.HonoursDrained(pod) {
			return Drain{Phase: DrainUnrequested, Reason: c.Reason, Message: c.Message}
		}
		d.Phase, d.Reason, d.Message = DrainDrained, c.Reason, c.Message
		d.Requested, d.Deadline = r.Requested, r.Deadline
		return d
	}
	if !requested {
		d.Phase = DrainNotRequested
		return d
	}
	if err != nil {
		// contract.ErrUnreadableDrainRequest: the operator asks again.
		return Drain{Phase: DrainInvalid}
	}
	d.Requested, d.Deadline = r.Requested, r.Deadline
	d.GiveUpAt = d.Deadline.Add(grace)
	if clk.Now().After(d.GiveUpAt) {
		d.Phase = DrainTimedOut
	} else {
		d.Phase = DrainInProgress
	}
	return d
}
