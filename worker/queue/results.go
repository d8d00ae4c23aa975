package queue

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Result records. A loop that keeps results publishes one record to
// ResultSubject each time a task completes, before it acknowledges the
// task, into the limits-retention stream ResultStream. A task that runs
// twice (at-least-once delivery after a crash) has two records, so a reader
// can tell completed, duplicated and never-completed tasks apart; see
// package ledger.
const (
	// HeaderWorker names the worker (the pod) that ran the task.
	HeaderWorker = "Loop-Worker"
	// HeaderDuration is how long the successful attempt ran, in Go
	// duration syntax.
	HeaderDuration = "Loop-Duration"
	// HeaderDeliveries is the server's delivery count of the successful
	// delivery (Loop-Attempts counts failures of the task, not
	// hand-backs or crashes, so this is how a reader sees a redelivery).
	HeaderDeliveries = "Loop-Deliveries"
)

// MaxResultSize bounds a task's result, the body of its result record:
// 64 KiB, well below the NATS server's default message limit of 1 MiB, so
// that a record always fits and the result stream stays cheap to keep.
const MaxResultSize = 64 << 10

// ResultStream returns the stream of the loop's result records.
func (n Names) ResultStream() string { return n.Stream + "_RESULTS" }

// ResultSubject returns the subject that starts the subjects of result
// records; a record is published to ResultSubjectOf(id). The result stream
// holds ResultSubject itself too, where workers before per-task subjects
// published.
func (n Names) ResultSubject() string { return n.SubjectPrefix + ".results" }

// EnsureResults creates or updates the result stream, which keeps records
// for retention. It is idempotent, like Ensure.
func EnsureResults(ctx context.Context, js jetstream.JetStream, n Names, retention time.Duration, replicas int) error {
	if retention <= 0 {
		return fmt.Errorf("queue: result retention %s must be positive", retention)
	}
	return ensureStream(ctx, js, resultStreamConfig(n, retention, replicas, nil))
}

func resultStreamConfig(n Names, retention time.Duration, replicas int, meta map[string]string) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        n.ResultStream(),
		Description: "result records of loop " + n.SubjectPrefix,
		Subjects:    []string{n.ResultSubject(), n.ResultSubject() + ".>"},
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardOld,
		MaxAge:      retention,
		Duplicates:  min(2*time.Minute, retention), // the server's default, which may not exceed MaxAge
		Storage:     jetstream.FileStorage,
		Replicas:    max(replicas, 1),
		Metadata:    meta,
	}
}

// RecordResult publishes the result record of a completed delivery, with
// d.Result as its body, and waits for the stream to store it. worker names who ran it; took is how
// long the attempt ran.
func (d *Delivery) RecordResult(ctx context.Context, js jetstream.JetStream, n Names, worker string, took time.Duration) error {
	m := nats.NewMsg(n.ResultSubjectOf(d.ID))
	m.Header.Set(HeaderTaskID, d.ID)
	m.Header.Set(HeaderKind, d.Kind)
	m.Header.Set(HeaderPriority, d.Priority)
	m.Header.Set(HeaderAttempts, strconv.FormatUint(d.Attempt, 10))
	m.Header.Set(HeaderDeliveries, strconv.FormatUint(d.Delivered, 10))
	m.Header.Set(HeaderDuration, took.String())
	if worker != "" {
		m.Header.Set(HeaderWorker, worker)
	}
	if len(d.Result) > MaxResultSize {
		return fmt.Errorf("queue: the result of task %s is %d bytes, more than %d", d.ID, len(d.Result), MaxResultSize)
	}
	m.Data = d.Result
	if _, err := js.PublishMsg(ctx, m, jetstream.WithExpectStream(n.ResultStream())); err != nil {
		return fmt.Errorf("queue: record the result of task %s: %w", d.ID, err)
	}
	return nil
}
