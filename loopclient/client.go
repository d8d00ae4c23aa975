// Package loopclient submits tasks to a LoopDeployment's queue and reads
// their results: the producer side, for services that hand work to a loop.
//
//	c, err := loopclient.ForLoopDeployment(ctx, kube, js, "shop", "mail")
//	r, err := c.Submit(ctx, loopclient.Task{Kind: "email", Payload: body})
//	res, err := c.Wait(ctx, r.ID) // its result record, or a *FailedError
//
// The queue's names come from the LoopDeployment (contract.QueueOf), as the
// operator and the workers derive them; the client only binds to what the
// operator provisioned. docs/wire-format.md specifies the messages, for
// producers in other languages.
package loopclient

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"sigs.k8s.io/controller-runtime/pkg/client"

	loopsv1alpha1 "github.com/tenire/loop-operator/api/v1alpha1"
	"github.com/tenire/loop-operator/api/v1alpha1/contract"
	"github.com/tenire/loop-operator/worker/queue"
)

// Task is a task to submit: queue.Task, the one envelope of the wire
// format. The client fills two defaults of its own: a task with no ID
// gets a random one (which Submit returns, so that its result can be
// awaited, and which a delayed task needs), and a task with no Priority
// the loop's first (highest) class; a priority the loop does not have is
// refused before anything is sent. NotBefore delays a task (a JetStream
// message schedule, precise to a few milliseconds on the server's clock);
// Deadline dead-letters a task no worker started by then ("expired").
type Task = queue.Task

// Receipt is the queue's acknowledgement of a submitted task.
type Receipt struct {
	// ID is the task's id, the one given or the one Submit chose.
	ID string
	// Sequence is the task's sequence in the work-queue stream (of the
	// earlier task, for a duplicate).
	Sequence uint64
	// Duplicate reports that the queue dropped the task as a duplicate of
	// an earlier one with the same id, submitted within the duplicate
	// window: that one runs, this one does not.
	Duplicate bool
}

// Result is the record a worker keeps of a task that succeeded.
type Result struct {
	// ID, Kind and Priority are the task's.
	ID, Kind, Priority string
	// Worker names the worker (the pod) that ran it.
	Worker string
	// Attempts is the attempt that succeeded (failed attempts + 1).
	Attempts uint64
	// Deliveries is the server's delivery count of that attempt, above
	// Attempts after a drain's hand-back or a worker's crash.
	Deliveries uint64
	// Duration is how long the successful attempt ran.
	Duration time.Duration
	// Finished is when the record was stored.
	Finished time.Time
	// Payload is the result the handler set (loop.Task.SetResult), at
	// most 64 KiB; nil when it set none.
	Payload []byte
}

// FailedError is the error of Wait for a task that failed for good: it is
// in the loop's dead letters.
type FailedError struct {
	// ID and Kind are the task's.
	ID, Kind string
	// Err is its last error, as the worker recorded it.
	Err string
	// Attempts is the number of its last attempt.
	Attempts uint64
}

func (e *FailedError) Error() string {
	return fmt.Sprintf("loopclient: task %s (%s) failed for good after attempt %d: %s", e.ID, e.Kind, e.Attempts, e.Err)
}

// ErrNoResult is wrapped by the error of Result for a task with no result
// record: not finished yet, failed, never submitted, or finished longer
// ago than the loop's resultRetention.
var ErrNoResult = errors.New("loopclient: no result record")

// ErrNoResults is returned by Result and Wait when the loop keeps no
// result records (spec.queue.nats.resultRetention is 0s).
var ErrNoResults = errors.New("loopclient: the loop keeps no result records (spec.queue.nats.resultRetention is 0s)")

// Client submits tasks to one loop's queue. It is safe for concurrent use.
type Client struct {
	js       jetstream.JetStream
	q        contract.Queue
	names    queue.Names
	producer *queue.Producer
}

