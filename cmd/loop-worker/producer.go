package main

import (
	"fmt"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tenire/loop-operator/worker/queue"
)

// dialProducer connects to NATS and returns a producer and a closer.
func dialProducer(url string, names queue.Names) (*queue.Producer, func(), error) {
	nc, err := nats.Connect(url)
	if err != nil {
		return nil, nil, fmt.Errorf("submit: connect to %s: %w", url, err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("submit: %w", err)
	}
	return queue.NewProducer(js, names), nc.Close, nil
}
