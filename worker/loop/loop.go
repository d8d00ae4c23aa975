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

// ErrAlreadyRun is returned by a second call of Run.
var ErrAlreadyRun = errors.New("loop: Run called twice")

// Loop is a worker's event loop. Create it with New, register handlers
// with Handle, then call Run once.
type Loop struct {
	cfg      Config
	log      logr.Logger
	mux      *Mux
	serve    Handler // mux.Handler() in the loop's middleware, set by Run
	started  atomic.Bool
	state    atomic.Int32
	ready    chan struct{}
	drainReq chan drainRequest // triggers but the pod's (see requestDrain)
	// podDrainReq carries the pod's drain request.
	podDrainReq chan drainRequest
	// announceSoon asks for an announcement now: the worker went from
	// holding nothing to holding a task, or back.
	announceSoon chan struct{}

	names       queue.Names
	nc          *nats.Conn
	js          jetstream.JetStream
	checkpoints *checkpoint.Store
	countsKV    jetstream.KeyValue // delivery counts, in the checkpoint bucket
	pool        *pool.Pool[*inflight]
	fetcher     *queue.Fetcher
	prefetch    *prefetchSizer // nil unless Config.Prefetch is 0
	breakers    *breaker.Set
	metrics     *metrics
	counters    [len(outcomeIndex)]atomic.Uint64
	stuck       atomic.Int64           // pool slots held by abandoned handlers
	waitingFor  atomic.Pointer[string] // what start-up waits for (the queue), for /readyz

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
	returned      atomic.Bool  // the handler has returned: the task is being settled
	abandoned     bool         // running past TaskTimeout + StuckGrace; guarded by Loop.mu
	// counts are the task's delivery counts as read before dispatch;
	// countsKnown is false when they could not be read.
	counts      queue.DeliveryCounts
	countsKnown bool
}

