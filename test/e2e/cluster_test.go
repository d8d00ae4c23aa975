//go:build e2e && !kind

package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	loopsv1alpha1 "github.com/tenire/loop-operator/api/v1alpha1"
	"github.com/tenire/loop-operator/internal/localcluster"
)

// Scenario 16: the queue on a JetStream cluster of three
// nats-server processes (streams, bucket and consumers of three replicas)
// loses a node under load (SIGKILL), serves on the two others and gets the
// node back on its store, which catches up: no task is lost. Twice, with
// the leaders placed first:
//
//   - the streams' leader: the node leads the work-queue, result and
//     dead-letter streams and the checkpoint bucket, the consumers are led
//     elsewhere, so tasks keep being handed out and finishing while the
//     streams elect new leaders (their results must wait for one);
//   - every leader: the node leads the consumers too, so everything elects
//     at once, and acknowledgements in flight are lost with it.
//
// Local mode only (e2e && !kind): the scenario starts its own three
// servers as processes on loopback, which the node agent's worker
// processes and the manager reach; in kind mode the workers run in pods
// that cannot reach the test machine's loopback, and the suite there has
// one NATS pod (config/nats). config/nats/cluster is the clustered variant
// to run there.
func TestAQueueOnAThreeNodeClusterLosesANodeUnderLoadAndLosesNothing(t *testing.T) {
	t.Run("the streams' leader", func(t *testing.T) { loseANode(t, "cluster-streams", false) })
	t.Run("every leader", func(t *testing.T) { loseANode(t, "cluster-all", true) })
}