// New returns a client of the queue q (contract.QueueOf of the
// LoopDeployment) on the JetStream js.
func New(js jetstream.JetStream, q contract.Queue) (*Client, error) {
	names := queue.NewNames(q.Stream, q.SubjectPrefix)
	if err := names.Validate(); err != nil {
		return nil, err
	}
	if len(q.Priorities) == 0 {
		q.Priorities = []string{queue.DefaultPriority}
	}
	return &Client{js: js, q: q, names: names, producer: queue.NewProducer(js, names)}, nil
}

// ForLoopDeployment reads the LoopDeployment namespace/name with kube and
// returns a client of its queue on js, whose connection must reach the
// loop's NATS server (spec.queue.nats.url) with credentials that may
// publish to its subjects.
func ForLoopDeployment(ctx context.Context, kube client.Reader, js jetstream.JetStream, namespace, name string) (*Client, error) {
	ld := &loopsv1alpha1.LoopDeployment{}
	if err := kube.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, ld); err != nil {
		return nil, fmt.Errorf("loopclient: loopdeployment %s/%s: %w", namespace, name, err)
	}
	return New(js, contract.QueueOf(ld))
}

// Queue returns the queue the client submits to.
func (c *Client) Queue() contract.Queue { return c.q }

// Names returns the JetStream names of the queue.
func (c *Client) Names() queue.Names { return c.names }

func (c *Client) task(t Task) (queue.Task, error) {
	if t.ID == "" {
		var b [12]byte
		_, _ = rand.Read(b[:])
		t.ID = "t-" + hex.EncodeToString(b[:])
	}
	if t.Priority == "" {
		t.Priority = c.q.Priorities[0]
	}
	if !slices.Contains(c.q.Priorities, t.Priority) {
		return queue.Task{}, fmt.Errorf("%w: the loop has no priority %q; its priorities are %v", queue.ErrInvalidTask, t.Priority, c.q.Priorities)
	}
	return t, nil
}

// Submit publishes a task and waits for the queue to store it (the
// pub-ack). The receipt says whether it was a duplicate.
func (c *Client) Submit(ctx context.Context, t Task) (Receipt, error) {
	qt, err := c.task(t)
	if err != nil {
		return Receipt{}, err
	}
	seq, dup, err := c.producer.Submit(ctx, qt)
	if err != nil {
		return Receipt{}, err
	}
	return Receipt{ID: qt.ID, Sequence: seq, Duplicate: dup}, nil
}

// SubmitBatch publishes tasks without waiting for each, then waits for
// every pub-ack. It returns a receipt per task, in order, up to the first
// that failed, and that failure; tasks after an invalid one are not sent.
func (c *Client) SubmitBatch(ctx context.Context, tasks []Task) ([]Receipt, error) {
	qts := make([]queue.Task, 0, len(tasks))
	var invalid error
	for _, t := range tasks {
		qt, err := c.task(t)
		if err != nil {
			invalid = err
			break
		}
		qts = append(qts, qt)
	}
	acks, err := c.producer.SubmitAll(ctx, qts)
	receipts := make([]Receipt, 0, len(acks))
	for i, a := range acks {
		receipts = append(receipts, Receipt{ID: qts[i].ID, Sequence: a.Sequence, Duplicate: a.Duplicate})
	}
	if err != nil {
		return receipts, err
	}
	return receipts, invalid
}

// Result returns the latest result record of the task id, or an error
// wrapping ErrNoResult when it has none. It reads that one record (the
// last message of the task's result subject), not the stream.
func (c *Client) Result(ctx context.Context, id string) (Result, error) {
	s, err := c.js.Stream(ctx, c.names.ResultStream())
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return Result{}, ErrNoResults
	}
	if err != nil {
		return Result{}, fmt.Errorf("loopclient: result stream %s: %w", c.names.ResultStream(), err)
	}
	m, err := s.GetLastMsgForSubject(ctx, c.names.ResultSubjectOf(id))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return Result{}, fmt.Errorf("%w for task %s", ErrNoResult, id)
	}
	if err != nil {
		return Result{}, fmt.Errorf("loopclient: result of task %s: %w", id, err)
	}
	r := resultOf(m.Header, m.Time)
	r.Payload = nonEmpty(m.Data)
	return r, nil
}

