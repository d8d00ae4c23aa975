package loop_test

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tenire/loop-operator/worker/embedded"
	"github.com/tenire/loop-operator/worker/loop"
	"github.com/tenire/loop-operator/worker/pool"
	"github.com/tenire/loop-operator/worker/queue"
)

// Example builds a worker with one task kind, submits a task and drains
// the worker by cancelling its context, as SIGTERM does in the binary.
func Example() {
	// A real JetStream server in the process; in a cluster, use NATSURL.
	dir, _ := os.MkdirTemp("", "loop-example")
	defer os.RemoveAll(dir)
	srv, err := embedded.Start(embedded.Options{StoreDir: dir})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer srv.Shutdown()

	l, err := loop.New(loop.Config{
		NATSURL:       srv.URL(),
		Stream:        "LOOP_shop_mail",
		SubjectPrefix: "loops.shop.mail",
		Priorities:    []pool.Class{{Name: "high", Weight: 3}, {Name: "low", Weight: 1}},
		MaxWorkers:    8,
		KindLimits:    map[string]int{"email": 2},
		AdminAddr:     "127.0.0.1:0",
		DrainTimeout:  10 * time.Second,
		EnsureQueue:   true, // no operator here to provision the queue
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	sent := make(chan string, 1)
	l.Handle("email", func(ctx context.Context, t *loop.Task) error {
		sent <- fmt.Sprintf("sent %s (%s, attempt %d)", t.Payload, t.Priority, t.Attempt)
		return nil
	})

	ctx, cancel := context.WithCancel(context.Background())
	result := make(chan error, 1)
	go func() { result <- l.Run(ctx) }()
	<-l.Ready()

	// A producer, e.g. another service, submits a task.
	nc, _ := nats.Connect(srv.URL())
	defer nc.Close()
	js, _ := jetstream.New(nc)
	p := queue.NewProducer(js, queue.NewNames("LOOP_shop_mail", "loops.shop.mail"))
	_, _, _ = p.Submit(ctx, queue.Task{ID: "order-42", Kind: "email", Priority: "high", Payload: []byte("receipt")})

	fmt.Println(<-sent)
	cancel() // drain, then Run returns
	fmt.Println(<-result, l.State())
	// Output:
	// sent receipt (high, attempt 1)
	// <nil> Stopped
}
