package queue

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Config says how the loop's streams and consumers are set up.
type Config struct {
	// Priorities lists the priority classes, one consumer each. Default
	// one priority "default".
	Priorities []string
	// AckWait is how long the server waits for an ack before it
	// redelivers. Default 30s.
	AckWait time.Duration
	// MaxAckPending caps the unacknowledged tasks per consumer. Default
	// 1000.
	MaxAckPending int
	// Replicas is the replication factor of the streams and the bucket
	// (the consumers inherit their stream's): how many servers of a
	// JetStream cluster hold a copy of each. Default 1.
	Replicas int
	// DuplicateWindow is how long the stream remembers task ids to drop
	// duplicates. Default 2m.
	DuplicateWindow time.Duration
	// ResultRetention, when positive, makes Ensure provision the result
	// stream too, keeping records this long.
	ResultRetention time.Duration
	// Owner, when set, is recorded in the streams' metadata, and Ensure
	// refuses to touch a stream that records another owner.
	Owner *Owner
}

// DefaultPriority is the priority of tasks submitted without one and the
// only priority of a loop that lists none.
const DefaultPriority = "default"

func (c Config) withDefaults() Config {
	if len(c.Priorities) == 0 {
		c.Priorities = []string{DefaultPriority}
	}
	if c.AckWait <= 0 {
		c.AckWait = 30 * time.Second
	}
	if c.MaxAckPending <= 0 {
		c.MaxAckPending = 1000
	}
	if c.Replicas <= 0 {
		c.Replicas = 1
	}
	if c.DuplicateWindow <= 0 {
		c.DuplicateWindow = 2 * time.Minute
	}
	return c
}

// Ensure creates or updates, idempotently, the work-queue stream, the
// dead-letter stream, the checkpoint bucket, one durable pull consumer per
// priority and, with a ResultRetention, the result stream. It returns the
// consumers in the order of c.Priorities.
//
// Every stream and the bucket get c.Replicas replicas; the consumers
// inherit their stream's. When an existing stream or bucket has another
// count, Ensure updates it in place: JetStream adds (or removes) replicas
// and copies the data to the new ones, and the consumers follow; tasks,
// dead letters, results and checkpoints stay.
//
// The work-queue stream holds exactly the subjects of c.Priorities, so
// that a task published to a priority the loop does not have is refused at
// the publisher instead of waiting in the stream for a consumer that does
// not exist. A consumer of a priority no longer listed is left alone: see
// Retire.
//
// With c.Owner set, Ensure first reads the stream's metadata and returns an
// *OwnedElsewhereError, having changed nothing, when it names another
// owner (Owner.Same); a stream that names none is adopted.
func Ensure(ctx context.Context, js jetstream.JetStream, n Names, c Config) ([]jetstream.Consumer, error) {
	if err := n.Validate(); err != nil {
		return nil, err
	}
	c = c.withDefaults()
	subjects := make([]string, 0, len(c.Priorities))
	for _, p := range c.Priorities {
		if err := ValidatePriority(p); err != nil {
			return nil, err
		}
		subjects = append(subjects, n.TaskSubject(p))
	}
	for _, p := range c.Priorities {
		subjects = append(subjects, n.ScheduledSubjects(p))
	}
	var meta map[string]string
	if c.Owner != nil {
		meta = c.Owner.metadata()
		if err := checkOwner(ctx, js, n.Stream, *c.Owner); err != nil {
			return nil, err
		}
	}
	if err := ensureStream(ctx, js, jetstream.StreamConfig{
		Name:        n.Stream,
		Description: "tasks of loop " + n.SubjectPrefix,
		Subjects:    subjects,
		Retention:   jetstream.WorkQueuePolicy,
		Storage:     jetstream.FileStorage,
		Replicas:    c.Replicas,
		Duplicates:  c.DuplicateWindow,
		// Delayed tasks are JetStream message schedules (nats-server
		// 2.12+), which need roll-ups allowed.
		AllowMsgSchedules: true,
		AllowRollup:       true,
		Metadata:          meta,
	}); err != nil {
		return nil, err
	}
	if err := ensureStream(ctx, js, jetstream.StreamConfig{
		Name:        n.DeadStream,
		Description: "dead letters of loop " + n.SubjectPrefix,
		Subjects:    []string{n.DeadSubject, n.DeadSubject + ".>"},
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		Replicas:    c.Replicas,
		Duplicates:  c.DuplicateWindow,
		Metadata:    meta,
	}); err != nil {
		return nil, err
	}
	if c.ResultRetention > 0 {
		if err := ensureStream(ctx, js, resultStreamConfig(n, c.ResultRetention, c.Replicas, meta)); err != nil {
			return nil, err
		}
	}
	if err := ensureBucket(ctx, js, jetstream.KeyValueConfig{
		Bucket:      n.CheckpointBucket,
		Description: "task checkpoints of loop " + n.SubjectPrefix,
		Storage:     jetstream.FileStorage,
		Replicas:    c.Replicas,
	}); err != nil {
		return nil, err
	}
	consumers := make([]jetstream.Consumer, 0, len(c.Priorities))
	for _, p := range c.Priorities {
		cons, err := js.CreateOrUpdateConsumer(ctx, n.Stream, consumerConfig(n, p, c))
		if err != nil {
			return nil, fmt.Errorf("queue: ensure consumer %s on %s: %w", n.Consumer(p), n.Stream, err)
		}
		consumers = append(consumers, cons)
	}
	return consumers, nil
}

