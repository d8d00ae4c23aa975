package loop

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/go-logr/logr"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tenire/loop-operator/worker/pool"
	"github.com/tenire/loop-operator/worker/queue"
)

// Config configures a Loop. Fields document their defaults; New applies
// them.
type Config struct {
	// Name names the loop in logs and /status. Default "loop".
	Name string

	// NATSURL is the NATS server to dial. Required unless Conn is set.
	NATSURL string
	// NATSOptions are passed to nats.Connect after the loop's own
	// (reconnect forever, every ReconnectWait).
	NATSOptions []nats.Option
	// Conn is an open connection to use instead of dialling NATSURL. The
	// loop does not close it.
	Conn *nats.Conn
	// ReconnectWait is the pause between reconnect attempts. Default 1s.
	ReconnectWait time.Duration

	// Stream is the work-queue stream. Required.
	Stream string
	// SubjectPrefix starts the loop's subjects. Required.
	SubjectPrefix string

	// Priorities lists the priority classes, highest first. Default one
	// class "default" of weight 1.
	Priorities []pool.Class
	// Scheduling picks between classes. Default pool.Weighted.
	Scheduling pool.Scheduling
	// MinWorkers goroutines are kept when idle. Default 1.
	MinWorkers int
	// MaxWorkers bounds the tasks running at once. Default 16.
	MaxWorkers int
	// IdleTimeout is how long a goroutine above MinWorkers may idle.
	// Default 30s.
	IdleTimeout time.Duration
	// KindLimits caps the running tasks per kind.
	KindLimits map[string]int
	// Prefetch is how many tasks the worker may hold beyond MaxWorkers,
	// waiting in the pool for a free goroutine: it hides the fetch round
	// trip for short tasks; heartbeats keep prefetched tasks from
	// redelivery and a drain hands them back at once. 0 (the default) sizes
	// it to the tasks: about what the pool finishes during one fetch round
	// trip, at most MaxWorkers, none for tasks much longer than the round
	// trip (see prefetchSizer). A positive value fixes it; PrefetchOff
	// turns it off (the worker pulls only what it can start).
	Prefetch int
	// TaskTimeout bounds one attempt of a task. Default 10m.
	TaskTimeout time.Duration
	// StuckGrace is how long a handler may run past TaskTimeout, its
	// context cancelled, before the loop abandons it: the attempt counts as
	// failed (retried or dead-lettered), heartbeats for the task stop, and
	// the goroutine's pool slot counts as stuck (tenire_loop_stuck_slots,
	// /status) until the handler returns. A worker whose slots are all stuck
	// is not ready. Default 30s, longer than the 10s the exec kind waits
	// between SIGTERM and SIGKILL.
	StuckGrace time.Duration
	// AbortGrace is how long a drain waits, once its deadline has passed
	// and it has cancelled the running tasks, for their handlers to return
	// before it hands their tasks back without them and reports Drained.
	// Default 5s; keep it well inside the pod's grace period.
	AbortGrace time.Duration

	// Retry says how failed tasks are retried and how often a task may be
	// delivered. Defaults: 5 attempts, 1s initial backoff, 5m maximum, 5
	// crashes, 1000 deliveries (see queue.RetryPolicy).
	Retry queue.RetryPolicy
	// BreakerThreshold consecutive failures of a kind open its breaker.
	// Default 5; negative disables the breakers.
	BreakerThreshold int
	// BreakerCooldown is how long a breaker stays open. Default 30s.
	BreakerCooldown time.Duration

	// AckWait is the server's redelivery timeout; tasks running longer than
	// half of it get InProgress heartbeats. Default 30s.
	AckWait time.Duration
	// MaxAckPending caps unacknowledged tasks per priority. Default 1000.
	MaxAckPending int
	// Replicas is the stream replication factor. Default 1.
	Replicas int
	// ResultRetention, when positive, makes the loop publish a result
	// record for every task that succeeds (before acking it) into the
	// stream <stream>_RESULTS, which keeps records this long (see package
	// ledger). Zero keeps no records and saves one write per task.
	ResultRetention time.Duration
	// ResultWindow is how long the loop keeps trying to write a task's
	// result record before it acks the task without one. It outlasts the
	// leader election of a replicated result stream that lost its leader's
	// server (seconds); the task stays held, with heartbeats, meanwhile.
	// Default 20s.
	ResultWindow time.Duration
	// AnnounceInterval is how often the loop publishes its Status on the
	// queue's status subject, for `kubectl loops status` and `top`.
	// Default 2s.
	AnnounceInterval time.Duration
	// Worker names this worker in result records, usually the pod name.
	// Default the host name.
	Worker string
	// EnsureQueue makes Run provision the queue itself (queue.Ensure)
	// instead of binding to it: for a standalone worker, which has no
	// operator, and for tests. In a cluster the operator owns the queue
	// and workers must not rewrite it: leave this false there.
	EnsureQueue bool
	// QueueWait is the longest pause between two looks for a queue that is
	// not provisioned yet. Default 5s.
	QueueWait time.Duration
	// FetchWait bounds one long poll when the queue is empty; it is also the
	// longest a drain waits for the last fetch. Default 1s.
	FetchWait time.Duration

	// DrainTimeout is the drain deadline, from the drain's start, for
	// drains started by cancelling Run's context or by POST /drain.
	// Default 5m.
	DrainTimeout time.Duration
	// AdminAddr is the admin HTTP server's address. Default ":8081"; "-"
	// disables the server.
	AdminAddr string
	// AdminToken, when set, lets clients that are not on the loopback
	// interface call /status and POST /drain with the header
	// "Authorization: Bearer <AdminToken>". Without a token (here or in
	// AdminTokenFile) those two paths answer loopback clients only (a
	// port-forward arrives on loopback; the API server's pod proxy does
	// not). Probes and /metrics answer everyone. Default the environment
	// variable LOOP_ADMIN_TOKEN.
	AdminToken string
	// AdminTokenFile names a file holding the admin token (a mounted
	// Secret), read at each request so that it may be rotated; surrounding
	// white space is ignored. Default the environment variable
	// LOOP_ADMIN_TOKEN_FILE.
	AdminTokenFile string

	// Mux routes tasks to their kind's handler through its middleware.
	// Default a new empty Mux, which Loop.Handle and Loop.Use fill; a Mux
	// built beforehand (and tested on its own) can be given here instead.
	Mux *Mux

	// Pod, when set, tells the loop when its pod is asked to drain and
	// takes the Drained report. Nil outside a cluster.
	Pod Pod
	// Logger receives structured logs. Default logr.Discard().
	Logger logr.Logger
	// Registry receives the loop's metrics and serves /metrics. Default a
	// new registry with the Go and process collectors.
	Registry *prometheus.Registry
}

