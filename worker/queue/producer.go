package queue

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Envelope header names; see the package documentation.
const (
	HeaderKind     = "Loop-Kind"
	HeaderTaskID   = "Loop-Task-Id"
	HeaderPriority = "Loop-Priority"
	HeaderError    = "Loop-Error"
	HeaderAttempts = "Loop-Attempts"
	HeaderFailedAt = "Loop-Failed-At"
	// HeaderDeadline is the time, RFC 3339 with nanoseconds, after which
	// a task that has not started is dead-lettered as expired instead of
	// run.
	HeaderDeadline = "Loop-Deadline"
	// HeaderSchedule and HeaderScheduleTarget are JetStream's message
	// schedule headers (nats-server 2.12+), which delay a task: "@at
	// <RFC 3339 time>" and the task subject it is published to then.
	HeaderSchedule       = "Nats-Schedule"
	HeaderScheduleTarget = "Nats-Schedule-Target"
)

// Task is a task to submit.
type Task struct {
	// ID identifies the task; the stream drops a second task with the same
	// id within its duplicate window. Optional.
	ID string
	// Kind selects the handler. Required.
	Kind string
	// Priority is the priority class. Default DefaultPriority.
	Priority string
	// Payload is the handler's input.
	Payload []byte
	// NotBefore, when later than now, delays the task: the stream keeps it
	// aside (a JetStream message schedule) and queues it at that time, to
	// the millisecond or so. Needs an ID.
	NotBefore time.Time
	// Deadline, when set, is when the task expires: a worker that gets it
	// later dead-letters it (error "expired") without running it.
	Deadline time.Time
}

// ErrInvalidTask is wrapped by the error of Submit for a task that cannot
// be sent.
var ErrInvalidTask = errors.New("queue: invalid task")

// Producer submits tasks to a loop's stream. It is safe for concurrent use.
type Producer struct {
	js    jetstream.JetStream
	names Names
}

// NewProducer returns a producer for the loop with the given names.
func NewProducer(js jetstream.JetStream, names Names) *Producer {
	return &Producer{js: js, names: names}
}

func (p *Producer) msg(t Task) (*nats.Msg, error) {
	if t.Kind == "" {
		return nil, fmt.Errorf("%w: kind is empty", ErrInvalidTask)
	}
	if t.Priority == "" {
		t.Priority = DefaultPriority
	}
	if err := ValidatePriority(t.Priority); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidTask, err)
	}
	m := nats.NewMsg(p.names.TaskSubject(t.Priority))
	if !t.NotBefore.IsZero() && t.NotBefore.After(time.Now()) {
		if t.ID == "" {
			return nil, fmt.Errorf("%w: a delayed task needs an id", ErrInvalidTask)
		}
		m = nats.NewMsg(p.names.ScheduledSubject(t.Priority, t.ID))
		m.Header.Set(HeaderSchedule, "@at "+t.NotBefore.UTC().Format(time.RFC3339Nano))
		m.Header.Set(HeaderScheduleTarget, p.names.TaskSubject(t.Priority))
	}
	m.Header.Set(HeaderKind, t.Kind)
	if t.ID != "" {
		m.Header.Set(HeaderTaskID, t.ID)
		m.Header.Set(jetstream.MsgIDHeader, t.ID)
	}
	if !t.Deadline.IsZero() {
		m.Header.Set(HeaderDeadline, t.Deadline.UTC().Format(time.RFC3339Nano))
	}
	m.Data = t.Payload
	return m, nil
}

// Submit publishes one task and waits for the stream to store it. It
// returns the stream sequence and whether the stream dropped it as a
// duplicate of an earlier task with the same id.
func (p *Producer) Submit(ctx context.Context, t Task) (seq uint64, duplicate bool, err error) {
	m, err := p.msg(t)
	if err != nil {
		return 0, false, err
	}
	ack, err := p.js.PublishMsg(ctx, m, jetstream.WithExpectStream(p.names.Stream))
	if err != nil {
		return 0, false, fmt.Errorf("queue: submit %s task %q: %w", t.Kind, t.ID, err)
	}
	return ack.Sequence, ack.Duplicate, nil
}

// SubmitBatch publishes tasks without waiting for each, then waits for all
// of them to be stored. It returns the first error; tasks after an invalid
// one are not sent.
func (p *Producer) SubmitBatch(ctx context.Context, tasks []Task) error {
	_, err := p.SubmitAll(ctx, tasks)
	return err
}

// Ack is the stream's acknowledgement of one submitted task.
type Ack struct {
	// Sequence is the task's stream sequence (the earlier task's, for a
	// duplicate).
	Sequence uint64
	// Duplicate reports that the stream dropped the task as a duplicate
	// of an earlier one with the same id within its duplicate window.
	Duplicate bool
}

// SubmitAll is SubmitBatch that also returns the acknowledgements, one per
// task in order, up to the first task that failed.
func (p *Producer) SubmitAll(ctx context.Context, tasks []Task) ([]Ack, error) {
	futures := make([]jetstream.PubAckFuture, 0, len(tasks))
	var firstErr error
	for _, t := range tasks {
		m, err := p.msg(t)
		if err != nil {
			firstErr = err
			break
		}
		f, err := p.js.PublishMsgAsync(m, jetstream.WithExpectStream(p.names.Stream))
		if err != nil {
			firstErr = fmt.Errorf("queue: submit %s task %q: %w", t.Kind, t.ID, err)
			break
		}
		futures = append(futures, f)
	}
	acks := make([]Ack, 0, len(futures))
	failed := false
	for _, f := range futures {
		select {
		case a := <-f.Ok():
			if !failed {
				acks = append(acks, Ack{Sequence: a.Sequence, Duplicate: a.Duplicate})
			}
		case err := <-f.Err():
			if !failed {
				failed = true
				firstErr = fmt.Errorf("queue: submit task on %s: %w", f.Msg().Subject, err)
			}
		case <-ctx.Done():
			return acks, ctx.Err()
		}
	}
	return acks, firstErr
}
