package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// DeletionPolicy says what happens to a LoopDeployment's queue when the
// LoopDeployment is deleted.
// +kubebuilder:validation:Enum=Retain;Delete
type DeletionPolicy string

const (
	// DeletionPolicyRetain keeps the streams, consumers and buckets, with
	// their pending tasks, dead letters and results, once the pods are
	// gone; a LoopDeployment created again with the same stream name (and
	// so the same namespace and name, or the same spec.queue.nats.stream)
	// adopts them and serves the tasks.
	DeletionPolicyRetain DeletionPolicy = "Retain"
	// DeletionPolicyDelete deletes the work-queue stream (with any task
	// still pending), its consumers, the dead-letter and result streams and
	// the checkpoint bucket once the pods are drained and gone.
	DeletionPolicyDelete DeletionPolicy = "Delete"
)

// AutoscalingSpec makes the operator set replicas from the queue's backlog.
//
// +kubebuilder:validation:XValidation:rule="!has(self.minReplicas) || self.minReplicas <= self.maxReplicas",message="autoscaling.minReplicas must not be greater than autoscaling.maxReplicas"
// +kubebuilder:validation:XValidation:rule="has(self.targetBacklogPerReplica) || has(self.targetInFlightUtilization)",message="autoscaling needs a target: targetBacklogPerReplica, targetInFlightUtilization or both"
type AutoscalingSpec struct {
	// minReplicas is the fewest pods the autoscaler keeps. 0 lets the loop
	// scale to zero once its queue has been empty for scaleToZeroAfter; the
	// first pending task then brings one pod back. Defaults to 1.
	// +kubebuilder:default=1
	// +kubebuilder:validation:Minimum=0
	// +optional
	MinReplicas *int32 `json:"minReplicas,omitempty"`

	// maxReplicas is the most pods the autoscaler runs.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=10000
	// +required
	MaxReplicas int32 `json:"maxReplicas"`

	// targetBacklogPerReplica is the number of tasks, pending or in flight
	// (delivered and not yet acknowledged, delayed retries included), that
	// one pod should have: replicas = ceil(tasks / target).
	// +kubebuilder:validation:Minimum=1
	// +optional
	TargetBacklogPerReplica *int32 `json:"targetBacklogPerReplica,omitempty"`

	// targetInFlightUtilization is the share of the pods' pool capacity
	// (pool.maxWorkers per pod), in percent, that tasks in flight should
	// use: replicas = ceil(inFlight / (maxWorkers * target / 100)). With
	// both targets the larger count wins.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=100
	// +optional
	TargetInFlightUtilization *int32 `json:"targetInFlightUtilization,omitempty"`

	// scaleToZeroAfter is how long the queue must hold no task, pending or
	// in flight, before a loop with minReplicas 0 goes to zero pods.
	// Defaults to 5m.
	// +kubebuilder:default="5m"
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('0s')",message="autoscaling.scaleToZeroAfter must be a duration such as 5m"
	// +optional
	ScaleToZeroAfter *metav1.Duration `json:"scaleToZeroAfter,omitempty"`

	// behavior bounds how fast the autoscaler scales up and down, as in a
	// HorizontalPodAutoscaler (autoscaling/v2). Defaults: up at once, by
	// up to 100% or 4 pods per 15s, whichever is more; down after a
	// 300s stabilization window, by up to 100% per 15s.
	// +optional
	Behavior *AutoscalingBehavior `json:"behavior,omitempty"`
}

// AutoscalingBehavior bounds scaling in each direction.
type AutoscalingBehavior struct {
	// scaleUp bounds scaling up.
	// +optional
	ScaleUp *ScalingRules `json:"scaleUp,omitempty"`
	// scaleDown bounds scaling down.
	// +optional
	ScaleDown *ScalingRules `json:"scaleDown,omitempty"`
}

// ScalingPolicySelect chooses among several scaling policies.
// +kubebuilder:validation:Enum=Max;Min;Disabled
type ScalingPolicySelect string

const (
	// SelectMax uses the policy that allows the largest change.
	SelectMax ScalingPolicySelect = "Max"
	// SelectMin uses the policy that allows the smallest change.
	SelectMin ScalingPolicySelect = "Min"
	// SelectDisabled forbids scaling in this direction.
	SelectDisabled ScalingPolicySelect = "Disabled"
)