// Pod is where drain requests come from and drained reports go, usually
// the worker's own Pod object (see package podwatch).
type Pod interface {
	// WaitForDrain blocks until a drain is requested and returns its
	// deadline. It returns ctx.Err() when ctx ends first.
	WaitForDrain(ctx context.Context) (deadline time.Time, err error)
	// ReportDrained records that the loop has drained.
	ReportDrained(ctx context.Context, r DrainReport) error
}

// DrainChecker is implemented by Pod sources that can tell at once whether
// a drain was requested already, as it is when a worker restarts in a
// draining pod. Run asks before it starts pulling and, if so, pulls
// nothing.
type DrainChecker interface {
	// DrainRequested reports whether a drain is requested and its deadline.
	DrainRequested(ctx context.Context) (deadline time.Time, requested bool, err error)
}

// DrainReport describes a finished drain.
type DrainReport struct {
	// DeadlineExceeded reports that tasks were still running at the
	// deadline and were cancelled and handed back.
	DeadlineExceeded bool
	// Finished counts the tasks that ended (succeeded, retried later or
	// dead-lettered) while draining.
	Finished int
	// HandedBack counts the tasks returned to the queue for immediate
	// redelivery.
	HandedBack int
	// Duration is how long the drain took.
	Duration time.Duration
	// Cause says what started the drain.
	Cause DrainCause
}

// Message returns the report as a sentence for a pod condition.
func (r DrainReport) Message() string {
	return fmt.Sprintf("drained in %s after %s request: %d finished, %d handed back",
		r.Duration.Round(time.Millisecond), r.Cause, r.Finished, r.HandedBack)
}

// ErrInvalidConfig is wrapped by New's error for a configuration it
// rejects.
var ErrInvalidConfig = errors.New("invalid loop config")

// QueueConfig returns the set-up of the streams and consumers of c's queue,
// defaults applied: what Run ensures with EnsureQueue, and what a test or
// a standalone set-up provisions before its loops bind.
func (c Config) QueueConfig() queue.Config {
	c = c.withDefaults()
	return queue.Config{
		Priorities:    classNames(c.Priorities),
		AckWait:       c.AckWait,
		MaxAckPending: c.MaxAckPending,
		Replicas:      c.Replicas,
	}
}

