package embedded_test

import (
	"fmt"
	"os"

	"github.com/nats-io/nats.go"

	"github.com/tenire/loop-operator/worker/embedded"
)

// Example runs a NATS server with JetStream in the process, as
// loop-worker --standalone does.
func Example() {
	dir, err := os.MkdirTemp("", "embedded-example")
	if err != nil {
		fmt.Println(err)
		return
	}
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
	fmt.Println(nc.IsConnected())
	// Output: true
}
