package natstest

import (
	"net/url"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tenire/loop-operator/worker/embedded"
)

// Server is an embedded NATS server with JetStream, owned by a test.
type Server struct {
	*embedded.Server
	t     testing.TB
	store string
	// URL is the client URL; it stays the same across restarts.
	URL string
}

// Start runs a server for the test and shuts it down when the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	store := t.TempDir()
	srv, err := embedded.Start(embedded.Options{StoreDir: store})
	if err != nil {
		t.Fatalf("natstest: %v", err)
	}
	s := &Server{Server: srv, t: t, store: store, URL: srv.URL()}
	t.Cleanup(func() { s.Shutdown() })
	return s
}

// Restart stops the server and starts it again on the same port and store,
// as a NATS server restart would; durable streams and consumers survive.
func (s *Server) Restart() {
	s.t.Helper()
	u, err := url.Parse(s.URL)
	if err != nil {
		s.t.Fatalf("natstest: restart: %v", err)
	}
	port, err := strconv.Atoi(u.Port())
	if err != nil {
		s.t.Fatalf("natstest: restart: no port in %s: %v", s.URL, err)
	}
	s.Shutdown()
	srv, err := embedded.Start(embedded.Options{Port: port, StoreDir: s.store})
	if err != nil {
		s.t.Fatalf("natstest: restart: %v", err)
	}
	s.Server = srv
	if srv.URL() != s.URL {
		s.t.Fatalf("natstest: restart: the URL changed from %s to %s", s.URL, srv.URL())
	}
}

// Connect returns a connection that reconnects quickly and forever, closed
// when the test ends, and its JetStream context.
func (s *Server) Connect() (*nats.Conn, jetstream.JetStream) {
	s.t.Helper()
	return Connect(s.t, s.URL)
}

// Connect connects to the NATS server (or the servers of a cluster) at url
// with a connection that reconnects quickly and forever, closed when the
// test ends, and returns it with its JetStream context.
func Connect(t testing.TB, url string) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := nats.Connect(url, nats.MaxReconnects(-1), nats.ReconnectWait(20*time.Millisecond))
	if err != nil {
		t.Fatalf("natstest: connect: %v", err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatalf("natstest: jetstream: %v", err)
	}
	return nc, js
}
