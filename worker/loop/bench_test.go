package loop_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"

	"github.com/tenire/loop-operator/internal/natstest"
	"github.com/tenire/loop-operator/worker/loop"
	"github.com/tenire/loop-operator/worker/queue"
)

// The queue benchmarks put this loop beside its anchors in one run; the
// sub-benchmarks are named impl=<name> so that benchstat -col /impl shows
// them side by side (make bench does, see hack/bench):
//
//   - impl=loop: this package with benchConcurrency workers and the
//     settings a LoopDeployment runs with by default (the prefetch sized to
//     the tasks: on no-op tasks, up to one pool more);
//   - impl=loop-off: the same with the prefetch off (spec.loop.pool.prefetch
//     0: the loop pulls only as many tasks as it has free workers);
//   - impl=loop-prefetch: the same with a fixed prefetch of
//     benchConcurrency, holding up to one pool of tasks more;
//   - impl=plain: a bare nats.go pull consumer that acks each message,
//     pulling benchConcurrency messages per request (the loop's batch), on
//     the same embedded server;
//   - impl=asynq: github.com/hibiken/asynq with Concurrency
//     benchConcurrency on a local redis-server, which the benchmark starts
//     and stops (it must be installed: make bench installs Debian's
//     redis-server). asynq polls Redis when its queues are empty, every
//     TaskCheckInterval (default 1 s); the benchmarks set 1 ms, its best
//     case, so that the latency figures compare delivery, not polling.
const benchConcurrency = 16

// asynqCheckInterval is asynq's TaskCheckInterval in the benchmarks.
const asynqCheckInterval = time.Millisecond

