package v1alpha1

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// LoopDeploymentSpec is the desired state of a LoopDeployment.
//
// +kubebuilder:validation:XValidation:rule="has(self.template.spec) && size(self.template.spec.containers) > 0",message="template.spec.containers must list at least one container: the worker (named \"worker\", or the first one)"
type LoopDeploymentSpec struct {
	// replicas is the number of worker pods to run. Scaling down drains the
	// pods that go before they are deleted. Defaults to 1.
	// +kubebuilder:default=1
	// +kubebuilder:validation:Minimum=0
	// +optional
	Replicas *int32 `json:"replicas,omitempty"`

	// suspend, when true, drains and removes every worker pod but keeps the
	// LoopDeployment and its queue; setting it back to false scales up again.
	// +optional
	Suspend bool `json:"suspend,omitempty"`

	// template describes the worker pods. The worker container is the one
	// named "worker", or the first container. The operator adds the pod's
	// name and namespace, the loop settings (LOOP_SETTINGS) and the admin
	// port 8081 ("admin"); unless set here, a readiness probe on /readyz, a
	// liveness probe on /healthz, the service account <name>-loop-worker and
	// the restricted security context, field by field. The termination grace period is at
	// least drain.timeout plus 30s.
	// +required
	Template corev1.PodTemplateSpec `json:"template"`

	// loop holds the settings of the event loop and worker pool that runs
	// inside every worker pod.
	// +kubebuilder:default={}
	// +optional
	Loop LoopSpec `json:"loop,omitempty"`

	// queue is where the tasks come from.
	// +required
	Queue QueueSpec `json:"queue"`

	// drain says how pods are drained before they are deleted.
	// +kubebuilder:default={}
	// +optional
	Drain DrainSpec `json:"drain,omitempty"`

	// updateStrategy says how pods are replaced when the template, the loop
	// or the queue settings change.
	// +kubebuilder:default={}
	// +optional
	UpdateStrategy UpdateStrategy `json:"updateStrategy,omitempty"`

	// autoscaling, when set, makes the operator own the replica count: it
	// sets spec.replicas from the queue's backlog between minReplicas and
	// maxReplicas, draining every pod it removes (the pods with the fewest
	// tasks in flight go first). While it is set, a `kubectl scale` or an
	// HPA that writes replicas is overwritten at the next decision; suspend
	// still drains every pod and stops the autoscaler until it is lifted.
	// See docs/autoscaling.md.
	// +optional
	Autoscaling *AutoscalingSpec `json:"autoscaling,omitempty"`
}

// SchedulingMode chooses how the pool picks the next task among priority
// classes.
// +kubebuilder:validation:Enum=Weighted;Strict
type SchedulingMode string

const (
	// SchedulingWeighted gives each priority class its weight's share of the
	// pool when classes compete; no class starves.
	SchedulingWeighted SchedulingMode = "Weighted"
	// SchedulingStrict always runs the highest class that has work first;
	// lower classes run only when higher ones are empty.
	SchedulingStrict SchedulingMode = "Strict"
)

// LoopSpec holds the settings of the loop and its worker pool.
type LoopSpec struct {
	// pool sizes the worker pool of each pod.
	// +kubebuilder:default={}
	// +optional
	Pool PoolSpec `json:"pool,omitempty"`

	// priorities lists the priority classes, highest first. Tasks are
	// submitted to one class by name. Defaults to a single class "default".
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=16
	// +optional
	Priorities []PriorityClass `json:"priorities,omitempty"`

	// scheduling is Weighted (each class gets its weight's share under
	// contention) or Strict (higher classes always first). Defaults to
	// Weighted.
	// +kubebuilder:default=Weighted
	// +optional
	Scheduling SchedulingMode `json:"scheduling,omitempty"`

	// kindLimits caps how many tasks of one kind run at once in one pod,
	// e.g. {resize: 4}. Kinds not listed are limited only by the pool.
	// +kubebuilder:validation:MaxProperties=256
	// +kubebuilder:validation:XValidation:rule="self.all(k, self[k] >= 1)",message="kindLimits values must be at least 1; remove a kind to leave it unlimited"
	// +optional
	KindLimits map[string]int32 `json:"kindLimits,omitempty"`

	// taskTimeout is how long one attempt of a task may run before it is
	// cancelled and counted as failed. Defaults to 10m.
	// +kubebuilder:default="10m"
	// +kubebuilder:validation:XValidation:rule="duration(self) > duration('0s')",message="taskTimeout must be a positive duration such as 10m"
	// +optional
	TaskTimeout *metav1.Duration `json:"taskTimeout,omitempty"`

	// retry says how failed tasks are retried before they go to the
	// dead-letter subject.
	// +kubebuilder:default={}
	// +optional
	Retry RetrySpec `json:"retry,omitempty"`

	// circuitBreaker stops running a task kind that keeps failing.
	// +kubebuilder:default={}
	// +optional
	CircuitBreaker CircuitBreakerSpec `json:"circuitBreaker,omitempty"`
}