// consumerConfig is the durable pull consumer of priority p.
func consumerConfig(n Names, p string, c Config) jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:       n.Consumer(p),
		Description:   "tasks of priority " + p,
		FilterSubject: n.TaskSubject(p),
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       c.AckWait,
		MaxDeliver:    -1,
		MaxAckPending: c.MaxAckPending,
		DeliverPolicy: jetstream.DeliverAllPolicy,
	}
}

// checkOwner returns an *OwnedElsewhereError when stream exists and its
// metadata names an owner other than o.
func checkOwner(ctx context.Context, js jetstream.JetStream, stream string, o Owner) error {
	s, err := js.Stream(ctx, stream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("queue: read stream %s: %w", stream, err)
	}
	if have, ok := OwnerOf(s.CachedInfo().Config.Metadata); ok && !have.Same(o) {
		return &OwnedElsewhereError{Stream: stream, Owner: have}
	}
	return nil
}

// Bind returns the consumers of priorities on the loop's existing queue,
// in their order, and never creates or changes anything: the operator
// provisions the queue (Ensure) and workers and tools bind to it. It
// returns an error wrapping ErrNotProvisioned, naming what is missing,
// when the stream, a consumer, the checkpoint bucket or (with a positive
// resultRetention) the result stream does not exist yet.
func Bind(ctx context.Context, js jetstream.JetStream, n Names, priorities []string, resultRetention time.Duration) ([]jetstream.Consumer, error) {
	if err := n.Validate(); err != nil {
		return nil, err
	}
	if len(priorities) == 0 {
		priorities = []string{DefaultPriority}
	}
	missing := func(what string, err error) error {
		if errors.Is(err, jetstream.ErrStreamNotFound) || errors.Is(err, jetstream.ErrConsumerNotFound) ||
			errors.Is(err, jetstream.ErrBucketNotFound) {
			return fmt.Errorf("%w: %s does not exist", ErrNotProvisioned, what)
		}
		return fmt.Errorf("queue: look up %s: %w", what, err)
	}
	if _, err := js.Stream(ctx, n.Stream); err != nil {
		return nil, missing("stream "+n.Stream, err)
	}
	if _, err := js.KeyValue(ctx, n.CheckpointBucket); err != nil {
		return nil, missing("bucket "+n.CheckpointBucket, err)
	}
	if resultRetention > 0 {
		if _, err := js.Stream(ctx, n.ResultStream()); err != nil {
			return nil, missing("stream "+n.ResultStream(), err)
		}
	}
	consumers := make([]jetstream.Consumer, 0, len(priorities))
	for _, p := range priorities {
		cons, err := js.Consumer(ctx, n.Stream, n.Consumer(p))
		if err != nil {
			return nil, missing(fmt.Sprintf("consumer %s of stream %s", n.Consumer(p), n.Stream), err)
		}
		consumers = append(consumers, cons)
	}
	return consumers, nil
}

