package queue

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
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

// Retire moves the tasks of a consumer whose priority the loop no longer
// lists to the priority to, at most batch pending ones and batch delayed
// ones per call, and deletes the consumer once it holds no task, pending
// or in flight, and no delayed task of its priority waits in fromStream.
// fromStream is the stream of that consumer: n.Stream when a priority was
// removed, the loop's previous stream when it was renamed (see
// RetireStream) (tasks a worker of an older revision still runs are
// acknowledged or come back to it, and a later call moves them). It
// returns how many tasks it moved and whether the consumer is gone.
//
// A task is published to its new subject before its old message is
// acknowledged (or, for a delayed one, deleted), with a message id derived
// from its stream sequence, so a move repeated after a crash between the
// two is dropped as a duplicate by the stream: no task is lost, and none
// is doubled within the stream's duplicate window.
//
// A delayed task keeps its time: it moves to the delayed subject of to
// (moveDelayed). One due within delayedMoveMargin is left to fire into
// its old priority's subject, where the consumer, kept meanwhile, holds
// it and a later call moves it as a pending task; moving it could race
// the server's firing and run it twice.
func Retire(ctx context.Context, js jetstream.JetStream, fromStream string, n Names, from, to string, batch int) (moved int, gone bool, err error) {
	c, err := js.Consumer(ctx, fromStream, n.Consumer(from))
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		// Nothing reads the priority's subject any more: every delayed
		// task of it moves, however soon it is due.
		moved, left, err := moveDelayed(ctx, js, fromStream, n, n.SubjectPrefix, from, to, batch, 0)
		return moved, !left && err == nil, err
	}
	if err != nil {
		return 0, false, fmt.Errorf("queue: read consumer %s of %s: %w", from, fromStream, err)
	}
	// The consumer's subject names the prefix the delayed tasks were
	// submitted under (a renamed stream's tasks keep theirs).
	prefix := n.SubjectPrefix
	if f, ok := strings.CutSuffix(c.CachedInfo().Config.FilterSubject, ".tasks."+from); ok && f != "" {
		prefix = f
	}
	movedDelayed, delayedLeft, err := moveDelayed(ctx, js, fromStream, n, prefix, from, to, batch, delayedMoveMargin)
	if err != nil {
		return movedDelayed, false, err
	}
	// Read again after the delayed tasks: one that fired meanwhile is
	// pending now.
	info, err := c.Info(ctx)
	if err != nil {
		return movedDelayed, false, fmt.Errorf("queue: read consumer %s of %s: %w", from, fromStream, err)
	}
	if info.NumPending == 0 && info.NumAckPending == 0 {
		if delayedLeft {
			return movedDelayed, false, nil
		}
		if err := js.DeleteConsumer(ctx, fromStream, n.Consumer(from)); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
			return movedDelayed, false, fmt.Errorf("queue: delete retired consumer %s of %s: %w", from, fromStream, err)
		}
		return movedDelayed, true, nil
	}
	if info.NumPending == 0 {
		return movedDelayed, false, nil
	}
	moved, err = movePending(ctx, js, c, fromStream, n, from, to, batch)
	return movedDelayed + moved, false, err
}

// movePending moves up to batch pending tasks of the retiring consumer c.
func movePending(ctx context.Context, js jetstream.JetStream, c jetstream.Consumer, fromStream string, n Names, from, to string, batch int) (moved int, err error) {
	msgs, err := c.FetchNoWait(batch)
	if err != nil {
		return 0, fmt.Errorf("queue: fetch from retired consumer %s: %w", from, err)
	}
	for m := range msgs.Messages() {
		meta, err := m.Metadata()
		if err != nil {
			return moved, fmt.Errorf("queue: retired task metadata: %w", err)
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
			return moved, fmt.Errorf("queue: move task from %s to %s: %w", from, to, err)
		}
		if err := m.DoubleAck(ctx); err != nil {
			return moved, fmt.Errorf("queue: acknowledge moved task: %w", err)
		}
		moved++
	}
	if err := msgs.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) && !errors.Is(err, jetstream.ErrNoMessages) {
		return moved, fmt.Errorf("queue: fetch from retired consumer %s: %w", from, err)
	}
	return moved, nil
}

// delayedMoveMargin is how soon a delayed task of a retiring priority may
// be due and still be moved rather than left to fire (see Retire); a
// variable for the package's tests.
var delayedMoveMargin = 10 * time.Second

// moveDelayed moves up to batch delayed tasks of priority from, submitted
// under prefix to fromStream, to the delayed subject of priority to in
// n.Stream, with their time, kind, id and payload: a task's copy is
// published, then its old message deleted. Tasks due within margin of now
// stay; with a margin of 0 every one moves, past due included (one that
// fired meanwhile is then run twice, which beats firing where nothing
// reads it). left reports whether any delayed task of from is still in
// fromStream.
func moveDelayed(ctx context.Context, js jetstream.JetStream, fromStream string, n Names, prefix, from, to string, batch int, margin time.Duration) (moved int, left bool, err error) {
	s, err := js.Stream(ctx, fromStream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("queue: read stream %s: %w", fromStream, err)
	}
	old := prefix + ".scheduled." + from + "."
	for seq := uint64(1); ; {
		m, err := s.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(old+">"))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return moved, false, nil
		}
		if err != nil {
			return moved, false, fmt.Errorf("queue: read the delayed tasks of %s in %s: %w", from, fromStream, err)
		}
		seq = m.Sequence + 1
		if moved == batch || (margin > 0 && dueWithin(m.Header, margin)) {
			return moved, true, nil
		}
		out := nats.NewMsg(n.SubjectPrefix + ".scheduled." + to + "." + strings.TrimPrefix(m.Subject, old))
		for k, v := range m.Header {
			out.Header[k] = v
		}
		out.Header.Set(HeaderScheduleTarget, n.TaskSubject(to))
		out.Header.Set(HeaderMovedFrom, from)
		out.Header.Set(jetstream.MsgIDHeader, fmt.Sprintf("moved-delayed-%s-%s-%d", fromStream, from, m.Sequence))
		out.Data = m.Data
		if _, err := js.PublishMsg(ctx, out, jetstream.WithExpectStream(n.Stream)); err != nil {
			return moved, true, fmt.Errorf("queue: move delayed task from %s to %s: %w", from, to, err)
		}
		if err := s.DeleteMsg(ctx, m.Sequence); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
			return moved, true, fmt.Errorf("queue: delete moved delayed task: %w", err)
		}
		moved++
	}
}

// dueWithin tells whether a delayed task's schedule ("@at <RFC 3339>", as
// the producer writes it) is due within margin of now. A schedule of
// another form is not due: it moves, and keeps its form.
func dueWithin(h nats.Header, margin time.Duration) bool {
	at, ok := strings.CutPrefix(h.Get(HeaderSchedule), "@at ")
	if !ok {
		return false
	}
	t, err := time.Parse(time.RFC3339Nano, at)
	return err == nil && time.Until(t) < margin
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
