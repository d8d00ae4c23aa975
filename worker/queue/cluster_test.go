package queue_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tenire/loop-operator/internal/localcluster"
	"github.com/tenire/loop-operator/internal/natstest"
	"github.com/tenire/loop-operator/worker/queue"
)

// TestEnsureSetsAndChangesTheReplicasOfTheWholeQueue provisions a queue on
// a real three-node JetStream cluster (nats-server processes) with one
// replica, fills it, then ensures it with three and back with one: every
// stream, the bucket and the consumers get the count, and nothing in them
// is lost.
func TestEnsureSetsAndChangesTheReplicasOfTheWholeQueue(t *testing.T) {
	cluster := localcluster.StartNATSClusterForTest(t, 3)
	_, js := natstest.Connect(t, cluster.URL())
	ctx := t.Context()
	names := queue.NewNames("LOOP_cluster", "loops.cluster")
	cfg := queue.Config{Priorities: []string{"high", "low"}, ResultRetention: time.Hour, Replicas: 1}
	if _, err := queue.Ensure(ctx, js, names, cfg); err != nil {
		t.Fatalf("Ensure with 1 replica: %v", err)
	}
	waitReplicas(t, js, names, 1)

	const tasks = 20
	p := queue.NewProducer(js, names)
	for i := range tasks {
		if _, _, err := p.Submit(ctx, queue.Task{ID: fmt.Sprint("t-", i), Kind: "sleep", Priority: []string{"high", "low"}[i%2]}); err != nil {
			t.Fatal(err)
		}
	}
	kv, err := js.KeyValue(ctx, names.CheckpointBucket)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, "t-0", []byte("half-way")); err != nil {
		t.Fatal(err)
	}

	for _, replicas := range []int{3, 1} {
		cfg.Replicas = replicas
		if _, err := queue.Ensure(ctx, js, names, cfg); err != nil {
			t.Fatalf("Ensure with %d replicas: %v", replicas, err)
		}
		waitReplicas(t, js, names, replicas)
		s, err := js.Stream(ctx, names.Stream)
		if err != nil {
			t.Fatal(err)
		}
		if got := s.CachedInfo().State.Msgs; got != tasks {
			t.Errorf("with %d replicas the stream holds %d tasks, want %d", replicas, got, tasks)
		}
		e, err := kv.Get(ctx, "t-0")
		if err != nil || string(e.Value()) != "half-way" {
			t.Errorf("with %d replicas the checkpoint reads %v, %v; want half-way", replicas, e, err)
		}
	}
}

// waitReplicas waits until the work-queue, dead-letter and result streams,
// the checkpoint bucket's stream and every consumer have want replicas,
// all of them current.
func waitReplicas(t *testing.T, js jetstream.JetStream, n queue.Names, want int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		if last = checkReplicas(ctx, js, n, want); last == nil {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("the queue did not get %d current replicas: %v", want, last)
		case <-tick.C:
		}
	}
}

func checkReplicas(ctx context.Context, js jetstream.JetStream, n queue.Names, want int) error {
	check := func(what string, configured int, ci *jetstream.ClusterInfo) error {
		if configured != want {
			return fmt.Errorf("%s is configured with %d replicas", what, configured)
		}
		if ci == nil || ci.Leader == "" {
			return fmt.Errorf("%s has no leader", what)
		}
		if len(ci.Replicas) != want-1 {
			return fmt.Errorf("%s has %d peers besides its leader, want %d", what, len(ci.Replicas), want-1)
		}
		for _, r := range ci.Replicas {
			if !r.Current {
				return fmt.Errorf("%s's replica on %s is not current", what, r.Name)
			}
		}
		return nil
	}
	for _, name := range []string{n.Stream, n.DeadStream, n.ResultStream(), "KV_" + n.CheckpointBucket} {
		s, err := js.Stream(ctx, name)
		if err != nil {
			return err
		}
		info := s.CachedInfo()
		if err := check("stream "+name, info.Config.Replicas, info.Cluster); err != nil {
			return err
		}
	}
	for _, p := range []string{"high", "low"} {
		c, err := js.Consumer(ctx, n.Stream, n.Consumer(p))
		if err != nil {
			return err
		}
		info := c.CachedInfo()
		configured := info.Config.Replicas
		if configured == 0 { // 0: the stream's
			configured = want
		}
		if err := check("consumer "+p, configured, info.Cluster); err != nil {
			return err
		}
	}
	return nil
}

// TestEnsureSaysWhatReplicasNeed: a single server refuses a replicated
// stream, and Ensure's error says what would make it work.
func TestEnsureSaysWhatReplicasNeed(t *testing.T) {
	srv := natstest.Start(t)
	_, js := srv.Connect()
	_, err := queue.Ensure(t.Context(), js, queue.NewNames("LOOP_r3", "loops.r3"), queue.Config{Replicas: 3})
	if err == nil {
		t.Fatal("a single server accepted a stream of 3 replicas")
	}
	if want := "3 replicas need a JetStream cluster of at least 3 servers"; !strings.Contains(err.Error(), want) {
		t.Errorf("Ensure failed with %q, want it to say %q", err, want)
	}
}
