package nodeagent

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"sync"
)

// apiProxy is a pod's own road to the API server: its kubeconfig names
// the proxy, which forwards TCP to the API server (TLS passes through
// untouched), so that a test can cut one pod off the API server, as a
// network partition between a node and the control plane would, and
// restore it.
type apiProxy struct {
	ln     net.Listener
	target string

	mu    sync.Mutex
	cut   bool
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

// startAPIProxy listens on a loopback port and forwards to the host of
// server, a URL such as https://127.0.0.1:6443.
func startAPIProxy(server string) (*apiProxy, error) {
	u, err := url.Parse(server)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("the API server address %q: %w", server, errors.Join(err, errors.New("no host")))
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("the pod's API proxy: %w", err)
	}
	p := &apiProxy{ln: ln, target: u.Host, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// server is the URL the pod's kubeconfig names: the proxy's address, with
// the scheme of the API server's.
func (p *apiProxy) server(scheme string) string {
	return scheme + "://" + p.ln.Addr().String()
}

func (p *apiProxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		if !p.track(c) {
			_ = c.Close()
			continue
		}
		p.wg.Add(1)
		go p.forward(c)
	}
}

// track records a connection; false while the pod is cut off.
func (p *apiProxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cut {
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *apiProxy) forget(cs ...net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range cs {
		delete(p.conns, c)
		_ = c.Close()
	}
}

func (p *apiProxy) forward(in net.Conn) {
	defer p.wg.Done()
	out, err := net.Dial("tcp", p.target)
	if err != nil {
		p.forget(in)
		return
	}
	if !p.track(out) {
		p.forget(in, out)
		return
	}
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		done <- struct{}{}
	}
	go pipe(out, in)
	go pipe(in, out)
	<-done
	p.forget(in, out) // ends the other copy
	<-done
}

// setCut cuts the pod off (every open connection closed, new ones
// refused at once) or lets it through again.
func (p *apiProxy) setCut(cut bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = cut
	if cut {
		for c := range p.conns {
			_ = c.Close()
		}
	}
}

// close stops the proxy and every connection through it.
func (p *apiProxy) close() {
	_ = p.ln.Close()
	p.setCut(true)
	p.wg.Wait()
}
