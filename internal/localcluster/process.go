package localcluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/go-logr/logr"
)

// process is one child process of the cluster, in a process group of its own
// so that everything it starts is signalled with it.
type process struct {
	name    string
	logPath string
	cmd     *exec.Cmd
	logFile *os.File
	done    chan struct{} // closed when the process has exited
	err     error         // the result of Wait, valid once done is closed
	once    sync.Once
}

// startProcess starts bin with args; its stdout and stderr go to logPath.
// The child is killed if the harness dies (Pdeathsig) and runs in its own
// process group.
func startProcess(log logr.Logger, name, bin string, args []string, logPath string) (*process, error) {
	return startProcessEnv(log, name, bin, args, logPath, os.Environ())
}

// startProcessEnv is startProcess with an explicit environment.
func startProcessEnv(log logr.Logger, name, bin string, args []string, logPath string, env []string) (*process, error) {
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("opening the log of %s: %w", name, err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("starting %s (%s): %w", name, bin, err)
	}
	log.V(1).Info("started", "component", name, "pid", cmd.Process.Pid, "log", logPath)
	p := &process{name: name, logPath: logPath, cmd: cmd, logFile: f, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		_ = f.Close()
		close(p.done)
	}()
	return p, nil
}

// exited reports whether the process has ended, and how.
func (p *process) exited() (bool, error) {
	select {
	case <-p.done:
		return true, p.err
	default:
		return false, nil
	}
}

// stop sends SIGTERM to the process group, waits up to timeout, then sends
// SIGKILL and waits for the process to be reaped.
func (p *process) stop(timeout time.Duration) error {
	var result error
	p.once.Do(func() {
		pgid := p.cmd.Process.Pid
		if done, _ := p.exited(); done {
			// The leader is gone; make sure nothing of its group is left.
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
			return
		}
		_ = syscall.Kill(-pgid, syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(timeout):
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
			<-p.done
			result = fmt.Errorf("%s did not stop within %s after SIGTERM and was killed", p.name, timeout)
		}
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
	})
	return result
}

// kill sends SIGKILL to the process group (kill -9) and waits until the
// process is gone.
func (p *process) kill() error {
	if err := syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("killing %s: %w", p.name, err)
	}
	<-p.done
	return nil
}

// tail returns the last n lines of the process's log.
func (p *process) tail(n int) string { return tailFile(p.logPath, n) }

// tailFile returns the last n lines of a file, or a note saying why it
// cannot.
func tailFile(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	defer f.Close()
	const maxRead = 64 << 10
	st, err := f.Stat()
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	off := max(st.Size()-maxRead, 0)
	buf, err := io.ReadAll(io.NewSectionReader(f, off, st.Size()-off))
	if err != nil {
		return fmt.Sprintf("(reading the log: %v)", err)
	}
	lines := bytes.Split(bytes.TrimRight(buf, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}

// ComponentError says that a component did not come up, with the tail of its
// log.
type ComponentError struct {
	// Component is the name of the process (etcd, kube-apiserver, …).
	Component string
	// LogPath is the file with its output.
	LogPath string
	// LogTail holds the last lines of that file.
	LogTail string
	// Err is the underlying cause.
	Err error
}

func (e *ComponentError) Error() string {
	return fmt.Sprintf("%s did not come up: %v (log %s); last lines:\n%s", e.Component, e.Err, e.LogPath, indent(e.LogTail))
}

func (e *ComponentError) Unwrap() error { return e.Err }

func indent(s string) string {
	return "    " + strings.ReplaceAll(s, "\n", "\n    ")
}

// waitFor polls check every interval until it returns nil, the process
// exits, or ctx ends. It logs progress every few seconds.
func waitFor(ctx context.Context, log logr.Logger, p *process, what string, check func(context.Context) error) error {
	start := time.Now()
	lastLog := start
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	var lastErr error
	for {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		lastErr = check(cctx)
		cancel()
		if lastErr == nil {
			log.Info("ready", "component", p.name, "check", what, "after", time.Since(start).Round(time.Millisecond).String())
			return nil
		}
		if done, err := p.exited(); done {
			return &ComponentError{Component: p.name, LogPath: p.logPath, LogTail: p.tail(25),
				Err: fmt.Errorf("the process exited (%w) before %s passed", err, what)}
		}
		if time.Since(lastLog) >= 5*time.Second {
			lastLog = time.Now()
			log.Info("waiting", "component", p.name, "check", what, "elapsed", time.Since(start).Round(time.Second).String(), "last", lastErr.Error())
		}
		select {
		case <-ctx.Done():
			return &ComponentError{Component: p.name, LogPath: p.logPath, LogTail: p.tail(25),
				Err: fmt.Errorf("%s did not pass after %s: %w (last check: %w)", what, time.Since(start).Round(time.Second), ctx.Err(), lastErr)}
		case <-tick.C:
		}
	}
}

var errNotReady = errors.New("not ready")
