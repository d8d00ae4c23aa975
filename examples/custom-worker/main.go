// Command custom-worker is a worker of a LoopDeployment with one task kind
// of its own, "upper": docs/writing-workers.md walks through it.
package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/tenire/loop-operator/worker"
	"github.com/tenire/loop-operator/worker/loop"
)

func main() {
	// SIGTERM (the pod's deletion) drains the worker, then Run returns.
	ctx, _ := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	mux := loop.NewMux()
	mux.Handle("upper", func(ctx context.Context, t *loop.Task) error {
		if ctx.Err() != nil { // drain deadline or timeout: the task goes back to the queue
			return ctx.Err()
		}
		fmt.Printf("task %s: %s\n", t.ID, bytes.ToUpper(t.Payload))
		return nil
	})
	if err := worker.Run(ctx, mux); err != nil {
		fmt.Fprintln(os.Stderr, "custom-worker:", err)
		os.Exit(1)
	}
}