func loseANode(t *testing.T, name string, consumersToo bool) {
	const (
		replicas   = 3
		maxWorkers = 20
		tasks      = 4000
	)
	cluster := localcluster.StartNATSClusterForTest(t, 3)
	l := newLoop(t, name, replicas, func(ld *loopsv1alpha1.LoopDeployment) {
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

	// The node that leads the work-queue stream leads the other streams
	// too, and the consumers or not.
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
	for _, name := range streams {
		lead(t, l, "stream "+name, "$JS.API.STREAM.LEADER.STEPDOWN."+name, leader, true, func() (*jetstream.ClusterInfo, error) {
			s, err := l.js.Stream(ctx, name)
			if err != nil {
				return nil, err
			}
			return s.CachedInfo().Cluster, nil
		})
	}
	for _, name := range consumersOf(t, l) {
		lead(t, l, "consumer "+name, "$JS.API.CONSUMER.LEADER.STEPDOWN."+l.names.Stream+"."+name, leader, consumersToo, func() (*jetstream.ClusterInfo, error) {
			c, err := l.js.Consumer(ctx, l.names.Stream, name)
			if err != nil {
				return nil, err
			}
			return c.CachedInfo().Cluster, nil
		})
	}
	// The node dies once every group has served under the leaders just
	// moved for a while (settle, and each replica current), as a node that
	// fails in service does. Killed 0.24, 0.25 and 1.25 s after a
	// consumer's leader moved, nats-server v2.15.2 lost tasks in three CI
	// runs here: the consumer's delivered and acknowledged floors jumped
	// to the stream's last sequence, and the work queue emptied with
	// thousands of tasks never run (or, with the stream led elsewhere, kept
	// them and delivered none). The evidence points at the server, but
	// hack/natsloss, the same load on nats-server and nats.go alone, has
	// not lost a task yet (docs/queue.md, "Known limit"); this scenario
	// tests the loss of a settled leader.
	const settle = 10 * time.Second
	movedAt := time.Now()
	moved := l.book.Summary()
	eventually(t, time.Minute, "every stream and consumer settled under its leader", func() (bool, error) {
		if now := l.book.Summary(); now.Completed < moved.Completed+100 || time.Since(movedAt) < settle {
			return false, nil // serving under the new leaders for a while
		}
		if err := replicatedOn(ctx, l.js, streams, 3, ""); err != nil {
			return false, err
		}
		for _, name := range consumersOf(t, l) {
			c, err := l.js.Consumer(ctx, l.names.Stream, name)
			if err != nil {
				return false, err
			}
			ci := c.CachedInfo().Cluster
			if ci == nil || ci.Leader == "" {
				return false, fmt.Errorf("consumer %s has no leader", name)
			}
			if err := replicasCurrent("consumer "+name, ci); err != nil {
				return false, err
			}
		}
		return true, nil
	})

	// Kill it while tasks run.
	inFlight := ackPending(ctx, t, l)
	atKill := l.book.Summary()
	if info, err = s.Info(ctx); err != nil {
		t.Fatal(err)
	}
	if err := node.Kill(); err != nil {
		t.Fatal(err)
	}
	t.Logf("killed %s, the leader of every stream (consumers too: %v), with %d tasks in flight, %d pending in the stream; %s",
		leader, consumersToo, inFlight, info.State.Msgs, atKill)
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
	t.Cleanup(func() {
		if t.Failed() {
			logQueueState(t, l)
		}
	})
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

	// A task runs twice (finishes twice at the sink) when its worker's
	// acknowledgement was lost with the node (the consumer's leader, or the
	// stream's, had not stored it on a majority). That can only happen to
	// the tasks in flight at the kill or taken in the seconds before the
	// new leaders took over, and the loop holds about replicas*maxWorkers
	// tasks at once (prefetch 0).
	l.allowDuplicates(2*replicas*maxWorkers, fmt.Sprintf("acks lost with the node: the tasks in flight around the kill (%d at the kill), at most twice what the loop holds at once", inFlight))
	l.waitAllAccounted(5 * time.Minute)
	if err := replicatedOn(ctx, l.js, streams, 3, leader); err != nil {
		t.Errorf("after the scenario: %v", err)
	}
}

// lead makes the server node the leader of what (onNode), or another
// server (!onNode), by asking the leader to step down (JetStream's
// step-down request, preferring node when it should lead), and waits
// until it is so.
func lead(t *testing.T, l *loop, what, stepDownSubject, node string, onNode bool, info func() (*jetstream.ClusterInfo, error)) {
	t.Helper()
	req := []byte("{}")
	if onNode {
		var err error
		if req, err = json.Marshal(map[string]any{"placement": map[string]string{"preferred": node}}); err != nil {
			t.Fatal(err)
		}
	}
	where := map[bool]string{true: node, false: "a server other than " + node}[onNode]
	eventually(t, 30*time.Second, where+" leading "+what, func() (bool, error) {
		ci, err := info()
		if err != nil {
			return false, err
		}
		if ci != nil && ci.Leader != "" && (ci.Leader == node) == onNode {
			return true, nil
		}
		msg, err := l.js.Conn().Request(stepDownSubject, req, 2*time.Second)
		if err != nil {
			return false, err
		}
		var resp struct {
			Error *jetstream.APIError `json:"error"`
		}
		if err := json.Unmarshal(msg.Data, &resp); err != nil {
			return false, err
		}
		if resp.Error != nil {
			return false, resp.Error
		}
		return false, nil
	})
}

// consumersOf lists the consumers of the loop's work-queue stream.
func consumersOf(t *testing.T, l *loop) []string {
	t.Helper()
	s, err := l.js.Stream(t.Context(), l.names.Stream)
	if err != nil {
		t.Fatal(err)
	}
	lister := s.ListConsumers(t.Context())
	var names []string
	for c := range lister.Info() {
		names = append(names, c.Name)
	}
	if err := lister.Err(); err != nil && !errors.Is(err, jetstream.ErrEndOfData) {
		t.Fatal(err)
	}
	if len(names) == 0 {
		t.Fatal("the work-queue stream has no consumer")
	}
	return names
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
		if err := replicasCurrent("stream "+name, ci); err != nil {
			return err
		}
		seen := ci.Leader == server
		for _, r := range ci.Replicas {
			seen = seen || r.Name == server
		}
		if server != "" && !seen {
			return fmt.Errorf("stream %s has no replica on %s", name, server)
		}
	}
	return nil
}

// replicasCurrent fails for the first replica of what that is offline or
// not current.
func replicasCurrent(what string, ci *jetstream.ClusterInfo) error {
	for _, r := range ci.Replicas {
		if !r.Current || r.Offline {
			return fmt.Errorf("%s: the replica on %s is not current", what, r.Name)
		}
	}
	return nil
}

// logQueueState logs what the loop's streams and their consumers say of
// themselves (state, leader, replicas and their lag; pending, ack pending,
// delivered and ack floor), for a scenario that failed after a node died.
func logQueueState(t *testing.T, l *loop) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(t.Context()), 30*time.Second) // t.Context() ends before the clean-ups run
	defer cancel()
	for _, name := range []string{l.names.Stream, l.names.ResultStream(), l.names.DeadStream} {
		s, err := l.js.Stream(ctx, name)
		if err != nil {
			t.Logf("stream %s does not answer: %v", name, err)
			continue
		}
		info := s.CachedInfo()
		t.Logf("stream %s: %d messages, sequences %d-%d, cluster %s", name, info.State.Msgs, info.State.FirstSeq, info.State.LastSeq, clusterOf(info.Cluster))
		lister := s.ListConsumers(ctx)
		for c := range lister.Info() {
			t.Logf("consumer %s of %s: %d pending, %d ack pending, %d redelivered, %d waiting pulls, delivered %d/%d, ack floor %d/%d, cluster %s",
				c.Name, name, c.NumPending, c.NumAckPending, c.NumRedelivered, c.NumWaiting, c.Delivered.Consumer, c.Delivered.Stream,
				c.AckFloor.Consumer, c.AckFloor.Stream, clusterOf(c.Cluster))
		}
		if err := lister.Err(); err != nil && !errors.Is(err, jetstream.ErrEndOfData) {
			t.Logf("listing the consumers of %s: %v", name, err)
		}
	}
	t.Logf("ledger: %s", l.book.Summary())
}

// clusterOf is a ClusterInfo as one line: the leader, then each replica
// with whether it is current and how far it lags.
func clusterOf(c *jetstream.ClusterInfo) string {
	if c == nil {
		return "none"
	}
	out := "leader " + c.Leader
	for _, r := range c.Replicas {
		out += fmt.Sprintf("; %s current=%v lag=%d active=%s", r.Name, r.Current, r.Lag, r.Active)
	}
	return out
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
