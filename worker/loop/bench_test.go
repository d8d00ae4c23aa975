package loop_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tenire/loop-operator/worker/internal/natstest"
	"github.com/tenire/loop-operator/worker/loop"
	"github.com/tenire/loop-operator/worker/queue"
)

// BenchmarkThroughput measures no-op tasks through JetStream end to end:
// b.N tasks are stored first, then the timer runs until all are acked.
// "loop" is this library with 16 workers, pulling only up to the pool's
// free capacity; "loop-prefetch-64" may hold 64 more tasks;
// "plain" is a bare nats.go consumer that prefetches and acks, on the same
// embedded server, as the ceiling.
func BenchmarkThroughput(b *testing.B) {
	setup := func(b *testing.B) (*natstest.Server, jetstream.JetStream, []jetstream.Consumer) {
		b.Helper()
		srv := natstest.Start(b)
		_, js := srv.Connect()
		cons, err := queue.Ensure(b.Context(), js, names, queue.Config{})
		if err != nil {
			b.Fatal(err)
		}
		p := queue.NewProducer(js, names)
		const batch = 1000
		for i := 0; i < b.N; i += batch {
			ts := make([]queue.Task, 0, batch)
			for j := i; j < min(i+batch, b.N); j++ {
				ts = append(ts, queue.Task{Kind: "noop", ID: fmt.Sprint("t-", j)})
			}
			if err := p.SubmitBatch(b.Context(), ts); err != nil {
				b.Fatal(err)
			}
		}
		return srv, js, cons
	}
	runLoop := func(b *testing.B, prefetch int) {
		srv, _, _ := setup(b)
		l, err := loop.New(loop.Config{
			NATSURL: srv.URL, Stream: stream, SubjectPrefix: prefix,
			MinWorkers: 16, MaxWorkers: 16, Prefetch: prefetch, AdminAddr: "-", FetchWait: 100 * time.Millisecond,
		})
		if err != nil {
			b.Fatal(err)
		}
		var n atomic.Int64
		done := make(chan struct{})
		target := int64(b.N)
		l.Handle("noop", func(context.Context, *loop.Task) error {
			if n.Add(1) == target {
				close(done)
			}
			return nil
		})
		ctx, cancel := context.WithCancel(b.Context())
		result := make(chan error, 1)
		b.ResetTimer()
		go func() { result <- l.Run(ctx) }()
		<-done
		b.StopTimer()
		cancel()
		if err := <-result; err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "tasks/s")
	}
	b.Run("loop", func(b *testing.B) { runLoop(b, 0) })
	b.Run("loop-prefetch-64", func(b *testing.B) { runLoop(b, 64) })
	b.Run("plain", func(b *testing.B) {
		_, _, cons := setup(b)
		var n atomic.Int64
		done := make(chan struct{})
		target := int64(b.N)
		b.ResetTimer()
		cc, err := cons[0].Consume(func(m jetstream.Msg) {
			_ = m.Ack()
			if n.Add(1) == target {
				close(done)
			}
		})
		if err != nil {
			b.Fatal(err)
		}
		<-done
		b.StopTimer()
		cc.Drain()
		<-cc.Closed()
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "tasks/s")
	})
}
