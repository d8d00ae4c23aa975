package queue

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

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
	// Replicas is the replication factor of the streams. Default 1.
	Replicas int
	// DuplicateWindow is how long the stream remembers task ids to drop
	// duplicates. Default 2m.
	DuplicateWindow time.Duration
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
// dead-letter stream, the checkpoint bucket and one durable pull consumer
// per priority. It returns the consumers in the order of c.Priorities.
func Ensure(ctx context.Context, js jetstream.JetStream, n Names, c Config) ([]jetstream.Consumer, error) {
	if err := n.Validate(); err != nil {
		return nil, err
	}
	c = c.withDefaults()
	for _, p := range c.Priorities {
		if err := ValidatePriority(p); err != nil {
			return nil, err
		}
	}
	if err := ensureStream(ctx, js, jetstream.StreamConfig{
		Name:        n.Stream,
		Description: "tasks of loop " + n.SubjectPrefix,
		Subjects:    []string{n.TaskSubjects()},
		Retention:   jetstream.WorkQueuePolicy,
		Storage:     jetstream.FileStorage,
		Replicas:    c.Replicas,
		Duplicates:  c.DuplicateWindow,
	}); err != nil {
		return nil, err
	}
	if err := ensureStream(ctx, js, jetstream.StreamConfig{
		Name:        n.DeadStream,
		Description: "dead letters of loop " + n.SubjectPrefix,
		Subjects:    []string{n.DeadSubject},
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		Replicas:    c.Replicas,
		Duplicates:  c.DuplicateWindow,
	}); err != nil {
		return nil, err
	}
	if _, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      n.CheckpointBucket,
		Description: "task checkpoints of loop " + n.SubjectPrefix,
		Storage:     jetstream.FileStorage,
		Replicas:    c.Replicas,
	}); err != nil {
		return nil, fmt.Errorf("queue: ensure bucket %s: %w", n.CheckpointBucket, err)
	}
	consumers := make([]jetstream.Consumer, 0, len(c.Priorities))
	for _, p := range c.Priorities {
		cons, err := js.CreateOrUpdateConsumer(ctx, n.Stream, jetstream.ConsumerConfig{
			Durable:       n.Consumer(p),
			Description:   "tasks of priority " + p,
			FilterSubject: n.TaskSubject(p),
			AckPolicy:     jetstream.AckExplicitPolicy,
			AckWait:       c.AckWait,
			MaxDeliver:    -1,
			MaxAckPending: c.MaxAckPending,
			DeliverPolicy: jetstream.DeliverAllPolicy,
		})
		if err != nil {
			return nil, fmt.Errorf("queue: ensure consumer %s on %s: %w", n.Consumer(p), n.Stream, err)
		}
		consumers = append(consumers, cons)
	}
	return consumers, nil
}

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
			have.Duplicates == want.Duplicates && have.MaxAge == want.MaxAge && have.Discard == want.Discard {
			return nil
		}
	}
	if _, err := js.CreateOrUpdateStream(ctx, want); err != nil {
		return fmt.Errorf("queue: ensure stream %s: %w", want.Name, err)
	}
	return nil
}