func (c Config) withDefaults() Config {
	if c.Name == "" {
		c.Name = "loop"
	}
	if c.ReconnectWait <= 0 {
		c.ReconnectWait = time.Second
	}
	if len(c.Priorities) == 0 {
		c.Priorities = []pool.Class{{Name: queue.DefaultPriority, Weight: 1}}
	}
	if c.MinWorkers == 0 && c.MaxWorkers == 0 {
		c.MinWorkers = 1
	}
	if c.MaxWorkers == 0 {
		c.MaxWorkers = max(16, c.MinWorkers)
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = 30 * time.Second
	}
	if c.TaskTimeout == 0 {
		c.TaskTimeout = 10 * time.Minute
	}
	if c.StuckGrace == 0 {
		c.StuckGrace = 30 * time.Second
	}
	if c.AbortGrace == 0 {
		c.AbortGrace = 5 * time.Second
	}
	c.Retry = c.Retry.WithDefaults()
	if c.BreakerThreshold == 0 {
		c.BreakerThreshold = 5
	}
	if c.BreakerCooldown == 0 {
		c.BreakerCooldown = 30 * time.Second
	}
	if c.AckWait == 0 {
		c.AckWait = 30 * time.Second
	}
	if c.MaxAckPending == 0 {
		c.MaxAckPending = 1000
	}
	if c.Replicas == 0 {
		c.Replicas = 1
	}
	if c.QueueWait <= 0 {
		c.QueueWait = 5 * time.Second
	}
	if c.FetchWait == 0 {
		c.FetchWait = time.Second
	}
	if c.AnnounceInterval == 0 {
		c.AnnounceInterval = 2 * time.Second
	}
	if c.ResultWindow == 0 {
		c.ResultWindow = 20 * time.Second
	}
	if c.Worker == "" {
		c.Worker, _ = os.Hostname()
	}
	if c.DrainTimeout == 0 {
		c.DrainTimeout = 5 * time.Minute
	}
	if c.AdminAddr == "" {
		c.AdminAddr = ":8081"
	}
	if c.AdminToken == "" && c.AdminTokenFile == "" {
		c.AdminToken = os.Getenv(EnvAdminToken)
		c.AdminTokenFile = os.Getenv(EnvAdminTokenFile)
	}
	if c.Logger.GetSink() == nil {
		c.Logger = logr.Discard()
	}
	return c
}

func (c Config) validate() error {
	var errs []error
	if c.NATSURL == "" && c.Conn == nil {
		errs = append(errs, errors.New("NATSURL or Conn is required"))
	}
	if err := queue.NewNames(c.Stream, c.SubjectPrefix).Validate(); err != nil {
		errs = append(errs, err)
	}
	for _, p := range c.Priorities {
		if err := queue.ValidatePriority(p.Name); err != nil {
			errs = append(errs, err)
		}
	}
	if c.Prefetch < PrefetchOff {
		errs = append(errs, fmt.Errorf("prefetch %d must be positive, 0 (sized to the tasks) or %d (off)", c.Prefetch, PrefetchOff))
	}
	if c.MinWorkers < 0 || c.MaxWorkers < 1 || c.MinWorkers > c.MaxWorkers {
		errs = append(errs, fmt.Errorf("workers: want 0 <= min (%d) <= max (%d) and max >= 1", c.MinWorkers, c.MaxWorkers))
	}
	for name, d := range map[string]time.Duration{
		"IdleTimeout": c.IdleTimeout, "TaskTimeout": c.TaskTimeout, "AckWait": c.AckWait,
		"FetchWait": c.FetchWait, "DrainTimeout": c.DrainTimeout, "BreakerCooldown": c.BreakerCooldown,
		"ResultRetention": c.ResultRetention, "ResultWindow": c.ResultWindow, "AnnounceInterval": c.AnnounceInterval,
		"StuckGrace": c.StuckGrace, "AbortGrace": c.AbortGrace,
	} {
		if d < 0 {
			errs = append(errs, fmt.Errorf("%s %s must not be negative", name, d))
		}
	}
	if c.AckWait > 0 && c.AckWait < 100*time.Millisecond {
		errs = append(errs, fmt.Errorf("AckWait %s must be at least 100ms", c.AckWait))
	}
	for kind, n := range c.KindLimits {
		if n < 1 {
			errs = append(errs, fmt.Errorf("limit %d for kind %q must be at least 1", n, kind))
		}
	}
	if c.Scheduling != pool.Weighted && c.Scheduling != pool.Strict {
		errs = append(errs, fmt.Errorf("unknown scheduling %d", c.Scheduling))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	return nil
}