// ScalingRules are the rules of one direction.
type ScalingRules struct {
	// stabilizationWindowSeconds is how far back the autoscaler looks at
	// its own recommendations: scaling up takes the lowest of them, scaling
	// down the highest, so a backlog that hovers near a threshold does not
	// flap. Defaults to 0 up and 300 down.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=3600
	// +optional
	StabilizationWindowSeconds *int32 `json:"stabilizationWindowSeconds,omitempty"`

	// selectPolicy is Max, Min or Disabled. Defaults to Max.
	// +optional
	SelectPolicy *ScalingPolicySelect `json:"selectPolicy,omitempty"`

	// policies limit the change over a period.
	// +kubebuilder:validation:MaxItems=10
	// +listType=atomic
	// +optional
	Policies []ScalingPolicy `json:"policies,omitempty"`
}

// ScalingPolicyType is the unit of a scaling policy.
// +kubebuilder:validation:Enum=Pods;Percent
type ScalingPolicyType string

const (
	// PodsScalingPolicy limits the change to a number of pods.
	PodsScalingPolicy ScalingPolicyType = "Pods"
	// PercentScalingPolicy limits the change to a percentage of the pods
	// at the start of the period.
	PercentScalingPolicy ScalingPolicyType = "Percent"
)

// ScalingPolicy allows at most value pods, or percent, of change over
// periodSeconds.
type ScalingPolicy struct {
	// type is Pods or Percent.
	// +required
	Type ScalingPolicyType `json:"type"`
	// value is the number of pods or the percentage.
	// +kubebuilder:validation:Minimum=1
	// +required
	Value int32 `json:"value"`
	// periodSeconds is the window the limit applies to.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1800
	// +required
	PeriodSeconds int32 `json:"periodSeconds"`
}

// QueueStatus is the backlog of the queue as the operator last recorded
// it. The operator polls the queue often and writes this only when a
// figure changes materially or a minute has passed, so it may lag the
// queue by that much; the operator's metrics carry every poll.
type QueueStatus struct {
	// stream is the work-queue stream the operator provisioned.
	// +optional
	Stream string `json:"stream,omitempty"`
	// pending counts the tasks not yet delivered, in every priority.
	// +optional
	Pending int64 `json:"pending"`
	// inFlight counts the tasks delivered and not yet acknowledged,
	// delayed retries included.
	// +optional
	InFlight int64 `json:"inFlight"`
	// redelivered counts the in-flight tasks delivered more than once.
	// +optional
	Redelivered int64 `json:"redelivered"`
	// deadLetters counts the tasks in the dead-letter stream.
	// +optional
	DeadLetters int64 `json:"deadLetters"`
	// oldestTaskTime is when the oldest unfinished task was submitted;
	// unset when the queue is empty. (No omitempty here and below: the
	// status is written as a whole with a JSON merge patch, where only an
	// explicit null clears a field; the API server prunes the nulls.)
	// +optional
	OldestTaskTime *metav1.Time `json:"oldestTaskTime"`
	// priorities holds the figures per priority class, then those of
	// retiring consumers (classes removed from spec.loop.priorities whose
	// tasks are being moved to the last listed class).
	// +listType=map
	// +listMapKey=name
	// +optional
	Priorities []PriorityQueueStatus `json:"priorities,omitempty"`
	// retiringStream is the previous stream of a loop whose stream was
	// renamed, while its tasks are being moved to the new one.
	// +optional
	RetiringStream string `json:"retiringStream"`
	// observedTime is when these figures were read.
	// +optional
	ObservedTime *metav1.Time `json:"observedTime,omitempty"`
}

// PriorityQueueStatus is the backlog of one priority class.
type PriorityQueueStatus struct {
	// name is the priority class.
	// +required
	Name string `json:"name"`
	// pending counts its tasks not yet delivered.
	// +optional
	Pending int64 `json:"pending"`
	// inFlight counts its tasks delivered and not yet acknowledged.
	// +optional
	InFlight int64 `json:"inFlight"`
	// redelivered counts its in-flight tasks delivered more than once.
	// +optional
	Redelivered int64 `json:"redelivered"`
	// retiring is true for a class no longer listed whose tasks are being
	// moved.
	// +optional
	Retiring bool `json:"retiring,omitempty"`
}

// AutoscalingStatus is what the autoscaler last decided.
type AutoscalingStatus struct {
	// desiredReplicas is the autoscaler's last recommendation.
	// +optional
	DesiredReplicas int32 `json:"desiredReplicas"`
	// lastScaleTime is when the autoscaler last changed replicas.
	// +optional
	LastScaleTime *metav1.Time `json:"lastScaleTime,omitempty"`
	// lastActiveTime is when the queue last held a task (for a queue that
	// has held none since the operator started, when the operator first
	// read it empty); a loop with minReplicas 0 scales to zero
	// scaleToZeroAfter later.
	// +optional
	LastActiveTime *metav1.Time `json:"lastActiveTime,omitempty"`
}