// Failure returns the dead letter of the task id as a *FailedError, or nil
// when the task has none.
func (c *Client) Failure(ctx context.Context, id string) (*FailedError, error) {
	s, err := c.js.Stream(ctx, c.names.DeadStream)
	if err != nil {
		return nil, fmt.Errorf("loopclient: dead-letter stream %s: %w", c.names.DeadStream, err)
	}
	m, err := s.GetLastMsgForSubject(ctx, c.names.DeadSubjectOf(id))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("loopclient: dead letter of task %s: %w", id, err)
	}
	return failureOf(m.Header), nil
}

// Wait waits until the task id has a result record, and returns it, or is
// dead-lettered, and returns a *FailedError, or ctx ends. It follows the
// task's two subjects, so a record stored before Wait began is found too.
func (c *Client) Wait(ctx context.Context, id string) (Result, error) {
	if c.q.ResultRetention <= 0 {
		return Result{}, ErrNoResults
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type outcome struct {
		r   Result
		err error
	}
	got := make(chan outcome, 2)
	follow := func(stream, subject string, read func(jetstream.Msg) outcome) error {
		cons, err := c.js.OrderedConsumer(ctx, stream, jetstream.OrderedConsumerConfig{
			FilterSubjects: []string{subject},
			DeliverPolicy:  jetstream.DeliverLastPerSubjectPolicy,
		})
		if err != nil {
			return fmt.Errorf("loopclient: follow %s: %w", stream, err)
		}
		cc, err := cons.Consume(func(m jetstream.Msg) {
			select {
			case got <- read(m):
			default:
			}
		})
		if err != nil {
			return fmt.Errorf("loopclient: follow %s: %w", stream, err)
		}
		context.AfterFunc(ctx, cc.Stop)
		return nil
	}
	if err := follow(c.names.ResultStream(), c.names.ResultSubjectOf(id), func(m jetstream.Msg) outcome {
		md, _ := m.Metadata()
		var at time.Time
		if md != nil {
			at = md.Timestamp
		}
		r := resultOf(m.Headers(), at)
		r.Payload = nonEmpty(m.Data())
		return outcome{r: r}
	}); err != nil {
		return Result{}, err
	}
	if err := follow(c.names.DeadStream, c.names.DeadSubjectOf(id), func(m jetstream.Msg) outcome {
		return outcome{err: failureOf(m.Headers())}
	}); err != nil {
		return Result{}, err
	}
	select {
	case o := <-got:
		return o.r, o.err
	case <-ctx.Done():
		return Result{}, fmt.Errorf("loopclient: waiting for task %s: %w", id, ctx.Err())
	}
}

type header interface{ Get(string) string }

func nonEmpty(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return b
}

func resultOf(h header, at time.Time) Result {
	r := Result{
		ID: h.Get(queue.HeaderTaskID), Kind: h.Get(queue.HeaderKind), Priority: h.Get(queue.HeaderPriority),
		Worker: h.Get(queue.HeaderWorker), Finished: at,
	}
	r.Attempts, _ = strconv.ParseUint(h.Get(queue.HeaderAttempts), 10, 64)
	r.Deliveries, _ = strconv.ParseUint(h.Get(queue.HeaderDeliveries), 10, 64)
	r.Duration, _ = time.ParseDuration(h.Get(queue.HeaderDuration))
	return r
}

func failureOf(h header) *FailedError {
	f := &FailedError{ID: h.Get(queue.HeaderTaskID), Kind: h.Get(queue.HeaderKind), Err: h.Get(queue.HeaderError)}
	f.Attempts, _ = strconv.ParseUint(h.Get(queue.HeaderAttempts), 10, 64)
	return f
}
