// Package contract is what the operator and the worker must agree on about
// a worker pod's drain (docs/design.md, "The drain contract"), in one
// place that both import:
//
//   - the two annotations by which the operator asks a pod to drain
//     (AnnotationDrainRequested, AnnotationDrainDeadline), how they are
//     written (DrainAnnotations) and read (ParseDrainRequest), with one
//     rule for values that cannot be read (ErrUnreadableDrainRequest);
//   - the pod condition by which the worker reports its drain
//     (PodConditionDrained and its reasons), how it is built
//     (DrainedCondition) and read (Drained), and when it counts
//     (HonoursDrained);
//   - which pods count as draining (Draining);
//   - how a drain is asked for (RequestDrain), so that a report older than
//     the request never answers it.
//
// Only RequestDrain talks to the API server; every other function takes a
// pod or its annotations and, where time matters, the time. The operator's decisions
// built on these (when to give up on a drain) live in controllers/policy;
// the worker's (when to stop pulling) in worker/podwatch and worker/loop.
package contract
