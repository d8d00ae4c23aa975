package v1alpha1

import (
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The names below are the contract between the operator and the worker
// (see docs/design.md, "The drain contract"). Both sides import them from
// here so that they cannot drift apart.
const (
	// LabelName is set on every worker pod to the name of the
	// LoopDeployment that owns it.
	LabelName = "loops.tenire.io/name"
	// LabelRevision is set on every worker pod to the hash of the pod
	// template and loop settings it was created from.
	LabelRevision = "loops.tenire.io/revision"

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

	// FinalizerDrain holds a LoopDeployment while its pods drain.
	FinalizerDrain = "loops.tenire.io/drain"

	// WorkerContainerName is the name of the container that runs the loop.
	// When no container has this name, the first container is the worker.
	WorkerContainerName = "worker"
	// WorkerAdminPortName is the name of the worker container's admin port
	// (health, readiness, metrics, status and drain).
	WorkerAdminPortName = "admin"
	// WorkerAdminPort is the default admin port of the worker.
	WorkerAdminPort int32 = 8081

	// EnvWorkerSettings is the environment variable that carries the
	// worker's WorkerSettings as JSON.
	EnvWorkerSettings = "LOOP_SETTINGS"
	// EnvPodName carries the pod's own name (downward API).
	EnvPodName = "POD_NAME"
	// EnvPodNamespace carries the pod's own namespace (downward API).
	EnvPodNamespace = "POD_NAMESPACE"
)

// WorkerSettings is what the operator tells a worker about its loop, as JSON
// in the EnvWorkerSettings environment variable.
type WorkerSettings struct {
	// name is the name of the LoopDeployment.
	Name string `json:"name"`
	// namespace is the namespace of the LoopDeployment.
	Namespace string `json:"namespace"`
	// loop holds the loop's settings, defaults applied.
	Loop LoopSpec `json:"loop"`
	// queue holds the queue's settings, defaults applied.
	Queue QueueSpec `json:"queue"`
	// stream is the resolved JetStream stream name.
	Stream string `json:"stream"`
	// subjectPrefix is the resolved subject prefix: tasks are published to
	// <subjectPrefix>.tasks.<priority>.
	SubjectPrefix string `json:"subjectPrefix"`
	// natsCredentialsFile is the path of the mounted NATS credentials
	// file, when queue.nats.credentialsSecretRef is set.
	// +optional
	NATSCredentialsFile string `json:"natsCredentialsFile,omitempty"`
	// drainTimeout is spec.drain.timeout: how long a drain started by
	// SIGTERM may take.
	DrainTimeout metav1.Duration `json:"drainTimeout"`
}

// QueueNames returns the JetStream stream and the subject prefix of the
// LoopDeployment namespace/name: spec.queue.nats.stream when set, otherwise
// LOOP_<namespace>_<name>; subjects start with loops.<namespace>.<name>.
// Characters that JetStream does not allow in names or subject tokens are
// replaced by '_'.
func QueueNames(namespace, name string, q NATSQueueSpec) (stream, subjectPrefix string) {
	clean := strings.NewReplacer(".", "_", "*", "_", ">", "_", " ", "_", "/", "_", "\\", "_")
	stream = q.Stream
	if stream == "" {
		stream = "LOOP_" + clean.Replace(namespace) + "_" + clean.Replace(name)
	}
	subjectPrefix = "loops." + clean.Replace(namespace) + "." + clean.Replace(name)
	return stream, subjectPrefix
}
