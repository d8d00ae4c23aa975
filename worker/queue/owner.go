package queue

import (
	"errors"
	"fmt"
)

// Stream metadata keys that record which LoopDeployment owns a loop's
// streams. The operator writes them when it provisions the queue and checks
// them before it changes anything, so that two LoopDeployments that name
// the same stream never rewrite each other's queue.
const (
	MetaOwnerNamespace = "loops.tenire.io/owner-namespace"
	MetaOwnerName      = "loops.tenire.io/owner-name"
	MetaOwnerUID       = "loops.tenire.io/owner-uid"
)

// Owner identifies the LoopDeployment that owns a queue.
type Owner struct {
	Namespace, Name, UID string
}

// Same reports whether o and other are the same LoopDeployment: the same
// namespace and name. The uid is recorded but not compared, so that a
// LoopDeployment deleted with deletionPolicy Retain and created again
// takes its queue back; two LoopDeployments never share a namespace and
// name at once.
func (o Owner) Same(other Owner) bool {
	return o.Namespace == other.Namespace && o.Name == other.Name
}

// String returns namespace/name (uid).
func (o Owner) String() string { return fmt.Sprintf("%s/%s (uid %s)", o.Namespace, o.Name, o.UID) }

// metadata returns o as stream metadata.
func (o Owner) metadata() map[string]string {
	return map[string]string{MetaOwnerNamespace: o.Namespace, MetaOwnerName: o.Name, MetaOwnerUID: o.UID}
}

// OwnerOf reads the owner recorded in stream metadata; ok is false when the
// stream records none (it was created by a worker of an earlier version, or
// by hand).
func OwnerOf(meta map[string]string) (o Owner, ok bool) {
	o = Owner{Namespace: meta[MetaOwnerNamespace], Name: meta[MetaOwnerName], UID: meta[MetaOwnerUID]}
	return o, o.UID != ""
}

// ErrOwnedElsewhere is wrapped by the error of Ensure when the stream
// belongs to another LoopDeployment.
var ErrOwnedElsewhere = errors.New("queue: stream owned by another LoopDeployment")

// ErrNotProvisioned is wrapped by the error of Bind when a stream, a
// consumer or the bucket does not exist yet.
var ErrNotProvisioned = errors.New("queue: not provisioned")

// OwnedElsewhereError says who owns a stream that Ensure would not touch.
type OwnedElsewhereError struct {
	Stream string
	Owner  Owner
}

func (e *OwnedElsewhereError) Error() string {
	return fmt.Sprintf("stream %s belongs to LoopDeployment %s", e.Stream, e.Owner)
}

// Is makes errors.Is(err, ErrOwnedElsewhere) true.
func (e *OwnedElsewhereError) Is(target error) bool { return target == ErrOwnedElsewhere }
