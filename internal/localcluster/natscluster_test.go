package localcluster_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"

	"github.com/tenire/loop-operator/internal/localcluster"
)

// TestANATSClusterNodeKilledAndStartedAgainCatchesUp: a stream of three
// replicas on the three-node cluster keeps taking messages while its
// leader's node is killed, and the node, started again on its ports and
// store, catches up.
func TestANATSClusterNodeKilledAndStartedAgainCatchesUp(t *testing.T) {
	running := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, running) }) // last: after the cluster's cleanup
	ctx := t.Context()
	c := localcluster.StartNATSClusterForTest(t, 3)
	if len(c.Nodes) != 3 {
		t.Fatalf("%d nodes, want 3", len(c.Nodes))
	}
	nc, err := nats.Connect(c.URL(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	s, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "R3", Subjects: []string{"r3"}, Replicas: 3, Storage: jetstream.FileStorage})
	if err != nil {
		t.Fatal(err)
	}
	publish := func(from, to int) {
		t.Helper()
		for i := from; i < to; i++ {
			await(t, "publishing "+fmt.Sprint(i), func(ctx context.Context) error {
				_, err := js.Publish(ctx, "r3", []byte("m"), jetstream.WithMsgID(fmt.Sprint(i)))
				return err
			})
		}
	}
	publish(0, 10)

	leader := s.CachedInfo().Cluster.Leader
	node, err := c.Node(leader)
	if err != nil {
		t.Fatal(err)
	}
	if err := node.Kill(); err != nil {
		t.Fatal(err)
	}
	if node.Running() || c.Healthy(ctx) == nil {
		t.Fatalf("after killing %s: running %v, cluster healthy", leader, node.Running())
	}
	publish(10, 20) // the two others elect a leader and take them
	if err := node.Start(); err != nil {
		t.Fatal(err)
	}
	await(t, "the cluster healthy and every replica current with 20 messages", func(ctx context.Context) error {
		if err := c.Healthy(ctx); err != nil {
			return err
		}
		info, err := s.Info(ctx)
		if err != nil {
			return err
		}
		if info.State.Msgs != 20 {
			return fmt.Errorf("%d messages", info.State.Msgs)
		}
		if len(info.Cluster.Replicas) != 2 {
			return fmt.Errorf("%d peers", len(info.Cluster.Replicas))
		}
		for _, r := range info.Cluster.Replicas {
			if !r.Current {
				return fmt.Errorf("the replica on %s is not current", r.Name)
			}
		}
		return nil
	})
}

// await calls f until it returns nil, failing the test after a minute.
func await(t *testing.T, what string, f func(context.Context) error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		cctx, ccancel := context.WithTimeout(ctx, 2*time.Second)
		err := f(cctx)
		ccancel()
		if err == nil {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s: %v", what, errors.Join(ctx.Err(), err))
		case <-tick.C:
		}
	}
}
