package queue

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
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
	// Attempt is the attempt number of this delivery. NewDelivery sets it
	// to Delivered; a consumer that records why the task came back (package
	// loop does, with DeliveryCounts) sets it to DeliveryCounts.Attempt, so
	// that hand-backs, deferrals and crashes do not count as attempts.
	Attempt uint64
	// Delivered is the server's delivery count (NumDelivered), this
	// delivery included.
	Delivered uint64
	// Stored is when the stream stored the task.
	Stored time.Time
	// Received is when this worker received the delivery.
	Received time.Time
	// StreamSeq is the task's stream sequence.
	StreamSeq uint64
	// Deadline is when the task expires (Loop-Deadline header), or zero.
	// A deadline that cannot be read expires the task at once: its
	// producer meant it to expire, and running it late may be wrong.
	Deadline time.Time
	// Result is the task's result, the body of its result record
	// (RecordResult); at most MaxResultSize bytes.
	Result []byte
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
		Delivered: md.NumDelivered,
		Stored:    md.Timestamp,
		Received:  time.Now(),
		StreamSeq: md.Sequence.Stream,
	}
	if d.ID == "" {
		d.ID = "seq-" + strconv.FormatUint(md.Sequence.Stream, 10)
	}
	if v := m.Headers().Get(HeaderDeadline); v != "" {
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			t = time.Unix(0, 1) // unreadable: expired
		}
		d.Deadline = t
	}
	return d, nil
}

// Expired reports whether the task's deadline has passed at now.
func (d *Delivery) Expired(now time.Time) bool {
	return !d.Deadline.IsZero() && now.After(d.Deadline)
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
	m := nats.NewMsg(names.DeadSubjectOf(d.ID))
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

// DeliveryCounts says why a task came back to the queue before: its
// failed attempts and its returns (hand-backs in a drain, deferrals by an
// open breaker, results that could not be recorded), which are not the
// task's fault. A worker stores them, before each NAK, where the next
// delivery finds them (package loop keeps them in the checkpoint bucket
// under CountsKey). Any other redelivery is a crash: the server
// redelivered the task after AckWait because the worker holding it died,
// or lost its connection, without a word.
type DeliveryCounts struct {
	// Failures counts the attempts that failed (errors, timeouts, panics,
	// stuck handlers).
	Failures uint64
	// Returns counts the deliveries handed back without a failure.
	Returns uint64
}

// Attempt returns the attempt number of the next delivery: one more than
// the failures.
func (c DeliveryCounts) Attempt() uint64 { return c.Failures + 1 }

// Crashes returns how many of delivered-1 earlier deliveries ended
// without a recorded failure or return: the crashes of the workers that
// held the task.
func (c DeliveryCounts) Crashes(delivered uint64) uint64 {
	known := c.Failures + c.Returns
	if delivered <= 1 || known < c.Failures || known >= delivered-1 {
		return 0
	}
	return delivered - 1 - known
}

// countsVersion starts an encoded DeliveryCounts.
const countsVersion = "v1"

// MarshalText encodes the counts as "v1 <failures> <returns>".
func (c DeliveryCounts) MarshalText() ([]byte, error) {
	return []byte(countsVersion + " " + strconv.FormatUint(c.Failures, 10) + " " + strconv.FormatUint(c.Returns, 10)), nil
}

// ErrBadCounts is wrapped by the error of UnmarshalText for a value that
// MarshalText did not write.
var ErrBadCounts = errors.New("queue: bad delivery counts")

// UnmarshalText decodes what MarshalText wrote.
func (c *DeliveryCounts) UnmarshalText(b []byte) error {
	f := strings.Split(string(b), " ")
	if len(f) != 3 || f[0] != countsVersion {
		return fmt.Errorf("%w %q", ErrBadCounts, b)
	}
	failures, err1 := parseCount(f[1])
	returns, err2 := parseCount(f[2])
	if err := errors.Join(err1, err2); err != nil {
		return fmt.Errorf("%w %q: %w", ErrBadCounts, b, err)
	}
	c.Failures, c.Returns = failures, returns
	return nil
}

// parseCount accepts only the canonical decimal form, so that decoding
// and encoding are inverse.
func parseCount(s string) (uint64, error) {
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, err
	}
	if strconv.FormatUint(n, 10) != s {
		return 0, fmt.Errorf("count %q is not in canonical form", s)
	}
	return n, nil
}

// CountsKey returns the key of a task's DeliveryCounts in the checkpoint
// bucket, given the key of its checkpoint (checkpoint.Key): "n." and that
// key, so the two never collide.
func CountsKey(checkpointKey string) string { return "n." + checkpointKey }
