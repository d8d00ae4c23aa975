package loop

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tenire/loop-operator/worker/breaker"
	"github.com/tenire/loop-operator/worker/checkpoint"
	"github.com/tenire/loop-operator/worker/pool"
	"github.com/tenire/loop-operator/worker/queue"
)

// State is the loop's lifecycle state.
type State int32

const (
	// Starting means configuration, admin server, queue connection, pool
	// and fetcher are being set up.
	Starting State = iota
	// Running means pulling and running tasks; ready.
	Running
	// Draining means no longer pulling; running tasks finish until the deadline.
	Draining
	// Drained means every task held was finished or handed back; idle.
	Drained
	// Stopped means Run has returned.
	Stopped
)

// String returns the state's name.
func (s State) String() string {
	switch s {
	case Starting:
		return "Starting"
	case Running:
		return "Running"
	case Draining:
		return "Draining"
	case Drained:
		return "Drained"
	default:
		return "Stopped"
	}
}

// ErrAlreadyRun is returned by a second call of Run.
var ErrAlreadyRun = errors.New("loop: Run called twice")

// abortGrace is how long a drain waits, after cancelling the running
// tasks at the deadline, for their handlers to return before it hands their
// tasks back without them.
var abortGrace = 5 * time.Second

// Loop is a worker's event loop. Create it with New, register handlers
// with Handle, then call Run once.
type Loop struct {
	cfg      Config
	log      logr.Logger
	handlers map[string]Handler
	started  atomic.Bool
	state    atomic.Int32
	ready    chan struct{}
	drainReq chan drainRequest

	names       queue.Names
	nc          *nats.Conn
	js          jetstream.JetStream
	checkpoints *checkpoint.Store
	countsKV    jetstream.KeyValue // delivery counts, in the checkpoint bucket
	pool        *pool.Pool[*inflight]
	fetcher     *queue.Fetcher
	breakers    *breaker.Set
	metrics     *metrics
	counters    [len(outcomeIndex)]atomic.Uint64
	stuck       atomic.Int64 // pool slots held by abandoned handlers

	mu         sync.Mutex
	held       map[*inflight]struct{}
	draining   bool
	emptied    chan struct{} // closed by settle when a drain holds no task any more
	finished   int
	handedBack int
	report     *DrainReport
	adminAddr  string
}

var outcomeIndex = [...]string{OutcomeSucceeded, OutcomeRetried, OutcomeDeadLettered, OutcomeHandedBack, OutcomeDeferred}

// inflight is a task this worker holds: waiting in the pool or running.
type inflight struct {
	d             *queue.Delivery
	beat          time.Time // last receipt or heartbeat; guarded by Loop.mu
	settled       bool      // acked, retried, dead-lettered or handed back; guarded by Loop.mu
	hadCheckpoint bool      // set and read on the pool goroutine
	saved         atomic.Bool
	started       atomic.Int64 // Unix nanoseconds when the handler started; 0 before
	abandoned     bool         // running past TaskTimeout + StuckGrace; guarded by Loop.mu
	// counts are the task's delivery counts as read before dispatch;
	// countsKnown is false when they could not be read.
	counts      queue.DeliveryCounts
	countsKnown bool
}

// startedAt returns when the handler started, or the zero time.
func (f *inflight) startedAt() time.Time {
	if n := f.started.Load(); n != 0 {
		return time.Unix(0, n)
	}
	return time.Time{}
}

type drainRequest struct {
	deadline time.Time
	cause    string
}

// New checks the configuration, applies its defaults and returns a loop.
func New(cfg Config) (*Loop, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if cfg.Registry == nil {
		cfg.Registry = newRegistry()
	}
	l := &Loop{
		cfg:      cfg,
		log:      cfg.Logger.WithValues("loop", cfg.Name),
		handlers: make(map[string]Handler),
		ready:    make(chan struct{}),
		drainReq: make(chan drainRequest, 1),
		names:    queue.NewNames(cfg.Stream, cfg.SubjectPrefix),
		held:     make(map[*inflight]struct{}),
	}
	threshold := cfg.BreakerThreshold
	if threshold < 0 {
		threshold = 0
	}
	l.metrics = newMetrics(cfg.Registry, l)
	l.breakers = breaker.New(breaker.Options{
		FailureThreshold: threshold,
		Cooldown:         cfg.BreakerCooldown,
		OnChange: func(kind string, from, to breaker.State) {
			l.log.Info("circuit breaker changed", "kind", kind, "from", from.String(), "to", to.String())
			l.metrics.breakerState.WithLabelValues(kind).Set(breakerValue(to))
		},
	})
	return l, nil
}

