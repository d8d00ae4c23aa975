// Command natsloss tries to reproduce, with nats-server and a plain nats.go
// client alone, the work-queue loss docs/queue.md states as a known limit:
// a JetStream cluster of three nats-server processes, a work-queue stream
// and a durable pull consumer configured as the operator configures a
// loop's (worker/queue), pull workers like the loop's (fetch what is free
// without waiting, else long-poll one), the consumer's leader moved onto
// the stream's leader and that server killed -delay later, under load.
// Every task id is recorded when its ack succeeds; the run fails when a
// task is never acknowledged while the stream says nothing is left.
//
//	go run ./hack/natsloss -nats-server "$(hack/kube-bins.sh --print-dir)/nats-server" -runs 5 -delay 250ms
//
// It exits 1 when a run lost tasks, and prints the stream's and consumer's
// own state after each run. A finding goes upstream (nats-io/nats-server)
// with this program, the server's version and the kept folder (-keep).
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tenire/loop-operator/internal/localcluster"
)

const (
	stream   = "T"
	consumer = "default"
	subject  = "t.default"
)

func main() {
	os.Exit(natsloss())
}

// natsloss runs the runs and returns the exit code.
func natsloss() int {
	bin := flag.String("nats-server", "nats-server", "the nats-server binary")
	runs := flag.Int("runs", 1, "runs, each on a new cluster")
	delay := flag.Duration("delay", 250*time.Millisecond, "time from the consumer's leader move to the kill")
	tasks := flag.Int("tasks", 4000, "tasks per run")
	pods := flag.Int("pods", 3, "worker connections")
	pool := flag.Int("pool", 20, "tasks each worker runs at once")
	keep := flag.Bool("keep", false, "keep each run's folder (stores and logs)")
	reprovision := flag.Duration("reprovision", 0, "when set, update the stream and the consumer with their own configuration this often, as the operator's poller does after a failed poll")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	lostRuns := 0
	for i := range *runs {
		dir, err := os.MkdirTemp("", "natsloss-")
		if err != nil {
			return fail(err)
		}
		lost, err := run(ctx, runConfig{bin: *bin, dir: dir, delay: *delay, tasks: *tasks, pods: *pods, pool: *pool, reprovision: *reprovision})
		if err != nil {
			return fail(err)
		}
		fmt.Printf("run %d: lost %d (folder %s)\n", i+1, lost, dir)
		if lost > 0 {
			lostRuns++
		} else if !*keep {
			_ = os.RemoveAll(dir)
		}
	}
	if lostRuns > 0 {
		fmt.Printf("%d of %d runs lost tasks\n", lostRuns, *runs)
		return 1
	}
	return 0
}

func fail(err error) int {
	fmt.Fprintln(os.Stderr, "natsloss:", err)
	return 2
}

type runConfig struct {
	bin, dir           string
	delay, reprovision time.Duration
	tasks, pods, pool  int
}

