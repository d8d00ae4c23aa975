package queue

import (
	"encoding/base64"
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

// ScheduledSubject returns the subject a delayed task of a priority waits
// on until its time: <subjectPrefix>.scheduled.<priority>.<TaskToken(id)>.
// No consumer reads it; the server publishes the task to its TaskSubject
// at the time (a JetStream message schedule) and removes it.
func (n Names) ScheduledSubject(priority, id string) string {
	return n.SubjectPrefix + ".scheduled." + priority + "." + TaskToken(id)
}

// ScheduledSubjects returns the wildcard of a priority's delayed tasks.
func (n Names) ScheduledSubjects(priority string) string {
	return n.SubjectPrefix + ".scheduled." + priority + ".>"
}

// TaskSubjects returns the wildcard subject the work-queue stream holds.
func (n Names) TaskSubjects() string {
	return n.SubjectPrefix + ".tasks.>"
}

// TaskToken returns the subject token that stands for a task id in the
// subjects of its result record and dead letter: the id's unpadded
// base64url encoding (RFC 4648 §5), since an id may hold characters that
// a subject token cannot ('.', '*', '>', white space).
func TaskToken(id string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(id))
}

// ResultSubjectOf returns the subject of the result records of a task:
// <subjectPrefix>.results.<TaskToken(id)>. The result stream keeps the
// last one per subject at hand, so a reader finds a task's record without
// reading the others.
func (n Names) ResultSubjectOf(id string) string { return n.ResultSubject() + "." + TaskToken(id) }

// DeadSubjectOf returns the subject of a task's dead letter:
// <subjectPrefix>.dead.<TaskToken(id)>.
func (n Names) DeadSubjectOf(id string) string { return n.DeadSubject + "." + TaskToken(id) }

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
