package localcluster

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tenire/loop-operator/internal/testenv"
)

// NATSServer is the name of the nats-server binary in the control plane's
// folder (hack/kube-bins.sh builds it from the Go module proxy), and of its
// log file.
const NATSServer = "nats-server"

// natsStopTimeout is how long nats-server may take to exit after SIGTERM.
const natsStopTimeout = 10 * time.Second

// natsStartTimeout bounds the wait for a started server to answer.
const natsStartTimeout = time.Minute

// NATS is a real nats-server process with JetStream, listening on a
// loopback port that stays the same across restarts. It runs as a process
// of its own, not inside the test, so that tests built with -race instrument
// only the project's code. It is a server of its own (StartNATS) or one
// node of a NATSCluster.
type NATS struct {
	// StoreDir holds the JetStream files; it survives Stop and Restart.
	StoreDir string
	// Name is the server's name (server_name), unique in a cluster; the
	// JetStream API names stream and consumer leaders by it.
	Name string

	bin, logPath string
	port         int
	// route is set for a node of a cluster.
	route *natsRoute
	log   logr.Logger
	mu    sync.Mutex
	proc  *process
}

// natsRoute is how one node of a cluster reaches the others.
type natsRoute struct {
	cluster     string // cluster_name
	clusterPort int    // this node's route port
	httpPort    int    // this node's monitoring port (/healthz)
	routes      []string
}

// StartNATS starts a NATS server whose store is RunDir/nats and whose log
// is RunDir/logs/nats-server.log. Cluster.Stop stops it.
func (c *Cluster) StartNATS() (*NATS, error) {
	n, err := StartNATS(filepath.Join(c.binDir, NATSServer), filepath.Join(c.RunDir, "nats"), c.LogPath(NATSServer), c.log)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.nats = append(c.nats, n)
	c.mu.Unlock()
	return n, nil
}

// StartNATS starts the nats-server binary bin with JetStream on a free
// loopback port, storing its files in storeDir and logging to logPath.
func StartNATS(bin, storeDir, logPath string, log logr.Logger) (*NATS, error) {
	n, err := newNATS(bin, storeDir, logPath, "localcluster", log)
	if err != nil {
		return nil, err
	}
	if err := n.Start(); err != nil {
		return nil, err
	}
	log.Info("NATS JetStream is up", "url", n.URL(), "store", storeDir, "log", logPath)
	return n, nil
}

// newNATS checks bin, creates storeDir and picks a client port; it starts
// nothing.
func newNATS(bin, storeDir, logPath, name string, log logr.Logger) (*NATS, error) {
	if _, err := os.Stat(bin); err != nil {
		return nil, fmt.Errorf("localcluster: %w: run `make kube-bins`, which builds nats-server too", err)
	}
	if err := os.MkdirAll(storeDir, 0o700); err != nil {
		return nil, fmt.Errorf("localcluster: creating the NATS store: %w", err)
	}
	port, err := testenv.FreePort()
	if err != nil {
		return nil, err
	}
	return &NATS{StoreDir: storeDir, Name: name, bin: bin, logPath: logPath, port: port, log: log}, nil
}

// URL returns the client URL (nats://127.0.0.1:PORT), the same across
// restarts.
func (n *NATS) URL() string { return "nats://127.0.0.1:" + strconv.Itoa(n.port) }

// Stop stops the server (SIGTERM, then SIGKILL after a timeout) and waits
// until it is gone; the store is kept. Start brings it back. It is
// idempotent.
func (n *NATS) Stop() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.proc == nil {
		return
	}
	if err := n.proc.stop(natsStopTimeout); err != nil {
		n.log.Error(err, "stopping NATS")
	}
	n.proc = nil
	n.log.Info("NATS stopped", "server", n.Name, "url", n.URL())
}

// Kill kills the server with SIGKILL, as a crash or a lost machine would,
// and waits until it is gone; the store is kept (with what the server had
// written to it). Start brings it back. It does nothing when the server is
// not running.
func (n *NATS) Kill() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.proc == nil {
		return nil
	}
	if err := n.proc.kill(); err != nil {
		return fmt.Errorf("localcluster: %w", err)
	}
	n.proc = nil
	n.log.Info("NATS killed", "server", n.Name, "url", n.URL())
	return nil
}

// Running reports whether the server's process runs.
func (n *NATS) Running() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.proc == nil {
		return false
	}
	done, _ := n.proc.exited()
	return !done
}

// Start starts a stopped server again on the same ports and store and
// waits until it is ready: JetStream answers (a server of its own), or the
// server's /healthz says that it has joined its cluster and every stream
// and consumer it holds is current (a node of a cluster). It does nothing
// when the server is running.
func (n *NATS) Start() error {
	ctx, cancel := context.WithTimeout(context.Background(), natsStartTimeout)
	defer cancel()
	p, err := n.launch()
	if err != nil || p == nil {
		return err
	}
	return n.awaitReady(ctx, p)
}

// launch starts the process unless it runs, and returns it (nil when it
// ran already).
func (n *NATS) launch() (*process, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.proc != nil {
		return nil, nil
	}
	args := []string{"--addr", "127.0.0.1", "--port", strconv.Itoa(n.port), "--jetstream", "--store_dir", n.StoreDir, "--server_name", n.Name}
	if r := n.route; r != nil {
		args = append(args, "--cluster_name", r.cluster, "--cluster", "nats://127.0.0.1:"+strconv.Itoa(r.clusterPort),
			"--http_port", strconv.Itoa(r.httpPort))
		if len(r.routes) > 0 {
			args = append(args, "--routes", joinURLs(r.routes))
		}
	}
	p, err := startProcess(n.log, NATSServer+"-"+n.Name, n.bin, args, n.logPath)
	if err != nil {
		return nil, fmt.Errorf("localcluster: %w", err)
	}
	n.proc = p
	return p, nil
}

// awaitReady waits until the started process p is ready (see Start), and
// stops it when it does not get there.
func (n *NATS) awaitReady(ctx context.Context, p *process) error {
	check := n.jetStreamAnswers
	what := "JetStream answers"
	if n.route != nil {
		check, what = n.healthy, "/healthz is ok (JetStream current)"
	}
	if err := waitFor(ctx, n.log, p, what, check); err != nil {
		n.mu.Lock()
		if n.proc == p {
			_ = p.stop(natsStopTimeout)
			n.proc = nil
		}
		n.mu.Unlock()
		return fmt.Errorf("localcluster: starting NATS %s: %w", n.Name, err)
	}
	return nil
}

func (n *NATS) jetStreamAnswers(ctx context.Context) error {
	nc, err := nats.Connect(n.URL(), nats.Timeout(time.Second), nats.NoReconnect())
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	if _, err := js.AccountInfo(ctx); err != nil {
		return errors.Join(errors.New("JetStream is not ready"), err)
	}
	return nil
}

// healthy asks the node's monitoring port for /healthz, which answers 200
// only once the node has joined the JetStream cluster (a meta leader is
// known) and every stream and consumer it holds a replica of has caught
// up.
func (n *NATS) healthy(ctx context.Context) error {
	return httpCheck(ctx, natsHTTP, "http://127.0.0.1:"+strconv.Itoa(n.route.httpPort)+"/healthz", "ok")
}

// natsHTTP asks the nodes' monitoring ports; it keeps no idle connection
// (and so no goroutine) between checks.
var natsHTTP = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}

// Restart stops the server and starts it again on the same port and store,
// as a NATS server restart would: durable streams, consumers and messages
// survive; clients reconnect.
func (n *NATS) Restart() error {
	n.Stop()
	return n.Start()
}
