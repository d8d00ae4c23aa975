package embedded

import (
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Options configure a Server.
type Options struct {
	// Host to listen on. Default 127.0.0.1.
	Host string
	// Port to listen on. Default 0: a random free port. A server started
	// on the port (from URL) and StoreDir of one that was shut down is
	// that server restarted: its durable streams and consumers survive.
	Port int
	// StoreDir holds the JetStream files. Required.
	StoreDir string
	// ReadyTimeout bounds the wait for the server to accept clients.
	// Default 10s.
	ReadyTimeout time.Duration
}

// Server is a running embedded NATS server with JetStream.
type Server struct {
	opts  *server.Options
	ready time.Duration
	srv   *server.Server
	url   string
}

// ErrNotReady is returned when the server does not accept clients in
// time.
var ErrNotReady = errors.New("embedded: server not ready")

// Start runs a server.
func Start(o Options) (*Server, error) {
	if o.StoreDir == "" {
		return nil, errors.New("embedded: StoreDir is required")
	}
	if o.Host == "" {
		o.Host = "127.0.0.1"
	}
	if o.Port == 0 {
		o.Port = server.RANDOM_PORT
	}
	if o.ReadyTimeout <= 0 {
		o.ReadyTimeout = 10 * time.Second
	}
	s := &Server{ready: o.ReadyTimeout, opts: &server.Options{
		Host:      o.Host,
		Port:      o.Port,
		JetStream: true,
		StoreDir:  o.StoreDir,
		NoLog:     true,
		NoSigs:    true,
	}}
	if err := s.start(); err != nil {
		return nil, err
	}
	s.opts.Port = s.srv.Addr().(*net.TCPAddr).Port
	s.url = s.srv.ClientURL()
	return s, nil
}

func (s *Server) start() error {
	srv, err := server.NewServer(s.opts)
	if err != nil {
		return fmt.Errorf("embedded: new server: %w", err)
	}
	srv.Start()
	if !srv.ReadyForConnections(s.ready) {
		srv.Shutdown()
		srv.WaitForShutdown()
		return fmt.Errorf("%w after %s", ErrNotReady, s.ready)
	}
	s.srv = srv
	return nil
}

// URL returns the client URL.
func (s *Server) URL() string { return s.url }

// Shutdown stops the server and waits until it is gone. It is idempotent.
func (s *Server) Shutdown() {
	if s.srv == nil {
		return
	}
	s.srv.Shutdown()
	s.srv.WaitForShutdown()
	s.srv = nil
}
