//go:build e2e && kind

package e2e

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/tenire/loop-operator/internal/testenv"
)

// portForward runs `kubectl port-forward` to a service (or a pod) on one local port
// for as long as the suite runs. kubectl forwards to one pod behind the
// service and exits when it loses it; portForward then starts it again on
// the same port, a second later, so that a client reconnecting to the
// same address reaches the service's current pod.
type portForward struct {
	log  logr.Logger
	args []string
	port int

	mu  sync.Mutex
	cur *forwardRun // the latest kubectl started

	stop     chan struct{} // closed by Stop
	stopOnce sync.Once
	done     chan struct{} // closed when supervise returns
}

// forwardRun is one kubectl port-forward process.
type forwardRun struct {
	cmd *exec.Cmd
	// forwarding is closed when kubectl printed "Forwarding from", exited
	// when it has exited.
	forwarding, exited chan struct{}
}

// startPortForward forwards a free loopback port to remotePort of target
// (svc/NAME, or pod/NAME) in namespace and waits until kubectl forwards.
func startPortForward(ctx context.Context, log logr.Logger, namespace, target string, remotePort int) (*portForward, error) {
	port, err := testenv.FreePort()
	if err != nil {
		return nil, err
	}
	p := &portForward{
		log:  log,
		args: []string{"port-forward", "--namespace", namespace, target, "--address", "127.0.0.1", fmt.Sprintf("%d:%d", port, remotePort)},
		port: port,
		stop: make(chan struct{}),
		done: make(chan struct{}),
	}
	go p.supervise()
	if err := p.WaitForwarding(ctx); err != nil {
		p.Stop()
		return nil, fmt.Errorf("kubectl %s: %w", strings.Join(p.args, " "), err)
	}
	log.Info("forwarding", "local", "127.0.0.1:"+strconv.Itoa(port), "to", namespace+"/"+target+":"+strconv.Itoa(remotePort))
	return p, nil
}

// URL is the NATS address of the local port.
func (p *portForward) URL() string { return "nats://127.0.0.1:" + strconv.Itoa(p.port) }

// supervise starts kubectl, and again whenever it exits, until Stop.
func (p *portForward) supervise() {
	defer close(p.done)
	for {
		run, err := p.start()
		if err != nil {
			p.log.Error(err, "starting kubectl port-forward")
		} else {
			select {
			case <-run.exited:
			case <-p.stop:
				_ = run.cmd.Process.Kill()
				<-run.exited
				return
			}
		}
		select {
		case <-p.stop:
			return
		case <-time.After(time.Second):
		}
	}
}

// start starts one kubectl and follows its output.
func (p *portForward) start() (*forwardRun, error) {
	cmd := exec.Command("kubectl", p.args...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	run := &forwardRun{cmd: cmd, forwarding: make(chan struct{}), exited: make(chan struct{})}
	p.mu.Lock()
	p.cur = run
	p.mu.Unlock()
	var output sync.WaitGroup
	output.Add(2)
	go func() {
		defer output.Done()
		sc := bufio.NewScanner(stdout)
		seen := false
		for sc.Scan() {
			if !seen && strings.HasPrefix(sc.Text(), "Forwarding from") {
				seen = true
				close(run.forwarding)
			}
			p.log.V(1).Info("kubectl port-forward", "stdout", sc.Text())
		}
	}()
	go func() {
		defer output.Done()
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			p.log.Info("kubectl port-forward", "stderr", sc.Text())
		}
	}()
	go func() {
		// Wait only once the output is read to its end.
		output.Wait()
		err := cmd.Wait()
		p.log.Info("kubectl port-forward exited", "pid", cmd.Process.Pid, "error", err)
		close(run.exited)
	}()
	return run, nil
}

// forwards reports whether run forwards now.
func (run *forwardRun) forwards() bool {
	if run == nil {
		return false
	}
	select {
	case <-run.exited:
		return false
	default:
	}
	select {
	case <-run.forwarding:
		return true
	default:
		return false
	}
}

// WaitForwarding waits, a minute at most, until a kubectl forwards.
func (p *portForward) WaitForwarding(ctx context.Context) error {
	return p.waitForwarding(ctx, nil)
}

// waitForwarding waits until a kubectl other than not forwards.
func (p *portForward) waitForwarding(ctx context.Context, not *forwardRun) error {
	return wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, time.Minute, true, func(context.Context) (bool, error) {
		select {
		case <-p.done:
			return false, errors.New("the port-forward is stopped")
		default:
		}
		p.mu.Lock()
		cur := p.cur
		p.mu.Unlock()
		return cur != not && cur.forwards(), nil
	})
}

// Restart ends the current kubectl, whose pod may be gone without it
// noticing, and waits until the next one forwards.
func (p *portForward) Restart(ctx context.Context) error {
	p.mu.Lock()
	old := p.cur
	p.mu.Unlock()
	if old != nil {
		_ = old.cmd.Process.Kill()
		<-old.exited
	}
	return p.waitForwarding(ctx, old)
}

// Stop ends kubectl and its supervision.
func (p *portForward) Stop() {
	p.stopOnce.Do(func() { close(p.stop) })
	<-p.done
}
