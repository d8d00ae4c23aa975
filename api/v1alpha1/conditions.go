package v1alpha1

// Condition types of a LoopDeployment. Each is set on every reconcile from
// what the operator observed; see docs/design.md for when each changes.
const (
	// ConditionAvailable is True when at least replicas - maxConcurrent
	// pods are ready and not draining (so a drain in progress does not by
	// itself make a loop unavailable), and replicas is not 0.
	ConditionAvailable = "Available"
	// ConditionProgressing is True while the operator is scaling or
	// rolling out a new revision, False once every pod is updated and the
	// count is right.
	ConditionProgressing = "Progressing"
	// ConditionDraining is True while at least one pod is draining.
	ConditionDraining = "Draining"
	// ConditionSuspended is True when spec.suspend is true.
	ConditionSuspended = "Suspended"
	// ConditionDegraded is True when something needs a human: pods cannot
	// be created, drains time out, or pods keep failing.
	ConditionDegraded = "Degraded"
	// ConditionQueueReady is True when the operator has provisioned the
	// queue and can read it; its reason says what is wrong otherwise.
	ConditionQueueReady = "QueueReady"
	// ConditionScalingActive is True when spec.autoscaling is set and the
	// autoscaler can decide; False when it holds the replica count because
	// the queue cannot be read.
	ConditionScalingActive = "ScalingActive"
)

// Reasons of the conditions above.
const (
	// ReasonMinimumReplicasAvailable (Available=True): enough pods are ready.
	ReasonMinimumReplicasAvailable = "MinimumReplicasAvailable"
	// ReasonMinimumReplicasUnavailable (Available=False): too few pods are
	// ready and not draining.
	ReasonMinimumReplicasUnavailable = "MinimumReplicasUnavailable"
	// ReasonScaledToZero (Available=False): replicas is 0 or the loop is
	// suspended.
	ReasonScaledToZero = "ScaledToZero"

	// ReasonScalingUp (Progressing=True): pods are being created.
	ReasonScalingUp = "ScalingUp"
	// ReasonScalingDown (Progressing=True): surplus pods are being drained.
	ReasonScalingDown = "ScalingDown"
	// ReasonRollingUpdate (Progressing=True): pods of an old revision are
	// being replaced.
	ReasonRollingUpdate = "RollingUpdate"
	// ReasonComplete (Progressing=False): every pod is of the current
	// revision and the count matches.
	ReasonComplete = "Complete"

	// ReasonDrainInProgress (Draining=True): pods are draining.
	ReasonDrainInProgress = "DrainInProgress"
	// ReasonNoDrains (Draining=False): no pod is draining.
	ReasonNoDrains = "NoDrains"

	// ReasonSuspendRequested (Suspended=True): spec.suspend is true.
	ReasonSuspendRequested = "SuspendRequested"
	// ReasonNotSuspended (Suspended=False): spec.suspend is false.
	ReasonNotSuspended = "NotSuspended"

	// ReasonAsExpected (Degraded=False): nothing needs attention.
	ReasonAsExpected = "AsExpected"
	// ReasonPodCreateFailed (Degraded=True): the API server refused to
	// create a worker pod; the message says why.
	ReasonPodCreateFailed = "PodCreateFailed"
	// ReasonDrainTimedOut (Degraded=True): a pod did not report Drained
	// by its deadline and was deleted anyway; its tasks are redelivered by
	// the queue.
	ReasonDrainTimedOut = "DrainTimedOut"
	// ReasonPodsFailing (Degraded=True): worker pods failed or keep
	// restarting.
	ReasonPodsFailing = "PodsFailing"
	// ReasonDeleting (Progressing=True): the LoopDeployment is being
	// deleted and its pods drain first.
	ReasonDeleting = "Deleting"

	// ReasonQueueProvisioned (QueueReady=True): the streams, consumers and
	// bucket exist as the spec says and the operator reads them.
	ReasonQueueProvisioned = "Provisioned"
	// ReasonQueueUnreachable (QueueReady=False): the NATS server cannot be
	// reached.
	ReasonQueueUnreachable = "Unreachable"
	// ReasonQueueUnauthorized (QueueReady=False): NATS refused the
	// credentials, or the credentials Secret is missing or unreadable.
	ReasonQueueUnauthorized = "Unauthorized"
	// ReasonQueueOwnedElsewhere (QueueReady=False): the stream belongs to
	// another LoopDeployment, named in the message; nothing was changed.
	ReasonQueueOwnedElsewhere = "OwnedElsewhere"
	// ReasonQueueProvisionFailed (QueueReady=False): JetStream refused to
	// create or update a stream, consumer or bucket; the message says why.
	ReasonQueueProvisionFailed = "ProvisionFailed"
	// ReasonQueueRetiring (QueueReady=True): the queue is ready and tasks
	// of a removed priority class or a renamed stream are being moved.
	ReasonQueueRetiring = "Retiring"

	// ReasonAutoscaling (ScalingActive=True): the autoscaler sets replicas
	// from the backlog.
	ReasonAutoscaling = "Autoscaling"
	// ReasonBacklogUnavailable (ScalingActive=False): the queue cannot be
	// read; the autoscaler holds the current count.
	ReasonBacklogUnavailable = "BacklogUnavailable"
	// ReasonAutoscalingSuspended (ScalingActive=False): spec.suspend is
	// true or the LoopDeployment is being deleted.
	ReasonAutoscalingSuspended = "Suspended"
)

// Event reasons the operator records on a LoopDeployment.
const (
	// EventScaledUp: pods were created.
	EventScaledUp = "ScaledUp"
	// EventDrainStarted: a pod was asked to drain.
	EventDrainStarted = "DrainStarted"
	// EventDeletedIdle: pods that held no task (unscheduled, or whose
	// workers announced no task in flight) were deleted without a drain
	// request; their SIGTERM drains anything picked up since.
	EventDeletedIdle = "DeletedIdle"
	// EventDrainCompleted: a pod reported Drained and was deleted.
	EventDrainCompleted = "DrainCompleted"
	// EventDrainTimedOut: a pod did not report Drained in time and was
	// deleted anyway.
	EventDrainTimedOut = "DrainTimedOut"
	// EventPodReplaced: a pod that failed or was deleted from outside was
	// replaced.
	EventPodReplaced = "PodReplaced"
	// EventAutoscaled: the autoscaler changed replicas; the message says
	// why (backlog, target, from and to).
	EventAutoscaled = "Autoscaled"
	// EventAutoscalingHeld: the autoscaler could not read the queue and
	// kept the current count.
	EventAutoscalingHeld = "AutoscalingHeld"
	// EventQueueProvisioned: the operator created or changed the queue.
	EventQueueProvisioned = "QueueProvisioned"
	// EventQueueNotReady: provisioning or reading the queue failed.
	EventQueueNotReady = "QueueNotReady"
	// EventTasksMoved: tasks of a removed priority class or a renamed
	// stream were moved.
	EventTasksMoved = "TasksMoved"
	// EventQueueDeleted: the queue was deleted (deletionPolicy Delete).
	EventQueueDeleted = "QueueDeleted"
	// EventUnrequestedDrainReport: a pod reports Drained although nobody
	// asked it to drain and it is not terminating; the report is ignored
	// and the pod kept (Warning).
	EventUnrequestedDrainReport = "UnrequestedDrainReport"
)
