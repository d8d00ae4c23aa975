package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The names below are shared by the operator, the worker and the plugin
// (labels, environment, ports); both sides import them from here so that
// they cannot drift apart. The drain contract itself (annotations, the
// Drained condition, how to read them) is package contract.
const (
	// MaxNameLength is the longest LoopDeployment name (the CRD rejects
	// longer ones): its pods are named <name>-<5 random characters> by
	// generateName, which truncates a longer prefix, and that name must
	// stay a DNS label of at most 63 characters (it is the pod's hostname);
	// the name is also the value of LabelName (at most 63).
	MaxNameLength = 63 - len("-") - 5

	// LabelName is set on every worker pod to the name of the
	// LoopDeployment that owns it.
	LabelName = "loops.tenire.io/name"
	// LabelRevision is set on every worker pod to the hash of the pod
	// template and loop settings it was created from.
	LabelRevision = "loops.tenire.io/revision"

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
