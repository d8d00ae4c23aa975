package contract

import (
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

const (
	// AnnotationDrainRequested is set by the operator on a pod it wants to
	// drain, to the RFC 3339 time of the request.
	AnnotationDrainRequested = "loops.tenire.io/drain-requested"
	// AnnotationDrainDeadline is set together with AnnotationDrainRequested
	// to the RFC 3339 time by which the worker must have handed back every
	// task it still holds.
	AnnotationDrainDeadline = "loops.tenire.io/drain-deadline"

	// PodConditionDrained is the pod condition a worker sets to True once
	// it has stopped pulling and holds no task any more.
	PodConditionDrained corev1.PodConditionType = "loops.tenire.io/Drained"
	// DrainedReasonCompleted means every in-flight task finished before the
	// deadline.
	DrainedReasonCompleted = "Completed"
	// DrainedReasonDeadlineExceeded means the deadline passed and the tasks
	// still running were cancelled and handed back to the queue.
	DrainedReasonDeadlineExceeded = "DeadlineExceeded"
)

// DrainRequest is a drain request read from a pod's annotations.
type DrainRequest struct {
	// Requested is when the drain was requested; zero when unreadable.
	Requested time.Time
	// Deadline is when the worker must have handed back every task; zero
	// when unreadable.
	Deadline time.Time
}

// ErrUnreadableDrainRequest is wrapped by ParseDrainRequest's error when a
// pod carries a drain request that cannot be read: one annotation missing,
// or not an RFC 3339 time.
//
// The rule for such a request, on both sides: it is still a request, and
// the pod is draining (it stops pulling and takes a drain slot), because
// whoever wrote it meant the pod to go. The operator writes both
// annotations again with fresh times; the worker does not wait for that
// and drains at once, towards the deadline when that one reads, else
// towards now plus its own drain timeout (FallbackDeadline).
var ErrUnreadableDrainRequest = errors.New("unreadable drain request")

// ParseDrainRequest reads the drain annotations. requested reports whether
// the pod carries either of them, readable or not. When it does and one of
// them is missing or not an RFC 3339 time, err wraps
// ErrUnreadableDrainRequest and r holds what could be read.
func ParseDrainRequest(annotations map[string]string) (r DrainRequest, requested bool, err error) {
	req, hasReq := annotations[AnnotationDrainRequested]
	dl, hasDl := annotations[AnnotationDrainDeadline]
	if !hasReq && !hasDl {
		return DrainRequest{}, false, nil
	}
	var errs []error
	parse := func(key, v string, present bool) time.Time {
		if !present {
			errs = append(errs, fmt.Errorf("%s is missing", key))
			return time.Time{}
		}
		t, err := time.Parse(time.RFC3339, v)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s=%q is not an RFC 3339 time", key, v))
			return time.Time{}
		}
		return t
	}
	r.Requested = parse(AnnotationDrainRequested, req, hasReq)
	r.Deadline = parse(AnnotationDrainDeadline, dl, hasDl)
	if len(errs) > 0 {
		return r, true, fmt.Errorf("%w: %w", ErrUnreadableDrainRequest, errors.Join(errs...))
	}
	return r, true, nil
}

// FallbackDeadline is the deadline a worker drains towards when the
// request is unreadable (see ErrUnreadableDrainRequest): r's deadline when
// it was read, else now plus timeout.
func (r DrainRequest) FallbackDeadline(now time.Time, timeout time.Duration) time.Time {
	if !r.Deadline.IsZero() {
		return r.Deadline
	}
	return now.Add(timeout)
}

// DrainRequested reports whether the pod carries a drain request, readable
// or not.
func DrainRequested(pod *corev1.Pod) bool {
	_, requested, _ := ParseDrainRequest(pod.Annotations)
	return requested
}

// DrainAnnotations returns the two annotations that ask a pod to drain at
// now with the given timeout, as RFC 3339 times in UTC: the request with
// its fraction of a second (the operator's drain-duration metric is
// measured from it), the deadline rounded up to the next second so that
// it is never earlier than now plus timeout. ParseDrainRequest reads both.
func DrainAnnotations(now time.Time, timeout time.Duration) map[string]string {
	now = now.UTC()
	deadline := now.Add(timeout)
	if t := deadline.Truncate(time.Second); !t.Equal(deadline) {
		deadline = t.Add(time.Second)
	}
	return map[string]string{
		AnnotationDrainRequested: now.Format(time.RFC3339Nano),
		AnnotationDrainDeadline:  deadline.Format(time.RFC3339),
	}
}

// DrainedCondition returns the condition a worker sets on its pod once
// drained: PodConditionDrained=True, reason DrainedReasonDeadlineExceeded
// when tasks had to be handed back at the deadline, else
// DrainedReasonCompleted, with message (counts, for humans).
func DrainedCondition(deadlineExceeded bool, message string, now time.Time) corev1.PodCondition {
	reason := DrainedReasonCompleted
	if deadlineExceeded {
		reason = DrainedReasonDeadlineExceeded
	}
	return corev1.PodCondition{
		Type:               PodConditionDrained,
		Status:             corev1.ConditionTrue,
		Reason:             reason,
		Message:            message,
		LastTransitionTime: metav1.NewTime(now),
	}
}

// Drained returns the pod's Drained condition when it is True. Whether the
// operator honours it is its own decision (controllers/policy.DrainOf).
func Drained(pod *corev1.Pod) (*corev1.PodCondition, bool) {
	for i := range pod.Status.Conditions {
		c := &pod.Status.Conditions[i]
		if c.Type == PodConditionDrained && c.Status == corev1.ConditionTrue {
			return c, true
		}
	}
	return nil, false
}

// Draining reports whether the pod drains, and so takes one of its
// LoopDeployment's drain.maxConcurrent slots and serves no task: it is not
// finished (phase Failed or Succeeded: it runs nothing) and it carries a
// drain request (readable or not, whoever wrote it) or is terminating (its
// worker drains on SIGTERM). A Drained report alone does not make a pod
// draining: the contract fails closed, and a report nobody asked for is
// ignored.
func Draining(pod *corev1.Pod) bool {
	if pod.Status.Phase == corev1.PodFailed || pod.Status.Phase == corev1.PodSucceeded {
		return false
	}
	return pod.DeletionTimestamp != nil || DrainRequested(pod)
}

// HonoursDrained reports whether a Drained report on the pod counts: only
// on a pod asked to drain or terminating.
func HonoursDrained(pod *corev1.Pod) bool {
	_, drained := Drained(pod)
	return drained && (pod.DeletionTimestamp != nil || DrainRequested(pod))
}
