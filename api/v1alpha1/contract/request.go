package contract

import (
	"context"
	"fmt"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// RequestDrain asks pod to drain at now with the given timeout: it sets
// DrainAnnotations with a merge patch through c. The operator and
// `kubectl loops drain` both ask through it.
//
// A Drained report already on the pod answers no request: HonoursDrained
// ignores it, and it would count the moment a request appeared beside it.
// So it is removed first, with a patch of pods/status, and the request is
// then written only if nothing changed the pod in between (the patch
// carries the resourceVersion the removal left). A Drained report beside a
// request was therefore written after the request, whatever the clocks of
// the operator and the worker say: a report nobody asked for never leads to
// a deletion. A worker that drained before it was asked (POST /drain)
// reports again when the request comes.
//
// Errors are the API server's, wrapped (a conflict means the pod changed
// between the two patches: ask again later). pod is updated when the
// request was written and left as it was otherwise.
func RequestDrain(ctx context.Context, c client.Client, pod *corev1.Pod, now time.Time, timeout time.Duration) error {
	orig := pod.DeepCopy()
	var opts []client.MergeFromOption
	if _, stale := Drained(pod); stale {
		before := pod.DeepCopy()
		pod.Status.Conditions = slices.DeleteFunc(pod.Status.Conditions, func(c corev1.PodCondition) bool {
			return c.Type == PodConditionDrained
		})
		// A merge patch replaces the whole list; the lock makes that safe
		// against a kubelet or worker writing a condition meanwhile.
		if err := c.Status().Patch(ctx, pod, client.MergeFromWithOptions(before, client.MergeFromWithOptimisticLock{})); err != nil {
			*pod = *orig
			return fmt.Errorf("removing the Drained report nobody asked for from pod %s before asking it to drain: %w", pod.Name, err)
		}
		opts = append(opts, client.MergeFromWithOptimisticLock{})
	}
	before := pod.DeepCopy()
	if pod.Annotations == nil {
		pod.Annotations = map[string]string{}
	}
	for k, v := range DrainAnnotations(now, timeout) {
		pod.Annotations[k] = v
	}
	if err := c.Patch(ctx, pod, client.MergeFromWithOptions(before, opts...)); err != nil {
		*pod = *orig
		return fmt.Errorf("asking pod %s to drain: %w", pod.Name, err)
	}
	return nil
}
