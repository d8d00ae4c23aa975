package natstest

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tenire/loop-operator/worker/embedded"
)

// Server is an embedded NATS server with JetStream, owned by a test.
type Server struct {
	*embedded.Server
	t testing.TB
	// URL is the client URL; it stays the same across restarts.
	URL string
}

// Start runs a server for the test and shuts it down when the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	srv, err := embedded.Start(embedded.Options{StoreDir: t.TempDir()})
	if err != nil {
		t.Fatalf("natstest: %v", err)
	}
	t.Cleanup(srv.Shutdown)
	return &Server{Server: srv, t: t, URL: srv.URL()}
}

// Restart stops the server and starts it again on the same port and store.
func (s *Server) Restart() {
	s.t.Helper()
	if err := s.Server.Restart(); err != nil {
		s.t.Fatalf("natstest: restart: %v", err)
	}
}

// Connect returns a connection that reconnects quickly and forever, closed
// when the test ends, and its JetStream context.
func (s *Server) Connect() (*nats.Conn, jetstream.JetStream) {
	s.t.Helper()
	nc, err := nats.Connect(s.URL, nats.MaxReconnects(-1), nats.ReconnectWait(20*time.Millisecond))
	if err != nil {
		s.t.Fatalf("natstest: connect: %v", err)
	}
	s.t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		s.t.Fatalf("natstest: jetstream: %v", err)
	}
	return nc, js
}
