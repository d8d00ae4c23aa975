package checkpoint_test

import (
	"context"
	"fmt"
	"os"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tenire/loop-operator/worker/checkpoint"
	"github.com/tenire/loop-operator/worker/embedded"
	"github.com/tenire/loop-operator/worker/queue"
)

// Example saves and loads a task's progress. Handlers do this through
// loop.Task.SaveCheckpoint and loop.Task.Checkpoint; the loop deletes the
// checkpoint when the task completes.
func Example() {
	dir, _ := os.MkdirTemp("", "checkpoint-example")
	defer os.RemoveAll(dir)
	srv, err := embedded.Start(embedded.Options{StoreDir: dir})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer srv.Shutdown()
	nc, err := nats.Connect(srv.URL())
	if err != nil {
		fmt.Println(err)
		return
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx := context.Background()
	names := queue.NewNames("LOOP_shop_export", "loops.shop.export")
	if _, err := queue.Ensure(ctx, js, names, queue.Config{}); err != nil {
		fmt.Println(err)
		return
	}

	store, err := checkpoint.Open(ctx, js, names.CheckpointBucket)
	if err != nil {
		fmt.Println(err)
		return
	}
	_ = store.Save(ctx, "export-7", []byte("row 1200"))
	cp, _ := store.Load(ctx, "export-7")
	fmt.Printf("%s\n", cp)
	_ = store.Delete(ctx, "export-7")
	cp, _ = store.Load(ctx, "export-7")
	fmt.Println(cp == nil)
	// Output:
	// row 1200
	// true
}
