package loop

import (
	"context"
	"fmt"
	"runtime/debug"
	"time"

	"github.com/go-logr/logr"

	"github.com/tenire/loop-operator/worker/pool"
)

// Middleware wraps a Handler, in the manner of asynq's ServeMux: it may
// act before and after the handler it wraps, change the context or the
// error, or not call it at all.
type Middleware func(Handler) Handler

// Mux routes a task to the handler of its kind, through middleware. The
// zero value is not usable; create one with NewMux. A Mux is not safe for
// registering handlers concurrently with serving tasks: register first.
type Mux struct {
	handlers map[string]Handler
	mws      []Middleware
}

// NewMux returns an empty Mux.
func NewMux() *Mux { return &Mux{handlers: make(map[string]Handler)} }

// Handle registers the handler of a task kind. It panics with an empty
// kind or a nil handler, or when called twice for a kind.
func (m *Mux) Handle(kind string, h Handler) {
	switch {
	case kind == "" || h == nil:
		panic("loop: Handle needs a kind and a handler")
	case m.handlers[kind] != nil:
		panic(fmt.Sprintf("loop: handler for kind %q registered twice", kind))
	}
	m.handlers[kind] = h
}

// Use appends middleware; the first one given is the outermost.
func (m *Mux) Use(mws ...Middleware) {
	for _, mw := range mws {
		if mw == nil {
			panic("loop: Use needs non-nil middleware")
		}
	}
	m.mws = append(m.mws, mws...)
}

// Has reports whether kind has a handler.
func (m *Mux) Has(kind string) bool { return m.handlers[kind] != nil }

// ServeTask runs the task's handler, through the middleware. A kind
// without a handler fails with an error wrapping ErrNoHandler. It builds
// the chain on every call; Handler builds it once.
func (m *Mux) ServeTask(ctx context.Context, t *Task) error {
	return m.Handler()(ctx, t)
}

// Handler returns the handler that routes by kind, wrapped in the
// middleware registered so far.
func (m *Mux) Handler() Handler {
	route := func(ctx context.Context, t *Task) error {
		h := m.handlers[t.Kind]
		if h == nil {
			return fmt.Errorf("%w %q", ErrNoHandler, t.Kind)
		}
		return h(ctx, t)
	}
	return chain(route, m.mws...)
}

// chain wraps h in mws, the first outermost.
func chain(h Handler, mws ...Middleware) Handler {
	for i := len(mws) - 1; i >= 0; i-- {
		h = mws[i](h)
	}
	return h
}

// Recover is middleware that turns a panic of the handler into its
// error, a *pool.PanicError carrying the value and the stack, so that the
// panic fails only its task. The loop uses it outermost.
func Recover() Middleware {
	return func(next Handler) Handler {
		return func(ctx context.Context, t *Task) (err error) {
			defer func() {
				if r := recover(); r != nil {
					err = &pool.PanicError{Value: r, Stack: debug.Stack()}
				}
			}()
			return next(ctx, t)
		}
	}
}

// Logging is middleware that logs every task's start and end at
// verbosity 1 (the loop logs failures at verbosity 0 itself). With
// verbosity 1 disabled it adds nothing to the chain.
func Logging(log logr.Logger) Middleware {
	log = log.V(1)
	return func(next Handler) Handler {
		if !log.Enabled() {
			return next
		}
		return func(ctx context.Context, t *Task) error {
			log.Info("task started", "task", t.ID, "kind", t.Kind, "attempt", t.Attempt)
			start := time.Now()
			err := next(ctx, t)
			if err != nil {
				log.Info("task ended", "task", t.ID, "kind", t.Kind, "took", time.Since(start), "error", err.Error())
			} else {
				log.Info("task ended", "task", t.ID, "kind", t.Kind, "took", time.Since(start))
			}
			return err
		}
	}
}

// observe is the loop's metrics middleware: the handler's duration by
// kind.
func (l *Loop) observe(next Handler) Handler {
	return func(ctx context.Context, t *Task) error {
		start := time.Now()
		err := next(ctx, t)
		l.metrics.duration.WithLabelValues(t.Kind).Observe(time.Since(start).Seconds())
		return err
	}
}