// BenchmarkQueueThroughput stores b.N no-op tasks, then times their
// processing until the last one has run; it reports tasks/s.
func BenchmarkQueueThroughput(b *testing.B) {
	throughput := func(prefetch int) func(b *testing.B) {
		return func(b *testing.B) {
			srv, js := benchNATS(b)
			storeTasks(b, js, b.N)
			var n atomic.Int64
			done := make(chan struct{})
			target := int64(b.N)
			runLoop(b, srv, prefetch, func(context.Context, *loop.Task) error {
				if n.Add(1) == target {
					close(done)
				}
				return nil
			}, func() { b.ResetTimer() }, done)
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "tasks/s")
		}
	}
	b.Run("impl=loop", throughput(0))
	b.Run("impl=loop-off", throughput(loop.PrefetchOff))
	b.Run("impl=loop-prefetch", throughput(benchConcurrency))
	b.Run("impl=plain", func(b *testing.B) {
		_, js := benchNATS(b)
		cons := storeTasks(b, js, b.N)
		var n atomic.Int64
		done := make(chan struct{})
		target := int64(b.N)
		b.ResetTimer()
		cc, err := cons.Consume(func(m jetstream.Msg) {
			_ = m.Ack()
			if n.Add(1) == target {
				close(done)
			}
		}, jetstream.PullMaxMessages(benchConcurrency))
		if err != nil {
			b.Fatal(err)
		}
		<-done
		b.StopTimer()
		cc.Drain()
		<-cc.Closed()
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "tasks/s")
	})
	b.Run("impl=asynq", func(b *testing.B) {
		opt := benchRedis(b)
		c := asynq.NewClient(opt)
		defer func() { _ = c.Close() }()
		var wg sync.WaitGroup
		errs := make(chan error, 8)
		for w := range 8 {
			wg.Go(func() {
				for i := w; i < b.N; i += 8 {
					if _, err := c.Enqueue(asynq.NewTask("noop", nil), asynq.MaxRetry(0)); err != nil {
						errs <- err
						return
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		if err := <-errs; err != nil {
			b.Fatal(err)
		}
		var n atomic.Int64
		done := make(chan struct{})
		target := int64(b.N)
		b.ResetTimer()
		srv := startAsynq(b, opt, func(context.Context, *asynq.Task) error {
			if n.Add(1) == target {
				close(done)
			}
			return nil
		})
		<-done
		b.StopTimer()
		srv.Shutdown()
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "tasks/s")
	})
}

// BenchmarkQueueLatency enqueues one task at a time and waits until a
// handler starts it (closed loop, no backlog), b.N times; ns/op is that
// round trip and p50-us/p99-us the percentiles of enqueue-to-start
// latency, from before the enqueue call to the handler's first line.
func BenchmarkQueueLatency(b *testing.B) {
	b.Run("impl=loop", func(b *testing.B) {
		srv, js := benchNATS(b)
		if _, err := queue.Ensure(b.Context(), js, names, queue.Config{}); err != nil {
			b.Fatal(err)
		}
		p := queue.NewProducer(js, names)
		started := make(chan time.Time, 1)
		ready := make(chan struct{})
		runLoop(b, srv, 0, func(context.Context, *loop.Task) error {
			started <- time.Now()
			return nil
		}, func() { close(ready) }, measureLatency(b, ready, started, func(ctx context.Context, i int) error {
			_, _, err := p.Submit(ctx, queue.Task{Kind: "noop", ID: "t-" + strconv.Itoa(i)})
			return err
		}))
	})
	b.Run("impl=plain", func(b *testing.B) {
		_, js := benchNATS(b)
		cons, err := queue.Ensure(b.Context(), js, names, queue.Config{})
		if err != nil {
			b.Fatal(err)
		}
		p := queue.NewProducer(js, names)
		started := make(chan time.Time, 1)
		cc, err := cons[0].Consume(func(m jetstream.Msg) {
			started <- time.Now()
			_ = m.Ack()
		}, jetstream.PullMaxMessages(benchConcurrency))
		if err != nil {
			b.Fatal(err)
		}
		ready := make(chan struct{})
		close(ready)
		<-measureLatency(b, ready, started, func(ctx context.Context, i int) error {
			_, _, err := p.Submit(ctx, queue.Task{Kind: "noop", ID: "t-" + strconv.Itoa(i)})
			return err
		})
		cc.Drain()
		<-cc.Closed()
	})
	b.Run("impl=asynq", func(b *testing.B) {
		opt := benchRedis(b)
		c := asynq.NewClient(opt)
		defer func() { _ = c.Close() }()
		started := make(chan time.Time, 1)
		srv := startAsynq(b, opt, func(context.Context, *asynq.Task) error {
			started <- time.Now()
			return nil
		})
		defer srv.Shutdown()
		ready := make(chan struct{})
		close(ready)
		<-measureLatency(b, ready, started, func(ctx context.Context, _ int) error {
			_, err := c.EnqueueContext(ctx, asynq.NewTask("noop", nil), asynq.MaxRetry(0))
			return err
		})
	})
}

// measureLatency starts, once ready is closed, the closed loop of
// BenchmarkQueueLatency: enqueue task i, wait for its start time on
// started. It reports the percentiles and closes the returned channel
// when done.
func measureLatency(b *testing.B, ready <-chan struct{}, started <-chan time.Time, enqueue func(ctx context.Context, i int) error) chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		<-ready
		ctx := b.Context()
		lat := make([]time.Duration, b.N)
		b.ResetTimer()
		for i := range b.N {
			t0 := time.Now()
			if err := enqueue(ctx, i); err != nil {
				b.Error(err)
				return
			}
			select {
			case t := <-started:
				lat[i] = t.Sub(t0)
			case <-ctx.Done():
				return
			}
		}
		b.StopTimer()
		slices.Sort(lat)
		b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-us")
		b.ReportMetric(float64(lat[(len(lat)*99+99)/100-1].Microseconds()), "p99-us")
	}()
	return done
}

// benchNATS starts an embedded JetStream server for one benchmark.
func benchNATS(b *testing.B) (*natstest.Server, jetstream.JetStream) {
	b.Helper()
	srv := natstest.Start(b)
	_, js := srv.Connect()
	return srv, js
}

// storeTasks creates the loop's stream and consumers and stores n no-op
// tasks; it returns the consumer of the default priority.
func storeTasks(b *testing.B, js jetstream.JetStream, n int) jetstream.Consumer {
	b.Helper()
	cons, err := queue.Ensure(b.Context(), js, names, queue.Config{})
	if err != nil {
		b.Fatal(err)
	}
	p := queue.NewProducer(js, names)
	const batch = 1000
	for i := 0; i < n; i += batch {
		ts := make([]queue.Task, 0, batch)
		for j := i; j < min(i+batch, n); j++ {
			ts = append(ts, queue.Task{Kind: "noop", ID: "t-" + strconv.Itoa(j)})
		}
		if err := p.SubmitBatch(b.Context(), ts); err != nil {
			b.Fatal(err)
		}
	}
	return cons[0]
}

// runLoop runs a loop with benchConcurrency workers, the given prefetch and
// handler for kind "noop" until done is closed; started is called once the
// loop is ready.
func runLoop(b *testing.B, srv *natstest.Server, prefetch int, handler loop.Handler, started func(), done <-chan struct{}) {
	b.Helper()
	l, err := loop.New(loop.Config{
		NATSURL: srv.URL, Stream: stream, SubjectPrefix: prefix,
		MinWorkers: benchConcurrency, MaxWorkers: benchConcurrency, Prefetch: prefetch, AdminAddr: "-", FetchWait: 100 * time.Millisecond,
		EnsureQueue: true,
	})
	if err != nil {
		b.Fatal(err)
	}
	l.Handle("noop", handler)
	ctx, cancel := context.WithCancel(b.Context())
	result := make(chan error, 1)
	go func() { result <- l.Run(ctx) }()
	select {
	case <-l.Ready():
	case err := <-result:
		b.Fatalf("the loop ended before it was ready: %v", err)
	}
	started()
	<-done
	b.StopTimer()
	cancel()
	if err := <-result; err != nil {
		b.Fatal(err)
	}
}

// benchRedis starts redis-server on a free port, with no persistence, for
// one benchmark, and stops it when the benchmark ends.
func benchRedis(b *testing.B) asynq.RedisClientOpt {
	b.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		b.Fatal("redis-server is not installed; make bench installs it (Debian: apt-get install redis-server)")
	}
	dir := b.TempDir()
	sock := filepath.Join(dir, "redis.sock")
	cmd := exec.Command(bin, "--port", "0", "--unixsocket", sock, "--save", "", "--appendonly", "no", "--dir", dir, "--logfile", filepath.Join(dir, "redis.log"))
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	b.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		<-exited
	})
	rc := redis.NewClient(&redis.Options{Network: "unix", Addr: sock})
	defer func() { _ = rc.Close() }()
	ctx, cancel := context.WithTimeout(b.Context(), 10*time.Second)
	defer cancel()
	for {
		if err := rc.Ping(ctx).Err(); err == nil {
			break
		} else if ctx.Err() != nil {
			log, _ := os.ReadFile(filepath.Join(dir, "redis.log"))
			b.Fatalf("redis-server did not answer: %v\n%s", err, log)
		}
		select {
		case <-exited:
			b.Fatalf("redis-server exited: %v", cmd.ProcessState)
		case <-time.After(10 * time.Millisecond):
		}
	}
	return asynq.RedisClientOpt{Network: "unix", Addr: sock}
}

// startAsynq starts an asynq server with benchConcurrency workers that
// runs handler for every task.
func startAsynq(b *testing.B, opt asynq.RedisClientOpt, handler asynq.HandlerFunc) *asynq.Server {
	b.Helper()
	srv := asynq.NewServer(opt, asynq.Config{
		Concurrency:       benchConcurrency,
		TaskCheckInterval: asynqCheckInterval,
		LogLevel:          asynq.ErrorLevel,
	})
	if err := srv.Start(handler); err != nil {
		b.Fatal(err)
	}
	return srv
}
