package queue

import (
	"fmt"
	"regexp"
)

// Names holds the JetStream names of one loop. Create it with NewNames.
type Names struct {
	// Stream is the work-queue stream of the tasks.
	Stream string
	// SubjectPrefix starts every subject of the loop.
	SubjectPrefix string
	// DeadStream is the limits-retention stream of the dead letters.
	DeadStream string
	// DeadSubject is the subject dead letters are published to.
	DeadSubject string
	// CheckpointBucket is the key-value bucket of task checkpoints.
	CheckpointBucket string
}

// NewNames derives every name from the stream and the subject prefix.
func NewNames(stream, subjectPrefix string) Names {
	return Names{
		Stream:           stream,
		SubjectPrefix:    subjectPrefix,
		DeadStream:       stream + "_DEAD",
		DeadSubject:      subjectPrefix + ".dead",
		CheckpointBucket: stream + "_CHECKPOINTS",
	}
}

// TaskSubject returns the subject tasks of a priority are published to.
func (n Names) TaskSubject(priority string) string {
	return n.SubjectPrefix + ".tasks." + priority
}

// TaskSubjects returns the wildcard subject the work-queue stream holds.
func (n Names) TaskSubjects() string {
	return n.SubjectPrefix + ".tasks.>"
}

// Consumer returns the name of the durable consumer of a priority.
func (n Names) Consumer(priority string) string {
	return priority
}

var (
	nameRE     = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)
	subjectRE  = regexp.MustCompile(`^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$`)
	priorityRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]*[a-z0-9])?$`)
)

// Validate reports whether the names are usable by JetStream.
func (n Names) Validate() error {
	if !nameRE.MatchString(n.Stream) {
		return fmt.Errorf("queue: stream name %q: want letters, digits, '-' and '_'", n.Stream)
	}
	if !subjectRE.MatchString(n.SubjectPrefix) {
		return fmt.Errorf("queue: subject prefix %q: want dot-separated tokens of letters, digits, '-' and '_'", n.SubjectPrefix)
	}
	return nil
}

// ValidatePriority reports whether name can be a priority (and so a
// consumer name and a subject token): lower case letters, digits and '-'.
func ValidatePriority(name string) error {
	if !priorityRE.MatchString(name) {
		return fmt.Errorf("queue: priority %q: want lower case letters, digits and '-'", name)
	}
	return nil
}