// PoolSpec sizes the worker pool of one pod.
// +kubebuilder:validation:XValidation:rule="!has(self.minWorkers) || !has(self.maxWorkers) || self.minWorkers <= self.maxWorkers",message="pool.minWorkers must not be greater than pool.maxWorkers"
type PoolSpec struct {
	// minWorkers is the number of workers kept even when idle. Defaults to 1.
	// +kubebuilder:default=1
	// +kubebuilder:validation:Minimum=0
	// +optional
	MinWorkers *int32 `json:"minWorkers,omitempty"`

	// maxWorkers is the most tasks one pod runs at once; the pool grows to
	// it under backlog. Defaults to 16.
	// +kubebuilder:default=16
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=100000
	// +optional
	MaxWorkers int32 `json:"maxWorkers,omitempty"`

	// idleTimeout is how long a worker above minWorkers may sit idle before
	// it stops. Defaults to 30s.
	// +kubebuilder:default="30s"
	// +kubebuilder:validation:XValidation:rule="duration(self) > duration('0s')",message="pool.idleTimeout must be a positive duration such as 30s"
	// +optional
	IdleTimeout *metav1.Duration `json:"idleTimeout,omitempty"`

	// prefetch is how many tasks a pod may hold beyond maxWorkers, queued
	// in the pod until a worker is free: fewer fetch round trips under a
	// flood of short tasks, at the price of tasks waiting behind a busy pod
	// while another may be idle. Heartbeats keep prefetched tasks from
	// redelivery; a drain hands them back at once. Unset (the default), each
	// pod sizes it to its tasks: about twice what its pool finishes during
	// one fetch round trip, at most maxWorkers, so none for tasks much
	// longer than the round trip. 0 turns it off (a pod pulls only the tasks
	// it can start); a positive value fixes it.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=100000
	// +optional
	Prefetch *int32 `json:"prefetch,omitempty"`
}

// PriorityClass is one class of tasks with its share of the pool.
type PriorityClass struct {
	// name identifies the class; tasks are submitted to it by name. Lower
	// case letters, digits and '-'.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	// +required
	Name string `json:"name"`

	// weight is the class's share of the pool under Weighted scheduling
	// (a class of weight 6 beside one of weight 2 gets three quarters).
	// Defaults to 1.
	// +kubebuilder:default=1
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1000
	// +optional
	Weight int32 `json:"weight,omitempty"`
}

// RetrySpec says how failed tasks are retried.
// +kubebuilder:validation:XValidation:rule="!has(self.initialBackoff) || !has(self.maxBackoff) || duration(self.initialBackoff) <= duration(self.maxBackoff)",message="retry.initialBackoff must not be greater than retry.maxBackoff"
type RetrySpec struct {
	// maxAttempts is how many times a task runs at most, the first attempt
	// included; after the last failure it goes to the dead-letter subject
	// with its error. Defaults to 5.
	// +kubebuilder:default=5
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1000
	// +optional
	MaxAttempts int32 `json:"maxAttempts,omitempty"`

	// initialBackoff is the delay before the first retry; it doubles with
	// each attempt, with jitter. Defaults to 1s.
	// +kubebuilder:default="1s"
	// +kubebuilder:validation:XValidation:rule="duration(self) > duration('0s')",message="retry.initialBackoff must be a positive duration such as 1s"
	// +optional
	InitialBackoff *metav1.Duration `json:"initialBackoff,omitempty"`

	// maxBackoff caps the delay between attempts. Defaults to 5m.
	// +kubebuilder:default="5m"
	// +kubebuilder:validation:XValidation:rule="duration(self) > duration('0s')",message="retry.maxBackoff must be a positive duration such as 5m"
	// +optional
	MaxBackoff *metav1.Duration `json:"maxBackoff,omitempty"`
}

