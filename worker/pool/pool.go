package pool

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"
)

// Scheduling chooses how the pool picks between priority classes.
type Scheduling int

const (
	// Weighted picks classes by smooth weighted round-robin: under
	// contention each class gets its weight's share of the picks and no
	// class with a runnable task starves.
	Weighted Scheduling = iota
	// Strict always picks the first class (in Options.Classes order) that
	// has a runnable task; lower classes run only when higher ones are
	// empty or blocked by kind limits.
	Strict
)

// String returns the name used in LoopSpec.scheduling.
func (s Scheduling) String() string {
	if s == Strict {
		return "Strict"
	}
	return "Weighted"
}

// Class is a priority class.
type Class struct {
	// Name identifies the class, e.g. "high".
	Name string
	// Weight is the class's share under Weighted scheduling. Default 1.
	Weight int
}

// Options configure a Pool. The zero value is usable: one class, between 0
// and 1 goroutines, no limits and no timeout.
type Options struct {
	// MinWorkers goroutines are kept even when idle. Default 0.
	MinWorkers int
	// MaxWorkers bounds the goroutines running tasks. Default 1.
	MaxWorkers int
	// IdleTimeout is how long a goroutine above MinWorkers waits for work
	// before it exits (up to a quarter more: the pool looks for idle
	// goroutines every quarter of it). Default 30s.
	IdleTimeout time.Duration
	// Classes lists the priority classes, highest priority first. Default
	// one class named "default".
	Classes []Class
	// Scheduling picks between classes. Default Weighted.
	Scheduling Scheduling
	// KindLimits caps the number of running tasks per kind. Kinds not in
	// the map are unlimited. A limit must be at least 1.
	KindLimits map[string]int
	// TaskTimeout bounds each task's run through its context. Zero means
	// no timeout.
	TaskTimeout time.Duration
	// Backlog is how many tasks may wait beyond MaxWorkers; TrySubmit
	// fails with ErrFull above MaxWorkers+Backlog (WaitFree waits for room).
	// Default 0: the pool holds at most MaxWorkers tasks, which is what a
	// queue consumer wants so that it never takes more than it can start.
	Backlog int
}

// Result describes how one task ended.
type Result struct {
	// Kind and Class are the values the task was submitted with.
	Kind  string
	Class int
	// Err is the handler's error, a *PanicError, or an error wrapping
	// ErrTimeout.
	Err error
	// Aborted reports that Abort was called while the task ran.
	Aborted bool
	// Enqueued, Started and Finished are the task's timestamps. A pool
	// without a DoneFunc takes none (reading the clock is a large part of
	// a dispatch's cost on some machines).
	Enqueued, Started, Finished time.Time
}

// Handler runs one task. It must return when ctx is done.
type Handler[T any] func(ctx context.Context, task T) error

// DoneFunc is called on the worker goroutine after each task, before the
// task's slot is released.
type DoneFunc[T any] func(task T, r Result)

var (
	// ErrClosed is returned by TrySubmit and WaitFree after Stop.
	ErrClosed = errors.New("pool: stopped")
	// ErrFull is returned by TrySubmit when MaxWorkers+Backlog tasks are
	// queued or running.
	ErrFull = errors.New("pool: full")
	// ErrTimeout is wrapped by the error of a task that ran past
	// TaskTimeout.
	ErrTimeout = errors.New("pool: task timed out")
)

// PanicError is the error of a task whose handler panicked.
type PanicError struct {
	// Value is what the handler passed to panic.
	Value any
	// Stack is the goroutine's stack at the panic.
	Stack []byte
}

// Error returns the panic value and the stack.
func (e *PanicError) Error() string {
	return fmt.Sprintf("panic: %v\n%s", e.Value, e.Stack)
}

// Unwrap returns the panic value if it is an error.
func (e *PanicError) Unwrap() error {
	err, _ := e.Value.(error)
	return err
}

// Stats is a snapshot of the pool.
type Stats struct {
	// Workers is the number of goroutines, Idle of them waiting for work.
	Workers, Idle int
	// Running tasks are in their handler; Queued ones wait for a goroutine
	// or a kind slot.
	Running, Queued int
}

