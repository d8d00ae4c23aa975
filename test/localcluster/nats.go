package localcluster

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"github.com/go-logr/logr"

	"github.com/tenire/loop-operator/worker/embedded"
)

// NATS is a NATS server with JetStream, embedded in the calling process
// (the real nats-server, through worker/embedded), listening on a loopback
// port that stays the same across restarts.
type NATS struct {
	// StoreDir holds the JetStream files; it survives Stop and Restart.
	StoreDir string

	log logr.Logger
	mu  sync.Mutex
	srv *embedded.Server
	up  bool
}

// StartNATS starts a NATS server whose store is RunDir/nats. Cluster.Stop
// stops it.
func (c *Cluster) StartNATS() (*NATS, error) {
	n, err := StartNATS(filepath.Join(c.RunDir, "nats"), c.log)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.nats = append(c.nats, n)
	c.mu.Unlock()
	return n, nil
}

// StartNATS starts a NATS server with JetStream on a free loopback port,
// storing its files in storeDir.
func StartNATS(storeDir string, log logr.Logger) (*NATS, error) {
	if err := os.MkdirAll(storeDir, 0o700); err != nil {
		return nil, fmt.Errorf("localcluster: creating the NATS store: %w", err)
	}
	srv, err := embedded.Start(embedded.Options{Host: "127.0.0.1", StoreDir: storeDir})
	if err != nil {
		return nil, fmt.Errorf("localcluster: starting NATS: %w", err)
	}
	log.Info("NATS JetStream is up", "url", srv.URL(), "store", storeDir)
	return &NATS{StoreDir: storeDir, log: log, srv: srv, up: true}, nil
}

// URL returns the client URL (nats://127.0.0.1:PORT), the same across
// restarts.
func (n *NATS) URL() string { return n.srv.URL() }

// Stop shuts the server down and waits until it is gone; the store is kept.
// Start brings it back. It is idempotent.
func (n *NATS) Stop() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.up {
		n.srv.Shutdown()
		n.up = false
		n.log.Info("NATS stopped", "url", n.srv.URL())
	}
}

// Start starts a stopped server again on the same port and store. It does
// nothing when the server is running.
func (n *NATS) Start() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.up {
		return nil
	}
	if err := n.srv.Restart(); err != nil {
		return fmt.Errorf("localcluster: starting NATS again: %w", err)
	}
	n.up = true
	n.log.Info("NATS started again", "url", n.srv.URL())
	return nil
}

// Restart stops the server and starts it again on the same port and store,
// as a NATS server restart would: durable streams, consumers and messages
// survive; clients reconnect.
func (n *NATS) Restart() error {
	n.Stop()
	return n.Start()
}