// CircuitBreakerSpec stops running a task kind that keeps failing.
type CircuitBreakerSpec struct {
	// failureThreshold is how many consecutive failures of one kind open
	// its breaker; while open, that kind's tasks go back to the queue with
	// a delay. Defaults to 5.
	// +kubebuilder:default=5
	// +kubebuilder:validation:Minimum=1
	// +optional
	FailureThreshold int32 `json:"failureThreshold,omitempty"`

	// cooldown is how long a breaker stays open before it lets probe tasks
	// through (half-open). Defaults to 30s.
	// +kubebuilder:default="30s"
	// +kubebuilder:validation:XValidation:rule="duration(self) > duration('0s')",message="circuitBreaker.cooldown must be a positive duration such as 30s"
	// +optional
	Cooldown *metav1.Duration `json:"cooldown,omitempty"`
}

// QueueSpec says where the tasks come from.
type QueueSpec struct {
	// nats is a NATS JetStream server.
	// +required
	NATS NATSQueueSpec `json:"nats"`
}

// NATSQueueSpec is a NATS JetStream work queue.
type NATSQueueSpec struct {
	// url of the NATS server, e.g. nats://nats.nats:4222, or of several
	// servers of a cluster, separated by commas
	// (nats://nats-0.nats.nats:4222,nats://nats-1.nats.nats:4222); clients
	// learn the cluster's other servers from the one they reach.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:XValidation:rule="self.matches('^(nats|tls|ws|wss)://[^\\\\s]+$')",message="queue.nats.url must be a NATS URL such as nats://nats.nats:4222"
	// +kubebuilder:validation:XValidation:rule="!self.matches('(^|,)[a-z]+://[^/@,]*@')",message="queue.nats.url must not carry credentials (user:password@ or token@): put them in a Secret and name it in queue.nats.credentialsSecretRef"
	// +required
	URL string `json:"url"`

	// credentialsSecretRef names a Secret in the same namespace whose key
	// "nats.creds" holds NATS user credentials; it is mounted into the
	// worker pods.
	// +optional
	CredentialsSecretRef *corev1.LocalObjectReference `json:"credentialsSecretRef,omitempty"`

	// stream is the JetStream stream. Defaults to LOOP_<namespace>_<name>.
	// +kubebuilder:validation:MaxLength=200
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9_-]*$`
	// +optional
	Stream string `json:"stream,omitempty"`

	// ackWait is how long the server waits for a worker's acknowledgement
	// before it redelivers a task; workers send progress heartbeats for
	// longer tasks. Defaults to 30s.
	// +kubebuilder:default="30s"
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1s')",message="queue.nats.ackWait must be at least 1s"
	// +optional
	AckWait *metav1.Duration `json:"ackWait,omitempty"`

	// maxAckPending caps the tasks handed out and not yet acknowledged,
	// per priority class, across all pods. Defaults to 1000.
	// +kubebuilder:default=1000
	// +kubebuilder:validation:Minimum=1
	// +optional
	MaxAckPending int32 `json:"maxAckPending,omitempty"`

	// resultRetention is how long the queue keeps a record of each
	// completed task (stream <stream>_RESULTS), which `kubectl loops submit
	// --wait` reads to tell completed tasks from lost ones. 0s keeps no
	// records and saves one write per task. Defaults to 1h.
	// +kubebuilder:default="1h"
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('0s')",message="queue.nats.resultRetention must be 0s (keep no records) or a positive duration such as 1h"
	// +optional
	ResultRetention *metav1.Duration `json:"resultRetention,omitempty"`

	// duplicateWindow is how long the work-queue stream remembers task ids
	// (the Nats-Msg-Id header, which producers set to the task id): a task
	// submitted again with an id seen within the window is dropped as a
	// duplicate, and the producer's acknowledgement says so. Longer windows
	// cost server memory per id. Defaults to 2m.
	// +kubebuilder:default="2m"
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1s') && duration(self) <= duration('168h')",message="queue.nats.duplicateWindow must be between 1s and 168h (7 days)"
	// +optional
	DuplicateWindow *metav1.Duration `json:"duplicateWindow,omitempty"`

	// replicas is how many servers of a JetStream cluster keep a copy of
	// the queue: the work-queue, dead-letter and result streams and the
	// checkpoint bucket get this many replicas, and the consumers inherit
	// their stream's. 3 keeps the queue serving, with nothing lost, while
	// one server of a three-server cluster is down; it needs a cluster of
	// at least that many servers (list them in url). Changing it on an
	// existing queue updates the streams and the bucket in place: JetStream
	// copies their contents to the new replicas. Defaults to 1.
	// +kubebuilder:default=1
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=5
	// +kubebuilder:validation:XValidation:rule="self >= 1 && self <= 5",message="queue.nats.replicas must be from 1 to 5 (JetStream's limit), and no more than the servers of the NATS cluster"
	// +optional
	Replicas int32 `json:"replicas,omitempty"`

	// deletionPolicy says what happens to the queue (streams, consumers,
	// checkpoint bucket) once the LoopDeployment is deleted and its pods
	// are drained and gone: Retain (the default) keeps it with its pending
	// tasks and dead letters; Delete removes it with them.
	// +kubebuilder:default=Retain
	// +optional
	DeletionPolicy DeletionPolicy `json:"deletionPolicy,omitempty"`
}

