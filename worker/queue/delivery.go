package queue

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Delivery is one delivery of a task to this worker.
type Delivery struct {
	// Msg is the JetStream message.
	Msg jetstream.Msg
	// Class is the index of the priority in the fetcher's list.
	Class int
	// Priority is the priority's name.
	Priority string
	// Kind is the task kind (Loop-Kind header).
	Kind string
	// ID is the task id (Loop-Task-Id header, or "seq-<stream sequence>").
	ID string
	// Attempt counts the deliveries of the task, this one included.
	Attempt uint64
	// Stored is when the stream stored the task.
	Stored time.Time
	// Received is when this worker received the delivery.
	Received time.Time
	// StreamSeq is the task's stream sequence.
	StreamSeq uint64
}

// NewDelivery reads the envelope of a message fetched from the consumer
// of priority (at index class).
func NewDelivery(m jetstream.Msg, class int, priority string) (*Delivery, error) {
	md, err := m.Metadata()
	if err != nil {
		return nil, fmt.Errorf("queue: read task metadata: %w", err)
	}
	d := &Delivery{
		Msg:       m,
		Class:     class,
		Priority:  priority,
		Kind:      m.Headers().Get(HeaderKind),
		ID:        m.Headers().Get(HeaderTaskID),
		Attempt:   md.NumDelivered,
		Stored:    md.Timestamp,
		Received:  time.Now(),
		StreamSeq: md.Sequence.Stream,
	}
	if d.ID == "" {
		d.ID = "seq-" + strconv.FormatUint(md.Sequence.Stream, 10)
	}
	return d, nil
}

// Payload returns the task's payload.
func (d *Delivery) Payload() []byte { return d.Msg.Data() }

// Ack acknowledges a task that succeeded; the stream removes it.
func (d *Delivery) Ack() error { return d.Msg.Ack() }

// Retry asks the server to redeliver the task after delay.
func (d *Delivery) Retry(delay time.Duration) error { return d.Msg.NakWithDelay(delay) }

// HandBack asks the server to redeliver the task at once, to any worker.
func (d *Delivery) HandBack() error { return d.Msg.Nak() }

// InProgress resets the server's redelivery timer of the task.
func (d *Delivery) InProgress() error { return d.Msg.InProgress() }

// maxErrorHeader bounds the Loop-Error header of a dead letter.
const maxErrorHeader = 4 << 10

// DeadLetter publishes the task with its last error to the dead-letter
// subject and then acknowledges it, so it leaves the work queue. The dead
// letter's Nats-Msg-Id is derived from the stream sequence, so doing it
// twice (a crash between the two steps) stores it once.
func (d *Delivery) DeadLetter(ctx context.Context, js jetstream.JetStream, names Names, cause error) error {
	m := nats.NewMsg(names.DeadSubject)
	m.Data = d.Msg.Data()
	m.Header.Set(HeaderKind, d.Kind)
	m.Header.Set(HeaderTaskID, d.ID)
	m.Header.Set(HeaderPriority, d.Priority)
	msg := "unknown error"
	if cause != nil {
		msg = cause.Error()
	}
	if len(msg) > maxErrorHeader {
		msg = msg[:maxErrorHeader]
	}
	m.Header.Set(HeaderError, msg)
	m.Header.Set(HeaderAttempts, strconv.FormatUint(d.Attempt, 10))
	m.Header.Set(HeaderFailedAt, time.Now().UTC().Format(time.RFC3339))
	m.Header.Set(jetstream.MsgIDHeader, names.Stream+"-"+strconv.FormatUint(d.StreamSeq, 10))
	if _, err := js.PublishMsg(ctx, m, jetstream.WithExpectStream(names.DeadStream)); err != nil {
		return fmt.Errorf("queue: dead-letter task %s: %w", d.ID, err)
	}
	if err := d.Msg.DoubleAck(ctx); err != nil {
		return fmt.Errorf("queue: ack dead-lettered task %s: %w", d.ID, err)
	}
	return nil
}
