package worker_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/tenire/loop-operator/internal/natstest"
	"github.com/tenire/loop-operator/worker"
	"github.com/tenire/loop-operator/worker/loop"
	"github.com/tenire/loop-operator/worker/queue"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// env is an environment of a pod outside a cluster (no POD_NAME).
func env(vars map[string]string) func(string) string {
	return func(k string) string { return vars[k] }
}

func TestRunReadsTheOperatorsSettingsAndServesTheMuxThroughItsMiddlewareUntilCancelled(t *testing.T) {
	srv := natstest.Start(t)
	_, js := srv.Connect()
	settings, _ := json.Marshal(map[string]any{
		"name": "mail", "namespace": "shop",
		"queue": map[string]any{"nats": map[string]any{"url": srv.URL, "resultRetention": "1m"}},
	})
	names := queue.NewNames("LOOP_shop_mail", "loops.shop.mail")
	// The operator's part: provision the queue the worker binds to.
	if _, err := queue.Ensure(t.Context(), js, names, queue.Config{ResultRetention: time.Minute}); err != nil {
		t.Fatal(err)
	}

	var wrapped atomic.Int32
	ran := make(chan string, 1)
	mux := loop.NewMux()
	mux.Use(func(next loop.Handler) loop.Handler {
		return func(ctx context.Context, t *loop.Task) error {
			wrapped.Add(1)
			return next(ctx, t)
		}
	})
	mux.Handle("email", func(_ context.Context, t *loop.Task) error {
		ran <- string(t.Payload)
		return nil
	})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		done <- worker.Options{Getenv: env(map[string]string{
			"LOOP_SETTINGS": string(settings), "ADMIN_ADDR": "127.0.0.1:0",
		})}.Run(ctx, mux)
	}()
	if _, _, err := queue.NewProducer(js, names).Submit(t.Context(), queue.Task{ID: "m-1", Kind: "email", Payload: []byte("hi")}); err != nil {
		t.Fatal(err)
	}
	select {
	case got := <-ran:
		if got != "hi" {
			t.Errorf("the handler got payload %q, want %q", got, "hi")
		}
	case err := <-done:
		t.Fatalf("Run returned before the task ran: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("the task did not run within 30s")
	}
	if wrapped.Load() != 1 {
		t.Errorf("the mux's middleware ran %d times, want 1", wrapped.Load())
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run after cancel = %v, want nil (a clean drain)", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return within 30s of its context's end")
	}
}

func TestRunWithoutSettingsSaysThatNoQueueIsConfigured(t *testing.T) {
	err := worker.Options{Getenv: env(nil)}.Run(t.Context(), loop.NewMux())
	if !errors.Is(err, worker.ErrSettings) || !strings.Contains(err.Error(), "LOOP_SETTINGS is not set") {
		t.Errorf("Run without settings = %v, want ErrSettings naming LOOP_SETTINGS", err)
	}
}

func TestConfigRefusesBadSettingsNamingTheField(t *testing.T) {
	_, err := worker.Config(worker.Options{Getenv: env(map[string]string{"LOOP_SETTINGS": `{"nameX":"x"}`})})
	if !errors.Is(err, worker.ErrSettings) || !strings.Contains(err.Error(), `unknown field "nameX"`) {
		t.Errorf("Config = %v, want ErrSettings naming the unknown field", err)
	}
}

func TestConfigTakesThePodNameAsTheWorkersNameAndTheAdminAddress(t *testing.T) {
	cfg, err := worker.Config(worker.Options{Getenv: env(map[string]string{
		"LOOP_SETTINGS": `{"name":"a","namespace":"b","queue":{"nats":{"url":"nats://x:4222"}}}`,
		"ADMIN_ADDR":    "127.0.0.1:9999",
	}), Adjust: func(c *loop.Config) error { c.MaxWorkers = 3; return nil }})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.AdminAddr != "127.0.0.1:9999" || cfg.NATSURL != "nats://x:4222" || cfg.Stream != "LOOP_b_a" || cfg.MaxWorkers != 3 {
		t.Errorf("Config = admin %q, url %q, stream %q, max workers %d", cfg.AdminAddr, cfg.NATSURL, cfg.Stream, cfg.MaxWorkers)
	}
}

func TestRunNeedsAMux(t *testing.T) {
	if err := worker.Run(t.Context(), nil); err == nil {
		t.Error("Run(nil mux) succeeded")
	}
}
