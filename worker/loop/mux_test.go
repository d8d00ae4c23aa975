package loop_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/tenire/loop-operator/worker/loop"
	"github.com/tenire/loop-operator/worker/pool"
)

func TestMuxRoutesThroughMiddleware(t *testing.T) {
	trace := func(log *[]string, name string) loop.Middleware {
		return func(next loop.Handler) loop.Handler {
			return func(ctx context.Context, task *loop.Task) error {
				*log = append(*log, name+">")
				err := next(ctx, task)
				*log = append(*log, "<"+name)
				return err
			}
		}
	}
	tests := []struct {
		name    string
		kind    string
		wantErr func(error) bool
		wantLog []string
	}{
		{"a task goes to its kind's handler inside the middleware, the first outermost", "ok", func(err error) bool { return err == nil },
			[]string{"outer>", "inner>", "ok", "<inner", "<outer"}},
		{"a task of a kind without a handler fails with ErrNoHandler", "unknown", func(err error) bool { return errors.Is(err, loop.ErrNoHandler) },
			[]string{"outer>", "inner>", "<inner", "<outer"}},
		{"a panicking handler fails with a PanicError under Recover", "panic", func(err error) bool {
			var pe *pool.PanicError
			return errors.As(err, &pe) && pe.Value == "boom" && strings.Contains(string(pe.Stack), "mux_test.go")
		}, []string{"outer>", "inner>", "panic"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var log []string
			m := loop.NewMux()
			m.Handle("ok", func(context.Context, *loop.Task) error { log = append(log, "ok"); return nil })
			m.Handle("panic", func(context.Context, *loop.Task) error { log = append(log, "panic"); panic("boom") })
			m.Use(trace(&log, "outer"), trace(&log, "inner"))
			err := loop.Recover()(m.Handler())(t.Context(), &loop.Task{Kind: tt.kind})
			if !tt.wantErr(err) {
				t.Errorf("error = %v", err)
			}
			if !slices.Equal(log, tt.wantLog) {
				t.Errorf("calls = %v, want %v", log, tt.wantLog)
			}
		})
	}
}

func TestMuxRefusesBadRegistrations(t *testing.T) {
	h := func(context.Context, *loop.Task) error { return nil }
	tests := []struct {
		name string
		do   func(m *loop.Mux)
	}{
		{"an empty kind panics", func(m *loop.Mux) { m.Handle("", h) }},
		{"a nil handler panics", func(m *loop.Mux) { m.Handle("k", nil) }},
		{"a kind registered twice panics", func(m *loop.Mux) { m.Handle("k", h); m.Handle("k", h) }},
		{"nil middleware panics", func(m *loop.Mux) { m.Use(nil) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Error("no panic")
				}
			}()
			tt.do(loop.NewMux())
		})
	}
}

func TestLoopMiddlewareSeesEveryTask(t *testing.T) {
	e := newEnv(t)
	cfg := e.config(t)
	l, err := loop.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu   sync.Mutex
		seen []string
	)
	l.Use(func(next loop.Handler) loop.Handler {
		return func(ctx context.Context, task *loop.Task) error {
			mu.Lock()
			seen = append(seen, task.ID)
			mu.Unlock()
			return next(ctx, task)
		}
	})
	r := startLoop(t, l, map[string]loop.Handler{"echo": func(context.Context, *loop.Task) error { return nil }})
	e.submit(t, tasks("echo", 3, "m")...)
	eventually(t, "three successes", func() bool { return r.Status().Counters[loop.OutcomeSucceeded] == 3 })
	mu.Lock()
	defer mu.Unlock()
	slices.Sort(seen)
	if !slices.Equal(seen, []string{"m-0", "m-1", "m-2"}) {
		t.Errorf("middleware saw %v", seen)
	}
}
