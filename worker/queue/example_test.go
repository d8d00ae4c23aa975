package queue_test

import (
	"context"
	"fmt"
	"os"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tenire/loop-operator/worker/embedded"
	"github.com/tenire/loop-operator/worker/queue"
)

func Example() {
	// A real JetStream server in the process; in production, dial yours.
	dir, _ := os.MkdirTemp("", "queue-example")
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
	names := queue.NewNames("LOOP_shop_mail", "loops.shop.mail")
	if _, err := queue.Ensure(ctx, js, names, queue.Config{Priorities: []string{"high", "low"}}); err != nil {
		fmt.Println(err)
		return
	}
	p := queue.NewProducer(js, names)
	seq, _, err := p.Submit(ctx, queue.Task{ID: "order-42", Kind: "email", Priority: "high", Payload: []byte(`{"to":"a@b.c"}`)})
	fmt.Println(seq, err, names.TaskSubject("high"))
	// Output: 1 <nil> loops.shop.mail.tasks.high
}
