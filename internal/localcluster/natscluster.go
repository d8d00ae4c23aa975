package localcluster

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/testr"

	"github.com/tenire/loop-operator/internal/testenv"
)

// NATSCluster is a JetStream cluster of nats-server processes on loopback,
// each with its own client, route and monitoring ports and its own store
// folder, every node routed to every other. A node can be stopped or
// killed and started again on the same ports and store, as a node of a
// real cluster restarts.
type NATSCluster struct {
	// Name is the cluster's name (cluster_name).
	Name string
	// Nodes are the servers, named n1, n2, ….
	Nodes []*NATS
	// Dir holds each node's store (Dir/NAME) and log (Dir/NAME.log).
	Dir string
}

// StartNATSCluster starts a cluster of size nodes from the nats-server
// binary bin, with the stores and logs in dir, and waits until every node
// reports that JetStream is current (/healthz). A JetStream cluster needs
// a majority of its nodes to elect a leader, so all the processes start
// before the wait. On failure it stops what it started.
func StartNATSCluster(bin, dir string, size int, log logr.Logger) (*NATSCluster, error) {
	if size < 1 {
		return nil, fmt.Errorf("localcluster: a NATS cluster needs at least one node, not %d", size)
	}
	c := &NATSCluster{Name: "localcluster", Dir: dir}
	routes := make([]string, size)
	for i := range size {
		name := "n" + strconv.Itoa(i+1)
		n, err := newNATS(bin, filepath.Join(dir, name), filepath.Join(dir, name+".log"), name, log.WithValues("nats", name))
		if err != nil {
			return nil, err
		}
		r := &natsRoute{cluster: c.Name}
		if r.clusterPort, err = testenv.FreePort(); err != nil {
			return nil, err
		}
		if r.httpPort, err = testenv.FreePort(); err != nil {
			return nil, err
		}
		n.route = r
		routes[i] = "nats://127.0.0.1:" + strconv.Itoa(r.clusterPort)
		c.Nodes = append(c.Nodes, n)
	}
	for i, n := range c.Nodes {
		for j, r := range routes {
			if j != i {
				n.route.routes = append(n.route.routes, r)
			}
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), natsStartTimeout)
	defer cancel()
	procs := make([]*process, len(c.Nodes))
	for i, n := range c.Nodes {
		p, err := n.launch()
		if err != nil {
			c.Stop()
			return nil, err
		}
		procs[i] = p
	}
	for i, n := range c.Nodes {
		if err := n.awaitReady(ctx, procs[i]); err != nil {
			c.Stop()
			return nil, err
		}
	}
	log.Info("NATS JetStream cluster is up", "url", c.URL(), "dir", dir)
	return c, nil
}

// StartNATSCluster starts a NATS cluster of size nodes in a folder of
// RunDir (the nats-server of the control plane's folder). Cluster.Stop
// stops it.
func (c *Cluster) StartNATSCluster(size int) (*NATSCluster, error) {
	dir, err := os.MkdirTemp(c.RunDir, "nats-cluster-")
	if err != nil {
		return nil, fmt.Errorf("localcluster: %w", err)
	}
	nc, err := StartNATSCluster(filepath.Join(c.binDir, NATSServer), dir, size, c.log)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.nats = append(c.nats, nc.Nodes...)
	c.mu.Unlock()
	return nc, nil
}

// StartNATSClusterForTest starts a NATS cluster of size nodes for one test,
// from the nats-server that hack/kube-bins.sh builds (found as
// internal/testenv finds the control plane), and stops it when the test
// ends, keeping its folder (stores and logs) when the test failed or
// KeepEnv is set.
func StartNATSClusterForTest(t testing.TB, size int) *NATSCluster {
	t.Helper()
	bins, err := testenv.Assets()
	if err != nil {
		t.Fatalf("finding nats-server: %v", err)
	}
	dir, err := os.MkdirTemp("", "nats-cluster-")
	if err != nil {
		t.Fatal(err)
	}
	c, err := StartNATSCluster(filepath.Join(bins, NATSServer), dir, size, testr.NewWithInterface(t, testr.Options{LogTimestamp: true}))
	if err != nil {
		t.Fatalf("starting a NATS cluster of %d: %v (folder %s)", size, err, dir)
	}
	t.Cleanup(func() {
		c.Stop()
		if t.Failed() || os.Getenv(KeepEnv) != "" {
			t.Logf("NATS cluster folder kept: %s", dir)
			return
		}
		if err := os.RemoveAll(dir); err != nil {
			t.Errorf("removing the NATS cluster folder: %v", err)
		}
	})
	return c
}

// URL returns the client URLs of every node, separated by commas, as NATS
// clients (and spec.queue.nats.url) take a list of servers.
func (c *NATSCluster) URL() string {
	urls := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		urls[i] = n.URL()
	}
	return joinURLs(urls)
}

// Node returns the node of the server name (as the JetStream API names
// stream and consumer leaders), or an error.
func (c *NATSCluster) Node(name string) (*NATS, error) {
	for _, n := range c.Nodes {
		if n.Name == name {
			return n, nil
		}
	}
	return nil, fmt.Errorf("localcluster: the NATS cluster has no server %q", name)
}

// Healthy returns nil when every node runs and reports, on /healthz, that
// it is part of the cluster and that its streams and consumers are
// current; otherwise an error naming the nodes that are not.
func (c *NATSCluster) Healthy(ctx context.Context) error {
	var errs []error
	for _, n := range c.Nodes {
		if !n.Running() {
			errs = append(errs, fmt.Errorf("%s is not running", n.Name))
			continue
		}
		if err := n.healthy(ctx); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", n.Name, err))
		}
	}
	return errors.Join(errs...)
}

// Stop stops every node (SIGTERM, then SIGKILL after a timeout); their
// stores stay. It is idempotent.
func (c *NATSCluster) Stop() {
	for i := len(c.Nodes) - 1; i >= 0; i-- {
		c.Nodes[i].Stop()
	}
}

func joinURLs(urls []string) string { return strings.Join(urls, ",") }
