package testenv

import (
	"errors"
	"net"
	"sync"
	"testing"
)

// FreePort returns a TCP port that was free on 127.0.0.1 a moment ago and
// that it has not returned before in this process. The kernel may offer a
// port again as soon as it is closed, before the component it was for has
// bound it (a NATS node once got the same port for its clients and its
// routes), so every caller in a test process (the local cluster, the node
// agent) takes its ports from here.
func FreePort() (int, error) {
	handedOut.Lock()
	defer handedOut.Unlock()
	for range 100 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		port := l.Addr().(*net.TCPAddr).Port
		_ = l.Close()
		if !handedOut.ports[port] {
			handedOut.ports[port] = true
			return port, nil
		}
	}
	return 0, errors.New("testenv: no loopback port that was not handed out before")
}

// handedOut holds the ports FreePort returned in this process.
var handedOut = struct {
	sync.Mutex
	ports map[int]bool
}{ports: map[int]bool{}}

// Port is FreePort for a test: it fails the test when no port is left.
func Port(t testing.TB) int {
	t.Helper()
	p, err := FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return p
}