// Handle registers the handler of a task kind. It panics if called after
// Run, with an empty kind or a nil handler, or twice for a kind.
func (l *Loop) Handle(kind string, h Handler) {
	switch {
	case l.started.Load():
		panic("loop: Handle called after Run")
	case kind == "" || h == nil:
		panic("loop: Handle needs a kind and a handler")
	case l.handlers[kind] != nil:
		panic(fmt.Sprintf("loop: handler for kind %q registered twice", kind))
	}
	l.handlers[kind] = h
}

// State returns the lifecycle state.
func (l *Loop) State() State { return State(l.state.Load()) }

func (l *Loop) setState(s State) {
	l.state.Store(int32(s))
	l.log.Info("state changed", "state", s.String())
}

// Ready returns a channel closed when the loop is Running.
func (l *Loop) Ready() <-chan struct{} { return l.ready }

// AdminAddr returns the admin server's listening address once Run has
// started it ("" when disabled or not yet listening).
func (l *Loop) AdminAddr() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.adminAddr
}

// RequestDrain asks a Running loop to drain with the given deadline. It
// is what POST /drain calls; later requests are ignored.
func (l *Loop) RequestDrain(deadline time.Time) {
	l.requestDrain(drainRequest{deadline: deadline, cause: "api"})
}

func (l *Loop) requestDrain(r drainRequest) {
	select {
	case l.drainReq <- r:
	default:
	}
}

// Run runs the loop until its context is cancelled, which drains it with
// DrainTimeout as the deadline, and returns nil after a clean drain. Any
// other drain leaves it idle in Drained until the context is cancelled.
// Run returns an error if start-up fails.
func (l *Loop) Run(ctx context.Context) (err error) {
	if !l.started.CompareAndSwap(false, true) {
		return ErrAlreadyRun
	}
	defer l.setState(Stopped)
	l.setState(Starting)
	cleanup := context.WithoutCancel(ctx)

	// 1. Admin server.
	adminErr := make(chan error, 1)
	if l.cfg.AdminAddr != "-" {
		ln, err := net.Listen("tcp", l.cfg.AdminAddr)
		if err != nil {
			return fmt.Errorf("loop: admin server: %w", err)
		}
		l.mu.Lock()
		l.adminAddr = ln.Addr().String()
		l.mu.Unlock()
		srv := &http.Server{Handler: l.adminHandler(), ReadHeaderTimeout: 10 * time.Second}
		go func() {
			if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
				adminErr <- err
			}
		}()
		defer func() {
			sctx, cancel := context.WithTimeout(cleanup, 5*time.Second)
			defer cancel()
			_ = srv.Shutdown(sctx)
		}()
		l.log.Info("admin server listening", "addr", l.adminAddr)
	}

	// 2. Queue connection.
	if err := l.connect(); err != nil {
		return err
	}
	defer l.disconnect()
	consumers, err := queue.Ensure(ctx, l.js, l.names, l.cfg.QueueConfig())
	if err != nil {
		return fmt.Errorf("loop: %w", err)
	}
	if l.checkpoints, err = checkpoint.Open(ctx, l.js, l.names.CheckpointBucket); err != nil {
		return fmt.Errorf("loop: %w", err)
	}
	if l.countsKV, err = l.js.KeyValue(ctx, l.names.CheckpointBucket); err != nil {
		return fmt.Errorf("loop: open bucket %s: %w", l.names.CheckpointBucket, err)
	}
	if l.cfg.ResultRetention > 0 {
		if err := queue.EnsureResults(ctx, l.js, l.names, l.cfg.ResultRetention, l.cfg.Replicas); err != nil {
			return fmt.Errorf("loop: %w", err)
		}
	}

	// 3. Pool.
	weights := make([]int, len(l.cfg.Priorities))
	for i, p := range l.cfg.Priorities {
		weights[i] = p.Weight
	}
	l.pool, err = pool.New(pool.Options{
		MinWorkers:  l.cfg.MinWorkers,
		MaxWorkers:  l.cfg.MaxWorkers,
		IdleTimeout: l.cfg.IdleTimeout,
		Classes:     l.cfg.Priorities,
		Scheduling:  l.cfg.Scheduling,
		KindLimits:  l.cfg.KindLimits,
		TaskTimeout: l.cfg.TaskTimeout,
		Backlog:     l.cfg.Prefetch,
	}, l.run, l.done)
	if err != nil {
		return fmt.Errorf("loop: %w", err)
	}
	defer func() {
		// After a drain nothing is queued and nothing should run; a handler
		// that ignores cancellation is left behind rather than hanging Run.
		l.pool.Stop()
		l.pool.Abort()
		wctx, cancel := context.WithTimeout(cleanup, abortGrace)
		defer cancel()
		if err := l.pool.Wait(wctx); err != nil {
			l.log.Info("handlers still running after cancellation; stopping without them")
		}
	}()

	// 4. Fetcher, heartbeats and the pod watch.
	l.fetcher, err = queue.NewFetcher(consumers, queue.FetcherOptions{
		Priorities: l.priorityNames(),
		Weights:    weights,
		Strict:     l.cfg.Scheduling == pool.Strict,
		MaxWait:    l.cfg.FetchWait,
	})
	if err != nil {
		return fmt.Errorf("loop: %w", err)
	}
	var bg sync.WaitGroup
	defer bg.Wait()
	fetchCtx, stopFetch := context.WithCancel(cleanup)
	defer stopFetch()
	if dc, ok := l.cfg.Pod.(DrainChecker); ok {
		deadline, requested, err := dc.DrainRequested(ctx)
		switch {
		case err != nil:
			l.log.Error(err, "checking the pod for a drain request before pulling")
		case requested:
			l.log.Info("the pod was asked to drain before this worker started; pulling nothing")
			l.requestDrain(drainRequest{deadline: deadline, cause: "pod"})
			stopFetch()
		}
	}
	fetchDone := make(chan struct{})
	go func() {
		defer close(fetchDone)
		l.fetchLoop(fetchCtx)
	}()
	hbCtx, stopHeartbeat := context.WithCancel(cleanup)
	defer stopHeartbeat()
	bg.Go(func() { l.heartbeat(hbCtx) })
	bg.Go(func() { l.announce(hbCtx) })
	podCtx, stopPod := context.WithCancel(cleanup)
	defer stopPod()
	if l.cfg.Pod != nil {
		bg.Go(func() {
			deadline, err := l.cfg.Pod.WaitForDrain(podCtx)
			if err != nil {
				if podCtx.Err() == nil {
					l.log.Error(err, "watching the pod for a drain request failed; drains come from signals and /drain only")
				}
				return
			}
			l.requestDrain(drainRequest{deadline: deadline, cause: "pod"})
		})
	}

	l.setState(Running)
	close(l.ready)

	var (
		req      drainRequest
		exit     bool
		fatalErr error
	)
	select {
	case <-ctx.Done():
		req, exit = drainRequest{deadline: time.Now().Add(l.cfg.DrainTimeout), cause: "context"}, true
	case req = <-l.drainReq:
	case fatalErr = <-adminErr:
		fatalErr = fmt.Errorf("loop: admin server: %w", fatalErr)
		req, exit = drainRequest{deadline: time.Now().Add(l.cfg.DrainTimeout), cause: "admin server failure"}, true
	}
	l.log.Info("drain requested", "cause", req.cause, "deadline", req.deadline)
	if l.drain(ctx, req, stopFetch, fetchDone) {
		exit = true
	}
	stopPod()
	if !exit {
		l.log.Info("drained; idle until stopped")
		<-ctx.Done()
	}
	return fatalErr
}

