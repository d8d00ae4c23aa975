package localcluster

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// NATSServer is the name of the nats-server binary in the control plane's
// folder (hack/kube-bins.sh builds it from the Go module proxy), and of its
// log file.
const NATSServer = "nats-server"

// natsStopTimeout is how long nats-server may take to exit after SIGTERM.
const natsStopTimeout = 10 * time.Second

// NATS is a real nats-server process with JetStream, listening on a
// loopback port that stays the same across restarts. It runs as a process
// of its own, not inside the test, so that tests built with -race instrument
// only the project's code.
type NATS struct {
	// StoreDir holds the JetStream files; it survives Stop and Restart.
	StoreDir string

	bin, logPath string
	port         int
	log          logr.Logger
	mu           sync.Mutex
	proc         *process
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
	if _, err := os.Stat(bin); err != nil {
		return nil, fmt.Errorf("localcluster: %w: run `make kube-bins`, which builds nats-server too", err)
	}
	if err := os.MkdirAll(storeDir, 0o700); err != nil {
		return nil, fmt.Errorf("localcluster: creating the NATS store: %w", err)
	}
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	n := &NATS{StoreDir: storeDir, bin: bin, logPath: logPath, port: port, log: log}
	if err := n.Start(); err != nil {
		return nil, err
	}
	log.Info("NATS JetStream is up", "url", n.URL(), "store", storeDir, "log", logPath)
	return n, nil
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
	n.log.Info("NATS stopped", "url", n.URL())
}

// Start starts a stopped server again on the same port and store and waits
// until JetStream answers. It does nothing when the server is running.
func (n *NATS) Start() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.proc != nil {
		return nil
	}
	args := []string{"--addr", "127.0.0.1", "--port", strconv.Itoa(n.port), "--jetstream", "--store_dir", n.StoreDir, "--server_name", "localcluster"}
	p, err := startProcess(n.log, NATSServer, n.bin, args, n.logPath)
	if err != nil {
		return fmt.Errorf("localcluster: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := waitFor(ctx, n.log, p, "JetStream answers", n.jetStreamAnswers); err != nil {
		_ = p.stop(natsStopTimeout)
		return fmt.Errorf("localcluster: starting NATS: %w", err)
	}
	n.proc = p
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

// Restart stops the server and starts it again on the same port and store,
// as a NATS server restart would: durable streams, consumers and messages
// survive; clients reconnect.
func (n *NATS) Restart() error {
	n.Stop()
	return n.Start()
}
