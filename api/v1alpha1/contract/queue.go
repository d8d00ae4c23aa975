package contract

import (
	"strings"
	"time"

	loopsv1alpha1 "github.com/tenire/loop-operator/api/v1alpha1"
)

// Queue is the set-up of a LoopDeployment's JetStream queue, defaults
// applied, as its workers create it and as anything else that touches the
// queue (kubectl loops submit, status, deadletters) must see it, so that
// neither rewrites the other's streams and consumers.
type Queue struct {
	// Stream is the work-queue stream (QueueNames).
	Stream string
	// SubjectPrefix starts every subject of the loop (QueueNames): tasks
	// are published to <SubjectPrefix>.tasks.<priority>.
	SubjectPrefix string
	// Priorities are the priority classes' names, in the spec's order
	// (highest first), one consumer each.
	Priorities []string
	// AckWait is queue.nats.ackWait.
	AckWait time.Duration
	// MaxAckPending is queue.nats.maxAckPending.
	MaxAckPending int
	// Replicas is queue.nats.replicas, the streams' replication factor.
	Replicas int
	// ResultRetention is queue.nats.resultRetention; 0 keeps no results.
	ResultRetention time.Duration
	// DuplicateWindow is queue.nats.duplicateWindow: how long the stream
	// drops a task whose id it has seen.
	DuplicateWindow time.Duration
}

// QueueOf returns the queue of ld, with the API's defaults
// (v1alpha1.WithDefaults) applied.
func QueueOf(ld *loopsv1alpha1.LoopDeployment) Queue {
	spec := loopsv1alpha1.WithDefaults(ld.Spec)
	n := spec.Queue.NATS
	q := Queue{
		AckWait:         n.AckWait.Duration,
		MaxAckPending:   int(n.MaxAckPending),
		Replicas:        int(n.Replicas),
		ResultRetention: n.ResultRetention.Duration,
		DuplicateWindow: n.DuplicateWindow.Duration,
	}
	q.Stream, q.SubjectPrefix = QueueNames(ld.Namespace, ld.Name, n)
	for _, p := range spec.Loop.Priorities {
		q.Priorities = append(q.Priorities, p.Name)
	}
	return q
}

// QueueNames returns the JetStream stream and the subject prefix of the
// LoopDeployment namespace/name: spec.queue.nats.stream when set, otherwise
// LOOP_<namespace>_<name>; subjects start with loops.<namespace>.<name>.
// Characters that JetStream does not allow in names or subject tokens are
// replaced by '_'.
func QueueNames(namespace, name string, q loopsv1alpha1.NATSQueueSpec) (stream, subjectPrefix string) {
	clean := strings.NewReplacer(".", "_", "*", "_", ">", "_", " ", "_", "/", "_", "\\", "_")
	stream = q.Stream
	if stream == "" {
		stream = "LOOP_" + clean.Replace(namespace) + "_" + clean.Replace(name)
	}
	subjectPrefix = "loops." + clean.Replace(namespace) + "." + clean.Replace(name)
	return stream, subjectPrefix
}
