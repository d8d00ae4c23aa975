package queue

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// PriorityBacklog is the backlog of one priority's consumer.
type PriorityBacklog struct {
	// Priority is the consumer's priority.
	Priority string
	// Pending counts the tasks not yet delivered.
	Pending uint64
	// InFlight counts the tasks delivered and not yet acknowledged,
	// tasks waiting for a delayed redelivery included.
	InFlight int
	// Redelivered counts the in-flight tasks delivered more than once.
	Redelivered int
	// Retiring is true for a consumer whose priority the loop no longer
	// lists: Retire moves its tasks to a listed priority.
	Retiring bool
}

// Backlog is what a loop's queue holds at one instant.
type Backlog struct {
	// Priorities are the backlogs of the listed priorities, in order,
	// then those of retiring consumers by name.
	Priorities []PriorityBacklog
	// DeadLetters counts the messages in the dead-letter stream.
	DeadLetters uint64
	// Oldest is when the oldest task still in the work-queue stream was
	// stored (zero when it is empty): a task stays there until it is
	// acknowledged, so this is the age of the oldest unfinished task.
	Oldest time.Time
}

// Demand returns the tasks pending and in flight in every consumer.
func (b Backlog) Demand() (pending uint64, inFlight int) {
	for _, p := range b.Priorities {
		pending += p.Pending
		inFlight += p.InFlight
	}
	return pending, inFlight
}

// Observe reads the backlog of the loop's queue: one request per consumer
// and stream, nothing written. priorities are the listed ones; every other
// consumer on the stream is reported as retiring. It wraps ErrNotProvisioned
// when the stream does not exist.
func Observe(ctx context.Context, js jetstream.JetStream, n Names, priorities []string) (Backlog, error) {
	var b Backlog
	s, err := js.Stream(ctx, n.Stream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return b, fmt.Errorf("%w: stream %s does not exist", ErrNotProvisioned, n.Stream)
	}
	if err != nil {
		return b, fmt.Errorf("queue: read stream %s: %w", n.Stream, err)
	}
	info := s.CachedInfo()
	if info.State.Msgs > 0 {
		// The first task, not a delayed one waiting aside.
		m, err := s.GetMsg(ctx, info.State.FirstSeq, jetstream.WithGetMsgSubject(n.TaskSubjects()))
		if err == nil {
			b.Oldest = m.Time
		} else if !errors.Is(err, jetstream.ErrMsgNotFound) {
			return b, fmt.Errorf("queue: read the oldest task of %s: %w", n.Stream, err)
		}
	}
	names := s.ConsumerNames(ctx)
	var all []string
	for name := range names.Name() {
		all = append(all, name)
	}
	if err := names.Err(); err != nil {
		return b, fmt.Errorf("queue: list the consumers of %s: %w", n.Stream, err)
	}
	slices.Sort(all)
	order := slices.Clone(priorities)
	for _, name := range all {
		if !slices.Contains(priorities, name) {
			order = append(order, name)
		}
	}
	for _, p := range order {
		c, err := s.Consumer(ctx, n.Consumer(p))
		if errors.Is(err, jetstream.ErrConsumerNotFound) {
			return b, fmt.Errorf("%w: consumer %s of stream %s does not exist", ErrNotProvisioned, p, n.Stream)
		}
		if err != nil {
			return b, fmt.Errorf("queue: read consumer %s of %s: %w", p, n.Stream, err)
		}
		ci := c.CachedInfo()
		b.Priorities = append(b.Priorities, PriorityBacklog{
			Priority: p, Pending: ci.NumPending, InFlight: ci.NumAckPending, Redelivered: ci.NumRedelivered,
			Retiring: !slices.Contains(priorities, p),
		})
	}
	if ds, err := js.Stream(ctx, n.DeadStream); err == nil {
		b.DeadLetters = ds.CachedInfo().State.Msgs
	} else if !errors.Is(err, jetstream.ErrStreamNotFound) {
		return b, fmt.Errorf("queue: read stream %s: %w", n.DeadStream, err)
	}
	return b, nil
}

// HeaderMovedFrom is set on a task that Retire moved, to the priority it
// was submitted to.
const HeaderMovedFrom = "Loop-Moved-From"