// run does one run and returns how many tasks were never acknowledged.
func run(parent context.Context, rc runConfig) (int, error) {
	c, err := localcluster.StartNATSCluster(rc.bin, rc.dir, 3, logr.Discard())
	if err != nil {
		return 0, err
	}
	defer c.Stop()
	ctx, cancel := context.WithCancel(parent)
	defer cancel()
	nc, js, err := connect(c.URL())
	if err != nil {
		return 0, err
	}
	defer nc.Close()
	scfg := jetstream.StreamConfig{
		Name: stream, Subjects: []string{subject, "t.scheduled.default.>"}, Retention: jetstream.WorkQueuePolicy,
		Storage: jetstream.FileStorage, Replicas: 3, Duplicates: 2 * time.Minute, AllowMsgSchedules: true, AllowRollup: true,
	}
	ccfg := jetstream.ConsumerConfig{
		Durable: consumer, FilterSubject: subject, AckPolicy: jetstream.AckExplicitPolicy,
		AckWait: 30 * time.Second, MaxDeliver: -1, MaxAckPending: 1000, DeliverPolicy: jetstream.DeliverAllPolicy,
	}
	if _, err := js.CreateStream(ctx, scfg); err != nil {
		return 0, err
	}
	if _, err := js.CreateOrUpdateConsumer(ctx, stream, ccfg); err != nil {
		return 0, err
	}
	for i := range rc.tasks {
		m := nats.NewMsg(subject)
		m.Header.Set(jetstream.MsgIDHeader, strconv.Itoa(i))
		m.Data = []byte(strconv.Itoa(i))
		if _, err := js.PublishMsg(ctx, m); err != nil {
			return 0, err
		}
	}
	acked := &ledger{done: map[string]bool{}}
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	if rc.reprovision > 0 {
		wg.Go(func() {
			tick := time.NewTicker(rc.reprovision)
			defer tick.Stop()
			for {
				select {
				case <-tick.C:
				case <-ctx.Done():
					return
				}
				pctx, pcancel := context.WithTimeout(ctx, 5*time.Second)
				_, _ = js.CreateOrUpdateStream(pctx, scfg)
				_, _ = js.CreateOrUpdateConsumer(pctx, stream, ccfg)
				pcancel()
			}
		})
	}
	for range rc.pods {
		wnc, wjs, err := connect(c.URL())
		if err != nil {
			return 0, err
		}
		defer wnc.Close()
		wg.Go(func() { work(ctx, &wg, wjs, rc.pool, acked) })
	}
	if !waitFor(ctx, time.Minute, func() bool { return acked.count() >= rc.tasks/10 }) {
		return 0, fmt.Errorf("fewer than %d tasks acknowledged in a minute", rc.tasks/10)
	}
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return 0, err
	}
	leader := s.CachedInfo().Cluster.Leader
	var node *localcluster.NATS
	for _, n := range c.Nodes {
		if n.Name == leader {
			node = n
		}
	}
	if node == nil {
		return 0, fmt.Errorf("no node named %q leads the stream", leader)
	}
	req, err := json.Marshal(map[string]any{"placement": map[string]string{"preferred": leader}})
	if err != nil {
		return 0, err
	}
	moved := waitFor(ctx, 30*time.Second, func() bool {
		if ci, err := js.Consumer(ctx, stream, consumer); err == nil && ci.CachedInfo().Cluster.Leader == leader {
			return true
		}
		_, _ = nc.Request("$JS.API.CONSUMER.LEADER.STEPDOWN."+stream+"."+consumer, req, 2*time.Second)
		return false
	})
	if !moved {
		return 0, fmt.Errorf("the consumer's leader did not move to %s", leader)
	}
	select {
	case <-time.After(rc.delay):
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	atKill := acked.count()
	if err := node.Kill(); err != nil {
		return 0, err
	}
	// Done when every task was acknowledged, or when the consumer has
	// nothing left to deliver and nothing delivered unacknowledged.
	waitFor(ctx, 3*time.Minute, func() bool {
		if acked.count() >= rc.tasks {
			return true
		}
		c, err := js.Consumer(ctx, stream, consumer)
		return err == nil && c.CachedInfo().NumPending == 0 && c.CachedInfo().NumAckPending == 0
	})
	cancel()
	wg.Wait()
	ictx, icancel := context.WithTimeout(parent, 10*time.Second)
	defer icancel()
	state := "stream: no answer"
	if s, err := js.Stream(ictx, stream); err == nil {
		st := s.CachedInfo().State
		state = fmt.Sprintf("stream %d messages, sequences %d-%d", st.Msgs, st.FirstSeq, st.LastSeq)
	}
	if c, err := js.Consumer(ictx, stream, consumer); err == nil {
		ci := c.CachedInfo()
		state += fmt.Sprintf("; consumer %d pending, %d ack pending, delivered %d/%d, ack floor %d/%d",
			ci.NumPending, ci.NumAckPending, ci.Delivered.Consumer, ci.Delivered.Stream, ci.AckFloor.Consumer, ci.AckFloor.Stream)
	}
	n := acked.count()
	fmt.Printf("killed %s %v after the consumer's leader moved to it, %d acknowledged then, %d now; %s\n", leader, rc.delay, atKill, n, state)
	return rc.tasks - n, nil
}

// work pulls like a loop's worker: what its pool has room for without
// waiting, else one task with a long poll; each task takes 100-800 ms.
func work(ctx context.Context, wg *sync.WaitGroup, js jetstream.JetStream, pool int, acked *ledger) {
	sem := make(chan struct{}, pool)
	var c jetstream.Consumer
	start := func(m jetstream.Msg) {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			select {
			case <-time.After(time.Duration(100+rand.IntN(700)) * time.Millisecond):
			case <-ctx.Done():
				return
			}
			if m.Ack() == nil {
				acked.add(string(m.Data()))
			}
		})
	}
	for ctx.Err() == nil {
		if c == nil {
			cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			c, _ = js.Consumer(cctx, stream, consumer)
			cancel()
			continue
		}
		free := cap(sem) - len(sem)
		if free == 0 {
			select {
			case <-time.After(5 * time.Millisecond):
			case <-ctx.Done():
			}
			continue
		}
		got := 0
		if b, err := c.FetchNoWait(free); err == nil {
			for m := range b.Messages() {
				got++
				start(m)
			}
		}
		if got == 0 {
			if b, err := c.Fetch(1, jetstream.FetchMaxWait(2*time.Second)); err == nil {
				for m := range b.Messages() {
					start(m)
				}
			}
		}
	}
}

// ledger records the tasks whose ack succeeded.
type ledger struct {
	mu   sync.Mutex
	done map[string]bool
}

func (l *ledger) add(id string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.done[id] = true
}

func (l *ledger) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.done)
}

// waitFor polls cond every 200 ms until it holds (true) or timeout passes
// or ctx ends (false).
func waitFor(ctx context.Context, timeout time.Duration, cond func() bool) bool {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-tick.C:
		case <-deadline.C:
			return false
		case <-ctx.Done():
			return false
		}
	}
	return true
}

// connect opens a connection that reconnects for ever, and its JetStream.
func connect(url string) (*nats.Conn, jetstream.JetStream, error) {
	nc, err := nats.Connect(url, nats.MaxReconnects(-1))
	if err != nil {
		return nil, nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return nc, js, nil
}