func (l *Loop) priorityNames() []string { return classNames(l.cfg.Priorities) }

func classNames(classes []pool.Class) []string {
	out := make([]string, len(classes))
	for i, p := range classes {
		out[i] = p.Name
	}
	return out
}

func (l *Loop) connect() error {
	if l.cfg.Conn != nil {
		l.nc = l.cfg.Conn
	} else {
		opts := append([]nats.Option{
			nats.Name(l.cfg.Name),
			nats.MaxReconnects(-1),
			nats.ReconnectWait(l.cfg.ReconnectWait),
			nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
				l.log.Info("disconnected from NATS", "error", err)
			}),
			nats.ReconnectHandler(func(nc *nats.Conn) {
				l.log.Info("reconnected to NATS", "url", nc.ConnectedUrlRedacted())
			}),
		}, l.cfg.NATSOptions...)
		nc, err := nats.Connect(l.cfg.NATSURL, opts...)
		if err != nil {
			return fmt.Errorf("loop: connect to NATS at %s: %w", l.cfg.NATSURL, err)
		}
		l.nc = nc
	}
	js, err := jetstream.New(l.nc)
	if err != nil {
		return fmt.Errorf("loop: jetstream: %w", err)
	}
	l.js = js
	return nil
}

// disconnect flushes the acks still buffered and closes a connection the
// loop opened.
func (l *Loop) disconnect() {
	if err := l.nc.FlushTimeout(5 * time.Second); err != nil {
		l.log.Error(err, "flushing NATS before closing")
	}
	if l.cfg.Conn == nil {
		l.nc.Close()
	}
}

func (l *Loop) poolStats() pool.Stats {
	if l.State() == Starting {
		return pool.Stats{}
	}
	if p := l.pool; p != nil {
		return p.Stats()
	}
	return pool.Stats{}
}
