package localcluster

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// Process is a program started beside the cluster (the operator's manager,
// for instance), in a process group of its own, with its output in
// RunDir/logs/NAME.log. Cluster.Stop stops it before the control plane.
type Process struct {
	p *process
}

// StartProcess starts binary with args. Its environment is the caller's,
// plus KUBECONFIG set to the admin kubeconfig, plus env (KEY=VALUE entries,
// which win). Starting a name again appends to the same log.
func (c *Cluster) StartProcess(name, binary string, args, env []string) (*Process, error) {
	if name == "" || filepath.Base(name) != name {
		return nil, fmt.Errorf("localcluster: process name %q must be a plain file name", name)
	}
	c.mu.Lock()
	stopped := c.stopped
	c.mu.Unlock()
	if stopped {
		return nil, errors.New("localcluster: the cluster is stopped")
	}
	full := append(append(os.Environ(), "KUBECONFIG="+c.KubeconfigPath), env...)
	p, err := startProcessEnv(c.log, name, binary, args, c.LogPath(name), full)
	if err != nil {
		return nil, fmt.Errorf("localcluster: %w", err)
	}
	c.mu.Lock()
	c.procs = append(c.procs, p)
	c.mu.Unlock()
	c.log.Info("started a process", "name", name, "pid", p.cmd.Process.Pid, "log", p.logPath)
	return &Process{p: p}, nil
}

// PIDs returns the process ids of the cluster's processes that still run
// (etcd, the control plane, NATS, kwok, every StartProcess), by name; a
// name started more than once gets "-2", "-3", … after the first.
func (c *Cluster) PIDs() map[string]int {
	c.mu.Lock()
	procs := slices.Clone(c.procs)
	nats := slices.Clone(c.nats)
	c.mu.Unlock()
	for _, n := range nats {
		n.mu.Lock()
		if n.proc != nil {
			procs = append(procs, n.proc)
		}
		n.mu.Unlock()
	}
	pids := map[string]int{}
	for _, p := range procs {
		if ok, _ := p.exited(); ok {
			continue
		}
		name := p.name
		for i := 2; pids[name] != 0; i++ {
			name = fmt.Sprintf("%s-%d", p.name, i)
		}
		pids[name] = p.cmd.Process.Pid
	}
	return pids
}

// PID returns the process id (also its process group id).
func (p *Process) PID() int { return p.p.cmd.Process.Pid }

// LogPath returns the file with the process's output.
func (p *Process) LogPath() string { return p.p.logPath }

// Done is closed when the process has exited.
func (p *Process) Done() <-chan struct{} { return p.p.done }

// Exited reports whether the process has ended and the result of waiting
// for it.
func (p *Process) Exited() (bool, error) { return p.p.exited() }

// Stop sends SIGTERM to the process group, then SIGKILL after timeout, and
// waits until the process is gone.
func (p *Process) Stop(timeout time.Duration) error { return p.p.stop(timeout) }

// Kill sends SIGKILL to the process group (kill -9) and waits until the
// process is gone.
func (p *Process) Kill() error {
	if err := p.p.kill(); err != nil {
		return fmt.Errorf("localcluster: %w", err)
	}
	return nil
}

// Tail returns the last n lines of the process's log.
func (p *Process) Tail(n int) string { return p.p.tail(n) }