// Pool runs tasks of type T. Create it with New; the zero value is not
// usable.
type Pool[T any] struct {
	opts    Options
	handler Handler[T]
	done    DoneFunc[T]

	epoch   time.Time // entries hold their enqueue time as an offset from it
	ctx     context.Context
	abort   context.CancelFunc
	aborted atomic.Bool

	mu       sync.Mutex
	q        *queue[T]
	workers  int          // goroutines alive, retiring ones included
	retiring int          // goroutines the reaper told to exit that have not exited yet
	idle     []*worker[T] // LIFO: the most recently idle goroutine is woken first, the oldest retires first
	reaper   *time.Timer
	reaping  bool   // the reaper is armed
	tick     uint64 // how often the reaper ran: a clock that costs no clock read
	running  int
	// ending counts the goroutines that ended a task and wait for mu,
	// each about to take the next runnable queued task: start leaves
	// that many queued tasks to them rather than wake or start another.
	ending    atomic.Int32
	stopped   bool
	exited    chan struct{} // closed when stopped and no goroutine is left
	space     chan struct{} // closed when slots free (see wakeBatch) and spaceWait is set
	spaceWait bool
	wakeBatch int // a waiting WaitFree is woken when this many slots are free, or the queue is empty
}

type worker[T any] struct {
	wake      chan struct{}
	idleSince uint64 // Pool.tick when it went idle; guarded by Pool.mu
	exit      bool   // set by the reaper, with Pool.mu held, before it wakes the goroutine
	// task, when handed is set, is the task the goroutine runs next
	// without taking Pool.mu: set by whoever wakes or starts it, which
	// counted it running. The wake-up (or the go statement) orders it.
	task   entry[T]
	handed bool
}

