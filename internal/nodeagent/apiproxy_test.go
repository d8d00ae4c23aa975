package nodeagent

import (
	"bufio"
	"io"
	"net"
	"testing"
	"time"
)

// echo serves one line back per connection until the listener closes.
func echo(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_, _ = io.Copy(c, c)
			}()
		}
	}()
	t.Cleanup(func() { _ = ln.Close(); <-done })
	return ln.Addr().String()
}

func roundTrip(c net.Conn) error {
	if err := c.SetDeadline(time.Now().Add(5 * time.Second)); err != nil {
		return err
	}
	if _, err := c.Write([]byte("ping\n")); err != nil {
		return err
	}
	_, err := bufio.NewReader(c).ReadString('\n')
	return err
}

func TestAPodCutOffLosesItsOpenConnectionsAndCannotOpenNewOnesUntilRestored(t *testing.T) {
	p, err := startAPIProxy("https://" + echo(t))
	if err != nil {
		t.Fatal(err)
	}
	defer p.close()
	addr := p.ln.Addr().String()

	open, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer open.Close()
	if err := roundTrip(open); err != nil {
		t.Fatalf("through the proxy before the cut: %v", err)
	}

	p.setCut(true)
	if err := roundTrip(open); err == nil {
		t.Error("a connection opened before the cut still carries traffic")
	}
	if c, err := net.Dial("tcp", addr); err == nil {
		if err := roundTrip(c); err == nil {
			t.Error("a connection opened during the cut carries traffic")
		}
		_ = c.Close()
	}

	p.setCut(false)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := roundTrip(c); err != nil {
		t.Errorf("through the proxy once restored: %v", err)
	}
	if got := p.server("https"); got != "https://"+addr {
		t.Errorf("server = %q, want https://%s", got, addr)
	}
}