// DrainSpec says how pods are drained before they are deleted.
type DrainSpec struct {
	// timeout is how long a draining pod may take to finish its in-flight
	// tasks; what is still running then is handed back to the queue. The
	// pods' termination grace period is this plus a margin. Defaults to 5m.
	// +kubebuilder:default="5m"
	// +kubebuilder:validation:XValidation:rule="duration(self) > duration('0s')",message="drain.timeout must be a positive duration such as 5m"
	// +optional
	Timeout *metav1.Duration `json:"timeout,omitempty"`

	// maxConcurrent is the most pods draining at once, as a number (at
	// least 1) or a percentage (1% to 100%, rounded up) of replicas, or of
	// the pods there are while scaling down from more. It is also the
	// maxUnavailable of the PodDisruptionBudget, so node drains keep to it
	// too. Defaults to 25%.
	// +kubebuilder:default="25%"
	// +kubebuilder:validation:XIntOrString
	// +kubebuilder:validation:XValidation:rule="type(self) == int ? self >= 1 : self.matches('^([1-9][0-9]?|100)%$')",message="drain.maxConcurrent must be a number of at least 1 or a percentage from 1% to 100%"
	// +optional
	MaxConcurrent *intstr.IntOrString `json:"maxConcurrent,omitempty"`
}

// UpdateStrategy says how pods are replaced when the template or settings
// change.
// +kubebuilder:validation:XValidation:rule="!has(self.maxUnavailable) || !has(self.maxSurge) || (type(self.maxSurge) == int ? self.maxSurge != 0 : self.maxSurge != '0%') || (type(self.maxUnavailable) == int ? self.maxUnavailable != 0 : self.maxUnavailable != '0%')",message="updateStrategy.maxSurge and updateStrategy.maxUnavailable cannot both be 0: a rolling update could neither start a new pod nor remove an old one",fieldPath=".maxUnavailable"
type UpdateStrategy struct {
	// maxSurge is how many new pods may run above replicas during an
	// update, as a number or a percentage of replicas (rounded up). New
	// pods start first; old ones are drained once new ones are Ready.
	// 0 drains old pods before their replacements start. Defaults to 25%.
	// +kubebuilder:default="25%"
	// +kubebuilder:validation:XIntOrString
	// +kubebuilder:validation:XValidation:rule="type(self) == int ? self >= 0 : self.matches('^([0-9]|[1-9][0-9]|100)%$')",message="updateStrategy.maxSurge must be a number of at least 0 or a percentage from 0% to 100%"
	// +optional
	MaxSurge *intstr.IntOrString `json:"maxSurge,omitempty"`

	// maxUnavailable is how many of replicas may be unavailable during an
	// update, as a number or a percentage of replicas (rounded down), as
	// in a Deployment: Ready old pods are drained (or, idle, deleted)
	// while at least replicas minus maxUnavailable pods stay Ready, so
	// old pods may go before their replacements are Ready. Every removal
	// still keeps to drain.maxConcurrent, and nothing a pod holds is lost
	// either way. Unset, it is 0 when maxSurge is above 0 (every replica
	// stays Ready) and drain.maxConcurrent when maxSurge is 0. Where both
	// resolve to 0, one pod may be unavailable, so that an update
	// progresses.
	// +kubebuilder:validation:XIntOrString
	// +kubebuilder:validation:XValidation:rule="type(self) == int ? self >= 0 : self.matches('^([0-9]|[1-9][0-9]|100)%$')",message="updateStrategy.maxUnavailable must be a number of at least 0 or a percentage from 0% to 100%"
	// +optional
	MaxUnavailable *intstr.IntOrString `json:"maxUnavailable,omitempty"`
}