// runningSince returns when the handler started, or the zero time when it
// has not started or has returned. A task whose handler returned is being
// settled: writing its result or acknowledging it can wait on the server
// (a stream electing its leader), which is neither the handler's time nor
// a stuck slot.
func (f *inflight) runningSince() time.Time {
	if n := f.started.Load(); n != 0 && !f.returned.Load() {
		return time.Unix(0, n)
	}
	return time.Time{}
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
	if cfg.Mux == nil {
		cfg.Mux = NewMux()
	}
	l := &Loop{
		cfg:          cfg,
		log:          cfg.Logger.WithValues("loop", cfg.Name),
		mux:          cfg.Mux,
		ready:        make(chan struct{}),
		drainReq:     make(chan drainRequest, 1),
		podDrainReq:  make(chan drainRequest, 1),
		announceSoon: make(chan struct{}, 1),
		names:        queue.NewNames(cfg.Stream, cfg.SubjectPrefix),
		held:         make(map[*inflight]struct{}),
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

// Handle registers the handler of a task kind on the loop's Mux. It
// panics if called after Run, with an empty kind or a nil handler, or
// twice for a kind.
func (l *Loop) Handle(kind string, h Handler) {
	if l.started.Load() {
		panic("loop: Handle called after Run")
	}
	l.mux.Handle(kind, h)
}

// Use adds middleware around every handler, inside the loop's own
// (recovery, metrics, logging); the first one given is the outermost. It
// panics if called after Run.
func (l *Loop) Use(mws ...Middleware) {
	if l.started.Load() {
		panic("loop: Use called after Run")
	}
	l.mux.Use(mws...)
}

// State returns the lifecycle state.
func (l *Loop) State() State { return State(l.state.Load()) }

// Ready returns a channel closed when the loop is Running.
func (l *Loop) Ready() <-chan struct{} { return l.ready }

// RequestDrain asks a Running loop to drain with the given deadline; later
// requests are ignored.
func (l *Loop) RequestDrain(deadline time.Time) {
	l.requestDrain(drainRequest{deadline: deadline, cause: DrainCauseAPI})
}

// Run runs the loop until its context is cancelled, which drains it with
// DrainTimeout as the deadline, and returns nil after a clean drain. Any
// other drain leaves it idle in Drained until the context is cancelled.
// Run returns an error if start-up fails.
//
// Run starts the components in order and stops them in reverse order; the
// states, triggers and the drain are in lifecycle.go.
func (l *Loop) Run(ctx context.Context) error {
	if !l.started.CompareAndSwap(false, true) {
		return ErrAlreadyRun
	}
	defer l.setState(Stopped)
	l.setState(Starting)
	cleanup := context.WithoutCancel(ctx)
	l.serve = chain(l.mux.Handler(), Recover(), l.observe, Logging(l.log))

	adminErr, stopAdmin, err := l.startAdmin(cleanup) // 1. admin server
	if err != nil {
		return err
	}
	defer stopAdmin()
	if err := l.connect(); err != nil { // 2. queue
		return err
	}
	defer l.disconnect()
	consumers, err := l.ensureQueue(ctx)
	if err != nil {
		return err
	}
	if err := l.startPool(); err != nil { // 3. pool
		return err
	}
	defer l.stopPool(cleanup)
	var bg sync.WaitGroup // 4. fetcher, heartbeats, announcements, pod watch
	defer bg.Wait()
	fetch, err := l.startFetcher(ctx, cleanup, consumers)
	if err != nil {
		return err
	}
	defer fetch.stop()
	hbCtx, stopHeartbeat := context.WithCancel(cleanup)
	defer stopHeartbeat()
	bg.Go(func() { l.heartbeat(hbCtx) })
	bg.Go(func() { l.announce(hbCtx) })
	podCtx, stopPod := context.WithCancel(cleanup)
	defer stopPod()
	if l.cfg.Pod != nil {
		bg.Go(func() { l.watchPod(podCtx) })
	}

	l.setState(Running)
	close(l.ready)
	req, fatalErr := l.awaitDrain(ctx, adminErr)
	exit := l.drain(ctx, req, fetch) || req.exits()
	if exit {
		stopPod()
	} else {
		l.log.Info("drained; idle until stopped")
		l.idleDrained(ctx)
	}
	return fatalErr
}

// startAdmin starts the admin HTTP server unless it is disabled. Its
// errors arrive on the channel; stop shuts it down.
func (l *Loop) startAdmin(cleanup context.Context) (errs <-chan error, stop func(), err error) {
	ch := make(chan error, 1)
	if l.cfg.AdminAddr == "-" {
		return ch, func() {}, nil
	}
	ln, err := net.Listen("tcp", l.cfg.AdminAddr)
	if err != nil {
		return nil, nil, fmt.Errorf("loop: admin server: %w", err)
	}
	l.mu.Lock()
	l.adminAddr = ln.Addr().String()
	l.mu.Unlock()
	srv := &http.Server{Handler: l.adminHandler(), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			ch <- err
		}
	}()
	l.log.Info("admin server listening", "addr", l.adminAddr)
	return ch, func() {
		sctx, cancel := context.WithTimeout(cleanup, 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}, nil
}

// ensureQueue binds to the loop's queue, waiting until it exists (the
// operator provisions it; with Config.EnsureQueue the loop provisions it
// itself), and opens the checkpoint bucket. While it waits the loop stays
// Starting and /readyz says what it waits for.
func (l *Loop) ensureQueue(ctx context.Context) ([]jetstream.Consumer, error) {
	consumers, err := l.bindQueue(ctx)
	if err != nil {
		return nil, err
	}
	if l.checkpoints, err = checkpoint.Open(ctx, l.js, l.names.CheckpointBucket); err != nil {
		return nil, fmt.Errorf("loop: %w", err)
	}
	if l.countsKV, err = l.js.KeyValue(ctx, l.names.CheckpointBucket); err != nil {
		return nil, fmt.Errorf("loop: open bucket %s: %w", l.names.CheckpointBucket, err)
	}
	return consumers, nil
}

// bindQueue returns the consumers of the loop's priorities. It retries
// queue.Bind while the queue is not provisioned, with a pause that grows
// to QueueWait, until ctx ends; any other error ends it.
func (l *Loop) bindQueue(ctx context.Context) ([]jetstream.Consumer, error) {
	if l.cfg.EnsureQueue {
		qc := l.cfg.QueueConfig()
		qc.ResultRetention = l.cfg.ResultRetention
		consumers, err := queue.Ensure(ctx, l.js, l.names, qc)
		if err != nil {
			return nil, fmt.Errorf("loop: %w", err)
		}
		return consumers, nil
	}
	defer l.waitingFor.Store(nil)
	consumers, err := queue.AwaitBind(ctx, l.js, l.names, l.priorityNames(), l.cfg.ResultRetention, l.cfg.QueueWait, func(err error) {
		why := "waiting for the queue: " + err.Error()
		l.waitingFor.Store(&why)
		l.log.Info("waiting for the operator to provision the queue; not ready until then", "reason", err.Error())
	})
	if err != nil {
		return nil, fmt.Errorf("loop: %w", err)
	}
	if l.waitingFor.Load() != nil {
		l.log.Info("the queue is provisioned; bound to it")
	}
	return consumers, nil
}

func (l *Loop) startPool() error {
	p, err := pool.New(pool.Options{
		MinWorkers:  l.cfg.MinWorkers,
		MaxWorkers:  l.cfg.MaxWorkers,
		IdleTimeout: l.cfg.IdleTimeout,
		Classes:     l.cfg.Priorities,
		Scheduling:  l.cfg.Scheduling,
		KindLimits:  l.cfg.KindLimits,
		TaskTimeout: l.cfg.TaskTimeout,
		Backlog:     max(l.cfg.Prefetch, 0),
	}, l.run, l.done)
	if err != nil {
		return fmt.Errorf("loop: %w", err)
	}
	l.pool = p
	if l.cfg.Prefetch == 0 {
		l.prefetch = newPrefetchSizer(l.cfg.MaxWorkers)
	}
	return nil
}

// stopPool ends the pool. After a drain nothing is queued and nothing
// should run; a handler that ignores cancellation is left behind rather
// than hanging Run.
func (l *Loop) stopPool(cleanup context.Context) {
	l.pool.Stop()
	l.pool.Abort()
	wctx, cancel := context.WithTimeout(cleanup, l.cfg.AbortGrace)
	defer cancel()
	if err := l.pool.Wait(wctx); err != nil {
		l.log.Info("handlers still running after cancellation; stopping without them")
	}
}

// fetching is the running fetcher: stop ends it, done is closed when it
// has.
type fetching struct {
	stop context.CancelFunc
	done <-chan struct{}
}

// startFetcher starts pulling tasks, unless the pod was asked to drain
// before this worker started: then it pulls nothing and requests the
// drain.
func (l *Loop) startFetcher(ctx, cleanup context.Context, consumers []jetstream.Consumer) (fetching, error) {
	weights := make([]int, len(l.cfg.Priorities))
	for i, p := range l.cfg.Priorities {
		weights[i] = p.Weight
	}
	var err error
	l.fetcher, err = queue.NewFetcher(consumers, queue.FetcherOptions{
		Priorities: l.priorityNames(),
		Weights:    weights,
		Strict:     l.cfg.Scheduling == pool.Strict,
		MaxWait:    l.cfg.FetchWait,
	})
	if err != nil {
		return fetching{}, fmt.Errorf("loop: %w", err)
	}
	fetchCtx, stop := context.WithCancel(cleanup)
	if dc, ok := l.cfg.Pod.(DrainChecker); ok {
		deadline, requested, err := dc.DrainRequested(ctx)
		switch {
		case err != nil:
			l.log.Error(err, "checking the pod for a drain request before pulling")
		case requested:
			l.log.Info("the pod was asked to drain before this worker started; pulling nothing")
			l.requestDrain(drainRequest{deadline: deadline, cause: DrainCausePod})
			stop()
		}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		l.fetchLoop(fetchCtx)
	}()
	return fetching{stop: stop, done: done}, nil
}

// watchPod turns the pod's drain request into a drain trigger.
func (l *Loop) watchPod(ctx context.Context) {
	deadline, err := l.cfg.Pod.WaitForDrain(ctx)
	if err != nil {
		if ctx.Err() == nil {
			l.log.Error(err, "watching the pod for a drain request failed; drains come from signals and /drain only")
		}
		return
	}
	l.requestDrain(drainRequest{deadline: deadline, cause: DrainCausePod})
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