// Retire moves the pending tasks of a consumer whose priority the loop no
// longer lists to the priority to, at most batch of them, and deletes the
// consumer once it holds no task, pending or in flight. fromStream is the
// stream of that consumer: n.Stream when a priority was removed, the
// loop's previous stream when it was renamed (see RetireStream) (tasks a worker of
// an older revision still runs are acknowledged or come back to it, and a
// later call moves them). It returns how many tasks it moved and whether
// the consumer is gone.
//
// A task is published to its new subject before its old message is
// acknowledged, with a message id derived from its stream sequence, so a
// move repeated after a crash between the two is dropped as a duplicate by
// the stream: no task is lost, and none is doubled within the stream's
// duplicate window.
func Retire(ctx context.Context, js jetstream.JetStream, fromStream string, n Names, from, to string, batch int) (moved int, gone bool, err error) {
	c, err := js.Consumer(ctx, fromStream, n.Consumer(from))
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		return 0, true, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("queue: read consumer %s of %s: %w", from, fromStream, err)
	}
	info := c.CachedInfo()
	if info.NumPending == 0 && info.NumAckPending == 0 {
		if err := js.DeleteConsumer(ctx, fromStream, n.Consumer(from)); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
			return 0, false, fmt.Errorf("queue: delete retired consumer %s of %s: %w", from, fromStream, err)
		}
		return 0, true, nil
	}
	if info.NumPending == 0 {
		return 0, false, nil
	}
	msgs, err := c.FetchNoWait(batch)
	if err != nil {
		return 0, false, fmt.Errorf("queue: fetch from retired consumer %s: %w", from, err)
	}
	for m := range msgs.Messages() {
		meta, err := m.Metadata()
		if err != nil {
			return moved, false, fmt.Errorf("queue: retired task metadata: %w", err)
		}
		out := nats.NewMsg(n.TaskSubject(to))
		for k, v := range m.Headers() {
			out.Header[k] = v
		}
		if out.Header.Get(HeaderTaskID) == "" {
			out.Header.Set(HeaderTaskID, "seq-"+strconv.FormatUint(meta.Sequence.Stream, 10))
		}
		out.Header.Set(HeaderMovedFrom, from)
		out.Header.Set(jetstream.MsgIDHeader, fmt.Sprintf("moved-%s-%s-%d", fromStream, from, meta.Sequence.Stream))
		out.Data = m.Data()
		if _, err := js.PublishMsg(ctx, out, jetstream.WithExpectStream(n.Stream)); err != nil {
			_ = m.Nak()
			return moved, false, fmt.Errorf("queue: move task from %s to %s: %w", from, to, err)
		}
		if err := m.DoubleAck(ctx); err != nil {
			return moved, false, fmt.Errorf("queue: acknowledge moved task: %w", err)
		}
		moved++
	}
	if err := msgs.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) && !errors.Is(err, jetstream.ErrNoMessages) {
		return moved, false, fmt.Errorf("queue: fetch from retired consumer %s: %w", from, err)
	}
	return moved, false, nil
}

// RetireStream prepares the previous stream of a loop whose stream was
// renamed: it moves the old stream off the task subjects (onto
// <old>.retired, which nobody publishes to) so that the new stream can hold
// them, and keeps its messages and consumers, from which Retire then moves
// the tasks into the new stream. It returns the names of the old stream's
// consumers; the caller deletes the old stream (DeleteStream) once Retire
// reports every one of them gone. owner, when set, must match the old
// stream's recorded owner, or nothing is touched. exists is false when
// the old stream is gone already.
func RetireStream(ctx context.Context, js jetstream.JetStream, old string, owner *Owner) (consumers []string, exists bool, err error) {
	// The siblings hold the dead-letter and result subjects, which the new
	// stream's siblings take over; their messages stay where they are.
	oldNames := NewNames(old, "")
	for _, sibling := range []string{oldNames.DeadStream, oldNames.ResultStream()} {
		if err := resubject(ctx, js, sibling, owner); err != nil {
			return nil, false, err
		}
	}
	s, err := js.Stream(ctx, old)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("queue: read stream %s: %w", old, err)
	}
	if err := resubject(ctx, js, old, owner); err != nil {
		return nil, true, err
	}
	names := s.ConsumerNames(ctx)
	for name := range names.Name() {
		consumers = append(consumers, name)
	}
	if err := names.Err(); err != nil {
		return nil, true, fmt.Errorf("queue: list the consumers of %s: %w", old, err)
	}
	slices.Sort(consumers)
	return consumers, true, nil
}

// resubject moves a stream onto the single subject <name>.retired.
func resubject(ctx context.Context, js jetstream.JetStream, name string, owner *Owner) error {
	s, err := js.Stream(ctx, name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("queue: read stream %s: %w", name, err)
	}
	cfg := s.CachedInfo().Config
	if have, ok := OwnerOf(cfg.Metadata); owner != nil && ok && !have.Same(*owner) {
		return &OwnedElsewhereError{Stream: name, Owner: have}
	}
	retired := []string{name + ".retired"}
	if slices.Equal(cfg.Subjects, retired) {
		return nil
	}
	cfg.Subjects = retired
	if _, err := js.UpdateStream(ctx, cfg); err != nil {
		return fmt.Errorf("queue: move stream %s off its subjects: %w", name, err)
	}
	return nil
}