// LoopDeploymentStatus is the observed state of a LoopDeployment.
type LoopDeploymentStatus struct {
	// observedGeneration is the generation this status was computed for.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// replicas counts the worker pods that exist and are not being
	// deleted, draining ones included.
	// +optional
	Replicas int32 `json:"replicas"`

	// readyReplicas counts the pods whose Ready condition is True.
	// +optional
	ReadyReplicas int32 `json:"readyReplicas"`

	// availableReplicas counts the ready pods that are not draining.
	// +optional
	AvailableReplicas int32 `json:"availableReplicas"`

	// updatedReplicas counts the pods of the current template revision
	// that are not draining.
	// +optional
	UpdatedReplicas int32 `json:"updatedReplicas"`

	// drainingReplicas counts the pods that drain: asked to drain, or
	// terminating while their worker may hold tasks. A terminating pod that
	// holds nothing (unscheduled, or its worker announced no task in
	// flight) is not counted.
	// +optional
	DrainingReplicas int32 `json:"drainingReplicas"`

	// selector is the label selector of the worker pods, for the scale
	// subresource (HPA).
	// +optional
	Selector string `json:"selector,omitempty"`

	// currentRevision is the revision that the oldest pods run.
	// +optional
	CurrentRevision string `json:"currentRevision,omitempty"`

	// updateRevision is the revision of the current template and settings.
	// +optional
	UpdateRevision string `json:"updateRevision,omitempty"`

	// conditions: Available, Progressing, Draining, Suspended and Degraded.
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// queue is the queue's backlog as last recorded.
	// +optional
	Queue *QueueStatus `json:"queue"`

	// autoscaling is what the autoscaler last decided, when
	// spec.autoscaling is set.
	// +optional
	Autoscaling *AutoscalingStatus `json:"autoscaling"`
}

// LoopDeployment runs a distributed task loop: a set of worker pods that
// pull tasks from a queue and are drained, never killed mid-task, when they
// go.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:subresource:scale:specpath=.spec.replicas,statuspath=.status.replicas,selectorpath=.status.selector
// +kubebuilder:resource:shortName=ld,categories=tenire
// +kubebuilder:validation:XValidation:rule="self.metadata.name.size() <= 57",message="metadata.name must be at most 57 characters: it is the value of the pods' loops.tenire.io/name label and the prefix of their names (<name>-<5 random characters>, a 63-character DNS label); choose a shorter name"
// +kubebuilder:printcolumn:name="Desired",type=integer,JSONPath=`.spec.replicas`
// +kubebuilder:printcolumn:name="Ready",type=integer,JSONPath=`.status.readyReplicas`
// +kubebuilder:printcolumn:name="Available",type=integer,JSONPath=`.status.availableReplicas`
// +kubebuilder:printcolumn:name="Draining",type=integer,JSONPath=`.status.drainingReplicas`
// +kubebuilder:printcolumn:name="Up-to-date",type=integer,JSONPath=`.status.updatedReplicas`
// +kubebuilder:printcolumn:name="Backlog",type=integer,JSONPath=`.status.queue.pending`
// +kubebuilder:printcolumn:name="In-flight",type=integer,JSONPath=`.status.queue.inFlight`,priority=1
// +kubebuilder:printcolumn:name="Suspended",type=boolean,JSONPath=`.spec.suspend`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type LoopDeployment struct {
	metav1.TypeMeta `json:",inline"`

	// metadata is the standard object metadata.
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec is the desired state.
	// +required
	Spec LoopDeploymentSpec `json:"spec"`

	// status is the observed state.
	// +optional
	Status LoopDeploymentStatus `json:"status,omitempty"`
}

// LoopDeploymentList is a list of LoopDeployments.
//
// +kubebuilder:object:root=true
type LoopDeploymentList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []LoopDeployment `json:"items"`
}