// ensureBucket creates the key-value bucket, or leaves it alone when it
// exists with the wanted replicas (otherwise it updates them; the bucket's
// keys stay).
func ensureBucket(ctx context.Context, js jetstream.JetStream, want jetstream.KeyValueConfig) error {
	if kv, err := js.KeyValue(ctx, want.Bucket); err == nil {
		st, err := kv.Status(ctx)
		if err != nil {
			return fmt.Errorf("queue: read bucket %s: %w", want.Bucket, err)
		}
		if b, ok := st.(*jetstream.KeyValueBucketStatus); !ok || b.StreamInfo().Config.Replicas == want.Replicas {
			return nil
		}
	}
	if _, err := js.CreateOrUpdateKeyValue(ctx, want); err != nil {
		return fmt.Errorf("queue: ensure bucket %s: %w", want.Bucket, withReplicasHint(err, want.Replicas))
	}
	return nil
}

// withReplicasHint adds to JetStream's refusal of a replicated stream
// what would make it work: as many servers in the cluster as replicas.
func withReplicasHint(err error, replicas int) error {
	var apiErr *jetstream.APIError
	if replicas <= 1 || !errors.As(err, &apiErr) {
		return err
	}
	switch apiErr.ErrorCode {
	case errCodeReplicasNotSupported, errCodeInsufficientResources:
		return fmt.Errorf("%w (%d replicas need a JetStream cluster of at least %d servers)", err, replicas, replicas)
	}
	return err
}

// JetStream's error codes for a replica count the servers cannot hold.
const (
	// errCodeInsufficientResources: fewer servers (with room) in the
	// cluster than replicas.
	errCodeInsufficientResources jetstream.ErrorCode = 10023
	// errCodeReplicasNotSupported: replicas above 1 on a server that is
	// not part of a cluster.
	errCodeReplicasNotSupported jetstream.ErrorCode = 10074
)

// ErrNotFound is returned when a task or dead letter does not exist.
var ErrNotFound = errors.New("queue: not found")

// ensureStream creates a stream, or updates it when its configuration
// differs in a field we set. Leaving an unchanged stream alone saves every
// worker's start-up a write that the server applies to all of the stream's
// consumers.
func ensureStream(ctx context.Context, js jetstream.JetStream, want jetstream.StreamConfig) error {
	if s, err := js.Stream(ctx, want.Name); err == nil {
		have := s.CachedInfo().Config
		if have.Description == want.Description && slices.Equal(have.Subjects, want.Subjects) &&
			have.Retention == want.Retention && have.Storage == want.Storage && have.Replicas == want.Replicas &&
			have.Duplicates == want.Duplicates && have.MaxAge == want.MaxAge && have.Discard == want.Discard &&
			have.AllowMsgSchedules == want.AllowMsgSchedules && (have.AllowRollup || !want.AllowRollup) &&
			(want.Metadata == nil || metadataHolds(have.Metadata, want.Metadata)) {
			return nil
		}
	}
	if _, err := js.CreateOrUpdateStream(ctx, want); err != nil {
		return fmt.Errorf("queue: ensure stream %s: %w", want.Name, withReplicasHint(err, want.Replicas))
	}
	return nil
}

// metadataHolds reports whether have holds every key of want with the same
// value (the server adds keys of its own).
func metadataHolds(have, want map[string]string) bool {
	for k, v := range want {
		if have[k] != v {
			return false
		}
	}
	return true
}

// AwaitBind calls Bind until the queue is provisioned or ctx ends, pausing
// between tries from 100ms up to maxPause; each time what is missing
// changes it calls waiting with Bind's error (nil means not to report).
// Any error other than ErrNotProvisioned (or a timeout of the server's
// answer) ends it at once.
func AwaitBind(ctx context.Context, js jetstream.JetStream, n Names, priorities []string, resultRetention, maxPause time.Duration, waiting func(error)) ([]jetstream.Consumer, error) {
	pause := 100 * time.Millisecond
	last := ""
	for {
		consumers, err := Bind(ctx, js, n, priorities, resultRetention)
		if err == nil {
			return consumers, nil
		}
		if !errors.Is(err, ErrNotProvisioned) && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, nats.ErrTimeout) {
			return nil, err
		}
		if waiting != nil && err.Error() != last {
			waiting(err)
		}
		last = err.Error()
		t := time.NewTimer(pause)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("waiting for the queue (%s): %w", last, ctx.Err())
		case <-t.C:
		}
		pause = min(2*pause, max(maxPause, 100*time.Millisecond))
	}
}