// New returns a running pool that calls handler for every task and done,
// if not nil, after each. It starts MinWorkers goroutines.
func New[T any](opts Options, handler Handler[T], done DoneFunc[T]) (*Pool[T], error) {
	if handler == nil {
		return nil, errors.New("pool: handler is nil")
	}
	if opts.MaxWorkers == 0 {
		opts.MaxWorkers = 1
	}
	if opts.IdleTimeout == 0 {
		opts.IdleTimeout = 30 * time.Second
	}
	if len(opts.Classes) == 0 {
		opts.Classes = []Class{{Name: "default", Weight: 1}}
	}
	switch {
	case opts.MaxWorkers < 1:
		return nil, fmt.Errorf("pool: MaxWorkers %d must be at least 1", opts.MaxWorkers)
	case opts.MinWorkers < 0 || opts.MinWorkers > opts.MaxWorkers:
		return nil, fmt.Errorf("pool: MinWorkers %d must be between 0 and MaxWorkers %d", opts.MinWorkers, opts.MaxWorkers)
	case opts.IdleTimeout < 0:
		return nil, fmt.Errorf("pool: IdleTimeout %s must not be negative", opts.IdleTimeout)
	case opts.TaskTimeout < 0:
		return nil, fmt.Errorf("pool: TaskTimeout %s must not be negative", opts.TaskTimeout)
	case opts.Backlog < 0:
		return nil, fmt.Errorf("pool: Backlog %d must not be negative", opts.Backlog)
	case opts.Scheduling != Weighted && opts.Scheduling != Strict:
		return nil, fmt.Errorf("pool: unknown scheduling %d", opts.Scheduling)
	}
	weights := make([]int, len(opts.Classes))
	classIdx := make(map[string]int, len(opts.Classes))
	for i, c := range opts.Classes {
		if c.Weight == 0 {
			c.Weight = 1
		}
		if c.Weight < 0 {
			return nil, fmt.Errorf("pool: class %q has negative weight %d", c.Name, c.Weight)
		}
		if _, dup := classIdx[c.Name]; dup {
			return nil, fmt.Errorf("pool: class %q is listed twice", c.Name)
		}
		weights[i] = c.Weight
		classIdx[c.Name] = i
	}
	limits := make(map[string]int, len(opts.KindLimits))
	for kind, n := range opts.KindLimits {
		if n < 1 {
			return nil, fmt.Errorf("pool: limit %d for kind %q must be at least 1", n, kind)
		}
		limits[kind] = n
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &Pool[T]{
		opts:    opts,
		handler: handler,
		done:    done,
		epoch:   time.Now(),
		ctx:     ctx,
		abort:   cancel,
		q:       newQueue[T](weights, opts.Scheduling == Strict, limits),
		exited:  make(chan struct{}),
		space:   make(chan struct{}),
		// With a backlog, a waiter is woken once a quarter of it is free
		// rather than at every finished task, so that it refills the
		// queue in batches (one wake-up, and for a queue consumer one
		// fetch, per batch); the workers still have queued tasks
		// meanwhile. Without a backlog every free slot is an idle worker,
		// so the waiter is woken at once; so it is whenever the queue is
		// empty.
		wakeBatch: max(1, min(opts.Backlog, opts.MaxWorkers)/4),
	}
	p.mu.Lock()
	for range opts.MinWorkers {
		p.spawn(nil)
	}
	p.mu.Unlock()
	return p, nil
}

// TrySubmit queues a task of the given kind in class (an index into
// Options.Classes). It returns ErrFull when the pool holds
// MaxWorkers+Backlog tasks and ErrClosed after Stop.
func (p *Pool[T]) TrySubmit(kind string, class int, task T) error {
	if class < 0 || class >= len(p.opts.Classes) {
		return fmt.Errorf("pool: class %d out of range [0,%d)", class, len(p.opts.Classes))
	}
	var enqueued int64
	if p.done != nil {
		enqueued = int64(time.Since(p.epoch))
	}
	p.mu.Lock()
	switch {
	case p.stopped:
		p.mu.Unlock()
		return ErrClosed
	case p.free() <= 0: // below 0 after SetBacklog shrank it
		p.mu.Unlock()
		return ErrFull
	}
	p.q.push(entry[T]{ks: p.q.kind(kind), class: class, value: task, enqueued: enqueued})
	w := p.start()
	p.mu.Unlock()
	if w != nil {
		w.wake <- struct{}{} // capacity 1, and only who took it off the idle list sends
	}
	return nil
}

// start hands the next task the queue lets run (by class, within its
// kind's limit) to an idle goroutine, which it returns for the caller to
// wake once p.mu is released, or to a new goroutine while fewer than
// MaxWorkers run. Either runs it without taking p.mu first: a task costs
// one wake-up and no second trip through the lock, which thousands of
// goroutines finishing together would otherwise queue on. It does nothing
// when no goroutine is free, when the goroutines that just ended a task
// and wait for p.mu are as many as the queued tasks (they take them, as
// busy as they are, with no wake-up: on no-op tasks a task bound to a
// goroutine still waking would wait while they went idle), or when no
// task may run (its kind is at its limit: the goroutine that ends one of
// that kind takes it). p.mu must be held.
func (p *Pool[T]) start() *worker[T] {
	n := len(p.idle)
	if n == 0 && p.workers-p.retiring >= p.opts.MaxWorkers || p.q.len() <= int(p.ending.Load()) {
		return nil
	}
	e, ok := p.q.pop()
	if !ok {
		return nil
	}
	p.running++
	if n == 0 {
		p.spawn(&e)
		return nil
	}
	w := p.idle[n-1]
	p.idle[n-1] = nil
	p.idle = p.idle[:n-1]
	w.task, w.handed = e, true
	return w
}

func (p *Pool[T]) free() int {
	return p.opts.MaxWorkers + p.opts.Backlog - p.running - p.q.len()
}

// SetBacklog changes Options.Backlog while the pool runs (the loop's
// adaptive prefetch sizes it). Tasks queued beyond a smaller backlog stay
// queued; a larger one wakes a waiting WaitFree at once.
func (p *Pool[T]) SetBacklog(n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	n = max(n, 0)
	if n == p.opts.Backlog || p.stopped {
		return
	}
	p.opts.Backlog = n
	p.wakeBatch = max(1, min(n, p.opts.MaxWorkers)/4)
	if p.spaceWait && p.free() > 0 {
		close(p.space)
		p.space = make(chan struct{})
		p.spaceWait = false
	}
}

// Shed takes out the queued tasks beyond MaxWorkers+Backlog, which there
// are after SetBacklog shrank the backlog, newest first and from the
// lowest class up, and returns them for the caller to hand back. It
// returns nil when there are none or after Stop.
func (p *Pool[T]) Shed() []T {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := -p.free()
	if n <= 0 || p.stopped {
		return nil
	}
	entries := p.q.removeNewest(n)
	out := make([]T, len(entries))
	for i := range entries {
		out[i] = entries[i].value
	}
	return out
}

// Backlog returns the current Options.Backlog.
func (p *Pool[T]) Backlog() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.opts.Backlog
}

