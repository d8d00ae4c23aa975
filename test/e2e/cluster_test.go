//go:build e2e && !kind

package e2e

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	loopsv1alpha1 "github.com/tenire/loop-operator/api/v1alpha1"
	"github.com/tenire/loop-operator/internal/localcluster"
)

// Scenario (issue 12, item 5): the queue on a JetStream cluster of three nats-server
// processes (streams, bucket and consumers of three replicas) loses the
// node that leads its work-queue stream under load (SIGKILL), serves on
// the two others, and gets the node back on its store, which catches up:
// no task is lost.
//
// Local mode only (e2e && !kind): the scenario starts its own three
// servers as processes on loopback, which the node agent's worker
// processes and the manager reach; in kind mode the workers run in pods
// that cannot reach the test machine's loopback, and the suite there has
// one NATS pod (config/nats). config/nats/cluster is the clustered variant
// to run there.
func TestAQueueOnAThreeNodeClusterLosesANodeUnderLoadAndLosesNothing(t *testing.T) {
	const (
		replicas   = 3
		maxWorkers = 20
		tasks      = 4000
	)
	cluster := localcluster.StartNATSClusterForTest(t, 3)
	l := newLoop(t, "cluster", replicas, func(ld *loopsv1alpha1.LoopDeployment) {
		ld.Spec.Queue.NATS.URL = cluster.URL()
		ld.Spec.Queue.NATS.Replicas = 3
		ld.Spec.Loop.Pool.MaxWorkers = maxWorkers
	})
	ctx := t.Context()

	// The operator provisioned every part of the queue with three
	// replicas, all current.
	streams := []string{l.names.Stream, l.names.DeadStream, l.names.ResultStream(), "KV_" + l.names.CheckpointBucket}
	eventually(t, time.Minute, "the queue replicated on the three nodes", func() (bool, error) {
		err := replicatedOn(ctx, l.js, streams, 3, "")
		return err == nil, err
	})

	l.submitSleeps(tasks, 100, 800)
	l.waitFinished(300)

	// Kill the node that leads the work-queue stream, while tasks run.
	s, err := l.js.Stream(ctx, l.names.Stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	leader := info.Cluster.Leader
	node, err := cluster.Node(leader)
	if err != nil {
		t.Fatal(err)
	}
	inFlight := ackPending(ctx, t, l)
	atKill := l.book.Summary()
	if err := node.Kill(); err != nil {
		t.Fatal(err)
	}
	t.Logf("killed %s, the work-queue stream's leader, with %d tasks in flight, %d pending in the stream; %s",
		leader, inFlight, info.State.Msgs, atKill)
	if open := atKill.Open; open < tasks/4 {
		t.Fatalf("only %d tasks were left at the kill: the scenario would not test a kill under load", open)
	}

	// The two others elect a leader and keep serving.
	eventually(t, time.Minute, "a new leader of the work-queue stream", func() (bool, error) {
		info, err := s.Info(ctx)
		if err != nil {
			return false, err // no answer while the cluster elects
		}
		return info.Cluster != nil && info.Cluster.Leader != "" && info.Cluster.Leader != leader, nil
	})
	done := atKill.Completed + atKill.DeadLettered
	l.waitFinished(done + 500)
	withoutNode := l.book.Summary()
	t.Logf("%d more tasks finished without %s; %s", withoutNode.Completed+withoutNode.DeadLettered-done, leader, withoutNode)

	// Get it back; it catches up from the others before it reports
	// healthy.
	if err := node.Start(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 2*time.Minute, leader+" current again on every stream", func() (bool, error) {
		if err := replicatedOn(ctx, l.js, streams, 3, leader); err != nil {
			return false, err
		}
		err := cluster.Healthy(ctx)
		return err == nil, err
	})
	atRestart := l.book.Summary()
	t.Logf("%s is back and current; %s", leader, atRestart)
	if atRestart.Open == 0 {
		t.Logf("note: every task had finished before %s came back", leader)
	}

	sum := l.waitAllAccounted(5 * time.Minute)
	// A task runs twice when its worker's acknowledgement, or the ack of
	// its result record, was lost with the node: that can only happen to
	// tasks in flight at the kill or taken in the seconds before the
	// cluster had new leaders, and the loop holds at most
	// replicas*maxWorkers tasks at once (prefetch 0).
	bound := 2 * replicas * maxWorkers
	t.Logf("submitted %d, finished %d (completed %d, dead-lettered %d), lost %d, duplicates %d (bound %d, %d in flight at the kill)",
		sum.Expected, sum.Completed+sum.DeadLettered, sum.Completed, sum.DeadLettered, sum.Open, sum.Duplicates, bound, inFlight)
	if sum.Duplicates > bound {
		t.Errorf("%d duplicates, more than the bound of %d", sum.Duplicates, bound)
	}
	if err := replicatedOn(ctx, l.js, streams, 3, leader); err != nil {
		t.Errorf("after the scenario: %v", err)
	}
}

// replicatedOn returns nil when each stream has want replicas, a leader
// and every other replica current (among them server, when set).
func replicatedOn(ctx context.Context, js jetstream.JetStream, streams []string, want int, server string) error {
	for _, name := range streams {
		s, err := js.Stream(ctx, name)
		if err != nil {
			return err
		}
		info := s.CachedInfo()
		ci := info.Cluster
		switch {
		case info.Config.Replicas != want:
			return fmt.Errorf("stream %s has %d replicas, want %d", name, info.Config.Replicas, want)
		case ci == nil || ci.Leader == "":
			return fmt.Errorf("stream %s has no leader", name)
		case len(ci.Replicas) != want-1:
			return fmt.Errorf("stream %s has %d peers besides its leader, want %d", name, len(ci.Replicas), want-1)
		}
		seen := ci.Leader == server
		for _, r := range ci.Replicas {
			if !r.Current || r.Offline {
				return fmt.Errorf("stream %s: the replica on %s is not current", name, r.Name)
			}
			seen = seen || r.Name == server
		}
		if server != "" && !seen {
			return fmt.Errorf("stream %s has no replica on %s", name, server)
		}
	}
	return nil
}

// ackPending counts the tasks delivered and not yet acknowledged, in
// every consumer of the loop's stream.
func ackPending(ctx context.Context, t *testing.T, l *loop) int {
	t.Helper()
	s, err := l.js.Stream(ctx, l.names.Stream)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	lister := s.ListConsumers(ctx)
	for c := range lister.Info() {
		n += c.NumAckPending
	}
	if err := lister.Err(); err != nil && !errors.Is(err, jetstream.ErrEndOfData) {
		t.Fatal(err)
	}
	return n
}
