package policy

import (
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/clock"

	loopsv1alpha1 "github.com/tenire/loop-operator/api/v1alpha1"
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
	// DrainInvalid means the drain annotations are there but cannot be read (one
	// is missing or is not an RFC 3339 time); the operator requests the
	// drain again with fresh times.
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

// Requested reports whether the pod carries a drain request, readable or
// not; such a pod is draining and takes one of the maxConcurrent slots.
func Requested(pod *corev1.Pod) bool {
	_, a := pod.Annotations[loopsv1alpha1.AnnotationDrainRequested]
	_, b := pod.Annotations[loopsv1alpha1.AnnotationDrainDeadline]
	return a || b
}

// Drained returns the pod's Drained condition when it is True.
func Drained(pod *corev1.Pod) (*corev1.PodCondition, bool) {
	for i := range pod.Status.Conditions {
		c := &pod.Status.Conditions[i]
		if c.Type == loopsv1alpha1.PodConditionDrained && c.Status == corev1.ConditionTrue {
			return c, true
		}
	}
	return nil, false
}

// DrainOf returns the state of pod's drain at clk's now. grace is how long
// after the deadline the operator still waits for the worker's report.
//
// A pod that reports Drained is drained whether or not it was asked (a
// worker drained by SIGTERM holds no task either).
func DrainOf(pod *corev1.Pod, clk clock.PassiveClock, grace time.Duration) Drain {
	var d Drain
	if c, ok := Drained(pod); ok {
		d.Phase, d.Reason, d.Message = DrainDrained, c.Reason, c.Message
		d.Requested, d.Deadline = readAnnotations(pod)
		return d
	}
	if !Requested(pod) {
		d.Phase = DrainNotRequested
		return d
	}
	d.Requested, d.Deadline = readAnnotations(pod)
	if d.Requested.IsZero() || d.Deadline.IsZero() {
		return Drain{Phase: DrainInvalid}
	}
	d.GiveUpAt = d.Deadline.Add(grace)
	if clk.Now().After(d.GiveUpAt) {
		d.Phase = DrainTimedOut
	} else {
		d.Phase = DrainInProgress
	}
	return d
}

// readAnnotations parses both drain annotations; a missing or malformed
// one is the zero time.
func readAnnotations(pod *corev1.Pod) (requested, deadline time.Time) {
	parse := func(key string) time.Time {
		v, ok := pod.Annotations[key]
		if !ok {
			return time.Time{}
		}
		t, err := time.Parse(time.RFC3339, v)
		if err != nil {
			return time.Time{}
		}
		return t
	}
	return parse(loopsv1alpha1.AnnotationDrainRequested), parse(loopsv1alpha1.AnnotationDrainDeadline)
}

// DrainAnnotations returns the two annotations that ask a pod to drain at
// clk's now with the given timeout, as RFC 3339 times in UTC: the request
// with its fraction of a second (the drain-duration metric is measured
// from it), the deadline rounded up to the next second so that it is never
// earlier than now plus timeout. Readers parse both with time.RFC3339,
// which accepts a fraction.
func DrainAnnotations(clk clock.PassiveClock, timeout time.Duration) map[string]string {
	now := clk.Now().UTC()
	deadline := now.Add(timeout)
	if t := deadline.Truncate(time.Second); !t.Equal(deadline) {
		deadline = t.Add(time.Second)
	}
	return map[string]string{
		loopsv1alpha1.AnnotationDrainRequested: now.Format(time.RFC3339Nano),
		loopsv1alpha1.AnnotationDrainDeadline:  deadline.Format(time.RFC3339),
	}
}