// WaitFree blocks until the pool accepts at least one task and returns how
// many it accepts. It returns ErrClosed after Stop and ctx.Err() when ctx
// ends first.
func (p *Pool[T]) WaitFree(ctx context.Context) (int, error) {
	for {
		p.mu.Lock()
		if p.stopped {
			p.mu.Unlock()
			return 0, ErrClosed
		}
		if n := p.free(); n > 0 {
			p.mu.Unlock()
			return n, nil
		}
		p.spaceWait = true
		space := p.space
		p.mu.Unlock()
		select {
		case <-space:
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
}

// Stats returns a snapshot of the pool.
func (p *Pool[T]) Stats() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	return Stats{Workers: p.workers, Idle: len(p.idle), Running: p.running, Queued: p.q.len()}
}

// Stop makes the pool refuse new tasks and returns the queued tasks that
// have not started, in class order and FIFO within a class. Running tasks
// go on; Wait waits for them. Stop is idempotent.
func (p *Pool[T]) Stop() []T {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopped {
		return nil
	}
	p.stopped = true
	entries := p.q.removeAll()
	out := make([]T, len(entries))
	for i := range entries {
		out[i] = entries[i].value
	}
	for _, w := range p.idle {
		w.wake <- struct{}{}
	}
	p.idle = p.idle[:0]
	if p.reaper != nil {
		p.reaper.Stop()
		p.reaping = false
	}
	if p.spaceWait {
		close(p.space)
		p.spaceWait = false
	}
	if p.workers == 0 {
		close(p.exited)
	}
	return out
}

// Abort cancels the context of every running task. Tasks submitted later
// start with a cancelled context.
func (p *Pool[T]) Abort() {
	p.aborted.Store(true)
	p.abort()
}

// Wait blocks until Stop was called and every goroutine has exited, which
// means every task finished and its DoneFunc returned. It returns ctx.Err()
// if ctx ends first.
func (p *Pool[T]) Wait(ctx context.Context) error {
	select {
	case <-p.exited:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// spawn starts a goroutine, which runs first, if not nil, the task it is
// handed (counted running already). p.mu must be held.
func (p *Pool[T]) spawn(first *entry[T]) {
	p.workers++
	w := &worker[T]{wake: make(chan struct{}, 1)}
	if first != nil {
		w.task, w.handed = *first, true
	}
	go p.loop(w)
}

func (p *Pool[T]) loop(w *worker[T]) {
	for {
		// A handed task runs without the lock; otherwise (a new goroutine
		// with no task, or woken by Stop) the goroutine picks one.
		e, ok := w.task, w.handed
		w.task, w.handed = entry[T]{}, false
		if !ok {
			p.mu.Lock()
			if e, ok = p.q.pop(); ok {
				p.running++
				p.mu.Unlock()
			}
		}
		for ok {
			p.run(e)
			p.ending.Add(1)
			p.mu.Lock()
			p.ending.Add(-1)
			p.finished(e)
			if e, ok = p.q.pop(); ok {
				p.running++
				p.mu.Unlock()
			}
		}
		// p.mu is held here.
		if p.stopped {
			break
		}
		// Idle. One timer for the pool (the reaper) retires the goroutines
		// idle for IdleTimeout, oldest first: a timer per goroutine, reset
		// at every idle spell, costs the runtime's timer locks on every
		// task when thousands of goroutines take turns, and so does
		// reading the clock here, under p.mu, on machines where that is
		// slow. The reaper's ticks are the clock.
		w.idleSince = p.tick
		p.idle = append(p.idle, w)
		if !p.reaping && p.workers-p.retiring > p.opts.MinWorkers {
			p.armReaper()
		}
		p.mu.Unlock()
		<-w.wake
		if w.exit {
			p.mu.Lock()
			p.retiring--
			break
		}
	}
	p.workers--
	if p.stopped && p.workers == 0 {
		close(p.exited)
	}
	p.mu.Unlock()
}

// finished counts e's end: its kind's slot and the pool's are free again,
// and a waiting WaitFree is woken when enough are (see wakeBatch). p.mu
// must be held.
func (p *Pool[T]) finished(e entry[T]) {
	p.q.release(e.ks)
	p.running--
	if p.spaceWait && (p.q.len() == 0 || p.free() >= p.wakeBatch) {
		close(p.space)
		p.space = make(chan struct{})
		p.spaceWait = false
	}
}

// reaperTicks is how many reaper ticks make an IdleTimeout.
const reaperTicks = 4

// armReaper makes reap run a tick from now. p.mu must be held.
func (p *Pool[T]) armReaper() {
	p.reaping = true
	d := max(p.opts.IdleTimeout/reaperTicks, time.Millisecond)
	if p.reaper == nil {
		p.reaper = time.AfterFunc(d, p.reap)
		return
	}
	p.reaper.Reset(d)
}

// reap counts a tick and tells the goroutines idle for reaperTicks full
// ticks (IdleTimeout, up to a quarter more) to exit, oldest first, keeping
// MinWorkers. It ticks again while goroutines above MinWorkers are idle; a
// tick not counted while it is off only makes the next ones later.
func (p *Pool[T]) reap() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.reaping = false
	if p.stopped {
		return
	}
	p.tick++
	n := 0
	for n < len(p.idle) && p.workers-p.retiring > p.opts.MinWorkers && p.tick-p.idle[n].idleSince > reaperTicks {
		w := p.idle[n]
		w.exit = true
		p.retiring++
		w.wake <- struct{}{} // capacity 1 and only the popper sends
		n++
	}
	if n > 0 {
		rest := copy(p.idle, p.idle[n:])
		clear(p.idle[rest:])
		p.idle = p.idle[:rest]
	}
	if len(p.idle) > 0 && p.workers-p.retiring > p.opts.MinWorkers {
		p.armReaper()
	}
}

func (p *Pool[T]) run(e entry[T]) {
	ctx := p.ctx
	var cancel context.CancelFunc
	if p.opts.TaskTimeout > 0 {
		ctx, cancel = context.WithTimeout(ctx, p.opts.TaskTimeout)
	}
	var started time.Time
	if p.done != nil {
		started = time.Now()
	}
	err := p.call(ctx, e.value)
	if cancel != nil {
		if err != nil && errors.Is(context.Cause(ctx), context.DeadlineExceeded) && p.ctx.Err() == nil {
			err = fmt.Errorf("%w after %s: %w", ErrTimeout, p.opts.TaskTimeout, err)
		}
		cancel()
	}
	if p.done != nil {
		p.done(e.value, Result{
			Kind:     e.ks.name,
			Class:    e.class,
			Err:      err,
			Aborted:  p.aborted.Load(),
			Enqueued: p.epoch.Add(time.Duration(e.enqueued)),
			Started:  started,
			Finished: time.Now(),
		})
	}
}

func (p *Pool[T]) call(ctx context.Context, task T) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = &PanicError{Value: r, Stack: debug.Stack()}
		}
	}()
	return p.handler(ctx, task)
}
