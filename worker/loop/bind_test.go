package loop_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tenire/loop-operator/worker/loop"
	"github.com/tenire/loop-operator/worker/queue"
)

// TestAWorkerStartedBeforeItsQueueWaitsUnreadyAndBindsOnceProvisioned:
// the worker never creates the queue; /readyz says what it waits for; once
// the queue is provisioned (by the operator, here by the test) it binds,
// becomes ready and runs a task.
func TestAWorkerStartedBeforeItsQueueWaitsUnreadyAndBindsOnceProvisioned(t *testing.T) {
	e := newEnv(t)
	cfg := e.config(t)
	cfg.EnsureQueue = false
	cfg.QueueWait = 50 * time.Millisecond
	l, err := loop.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ran := make(chan string, 1)
	l.Handle("k", func(_ context.Context, task *loop.Task) error { ran <- task.ID; return nil })
	ctx, cancel := context.WithCancel(t.Context())
	result := make(chan error, 1)
	go func() { result <- l.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-result; err != nil {
			t.Errorf("Run: %v", err)
		}
	})

	readyz := func() (int, string) {
		addr := l.AdminAddr()
		if addr == "" {
			return 0, ""
		}
		resp, err := http.Get("http://" + addr + "/readyz")
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	eventually(t, "readyz answers 503 naming the missing stream before the queue exists", func() bool {
		code, body := readyz()
		return code == http.StatusServiceUnavailable && strings.Contains(body, "waiting for the queue") && strings.Contains(body, stream)
	})
	if _, err := e.js.Stream(t.Context(), stream); err == nil {
		t.Fatal("the worker created its stream: only the operator may")
	}

	if _, err := queue.Ensure(t.Context(), e.js, queue.NewNames(stream, prefix), cfg.QueueConfig()); err != nil {
		t.Fatal(err)
	}
	select {
	case <-l.Ready():
	case err := <-result:
		t.Fatalf("Run ended: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("the worker did not become ready after its queue was provisioned")
	}
	if _, _, err := e.producer.Submit(t.Context(), queue.Task{ID: "after-bind", Kind: "k"}); err != nil {
		t.Fatal(err)
	}
	select {
	case id := <-ran:
		if id != "after-bind" {
			t.Errorf("ran %q", id)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the bound worker ran nothing")
	}
}
