// Command localcluster starts and stops the local test cluster of
// internal/localcluster (etcd, kube-apiserver, kube-controller-manager,
// kube-scheduler), the test-only node agent of internal/nodeagent and,
// optionally, a NATS JetStream server, for `make demo` and for
// playing with kubectl on a machine with no container engine.
//
// Usage:
//
//	localcluster up   [--dir DIR] [--nodes N] [--image MATCH=BINARY,...] [--nats] [--crds PATH] [--process NAME=COMMAND...] [--detach]
//	localcluster down [--dir DIR] [--purge]
//	localcluster env  [--dir DIR]
//
// up runs in the foreground until SIGINT or SIGTERM; with --detach it starts
// itself in the background, waits until the cluster is ready, prints the
// environment and returns. down stops a running `up` through the pid in
// DIR/state.json. env prints `export KUBECONFIG=…` (and NATS_URL) lines.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"go.uber.org/zap/zapcore"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/tenire/loop-operator/internal/localcluster"
	"github.com/tenire/loop-operator/internal/nodeagent"
	"github.com/tenire/loop-operator/internal/testenv"
)

// State is what a running `up` writes to DIR/state.json once ready.
type State struct {
	PID        int       `json:"pid"`
	RunDir     string    `json:"runDir"`
	Kubeconfig string    `json:"kubeconfig"`
	URL        string    `json:"url"`
	NATSURL    string    `json:"natsURL,omitempty"`
	Nodes      []string  `json:"nodes"`
	Started    time.Time `json:"started"`
}

const stateFile = "state.json"

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch os.Args[1] {
	case "up":
		err = up(os.Args[2:])
	case "down":
		err = down(os.Args[2:])
	case "env":
		err = env(os.Args[2:])
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "localcluster:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: localcluster up|down|env [flags]   (localcluster up -h for the flags)")
	os.Exit(2)
}

func defaultDir() string {
	if root, err := testenv.RepoRoot(); err == nil {
		// Not bin/localcluster: that is where the docs build this binary.
		return filepath.Join(root, "bin", "localcluster-run")
	}
	return filepath.Join(os.TempDir(), "tenire-localcluster")
}

func up(args []string) error {
	fs := flag.NewFlagSet("up", flag.ExitOnError)
	dir := fs.String("dir", defaultDir(), "run folder (certificates, kubeconfig, data, logs)")
	nodes := fs.Int("nodes", 2, "how many nodes the test-only node agent registers (0: no agent)")
	images := fs.String("image", defaultImages(), "image rules MATCH=BINARY,... for the node agent")
	withNATS := fs.Bool("nats", true, "start a NATS JetStream server (the cached nats-server)")
	crds := fs.String("crds", "", "install the CRDs from this file or folder once the cluster is up")
	detach := fs.Bool("detach", false, "run in the background; return once the cluster is ready")
	timeout := fs.Duration("timeout", 4*time.Minute, "how long the start may take")
	verbose := fs.Bool("v", false, "verbose logs")
	var procs []string
	fs.Func("process", "run a program beside the cluster, as NAME=COMMAND ARGS... (split on spaces; repeatable); it gets KUBECONFIG and NATS_URL, logs to DIR/logs/NAME.log and stops with the cluster", func(v string) error {
		name, cmdline, ok := strings.Cut(v, "=")
		if !ok || name == "" || len(strings.Fields(cmdline)) == 0 {
			return fmt.Errorf("%q is not NAME=COMMAND ARGS", v)
		}
		procs = append(procs, v)
		return nil
	})
	binDir := fs.String("bin-dir", "", "folder of the control-plane binaries (default: KUBEBUILDER_ASSETS, else `hack/kube-bins.sh --print-dir` of the repository around the working directory)")
	background := fs.Bool("in-background", false, "internal: set by --detach for the background process")
	_ = fs.Parse(args)

	abs, err := filepath.Abs(*dir)
	if err != nil {
		return err
	}
	if !*background {
		if st, err := readState(abs); err == nil && alive(st.PID) {
			return fmt.Errorf("a cluster is already running in %s (pid %d); run `localcluster down --dir %s` first", abs, st.PID, abs)
		}
		if err := prepareDir(abs); err != nil {
			return err
		}
	}
	if *detach {
		return upDetached(abs, args, *timeout)
	}

	level := 0
	if *verbose {
		level = 1
	}
	log := zap.New(zap.UseDevMode(true), zap.Level(zapcore.Level(-level)), zap.WriteTo(os.Stderr))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	c, err := localcluster.Start(ctx, localcluster.Options{BinDir: *binDir, RunDir: abs, Log: log, StartTimeout: *timeout})
	if err != nil {
		return err
	}
	var agent *nodeagent.Agent
	cleanup := func() {
		if agent != nil {
			agent.Stop()
		}
		_ = os.Remove(filepath.Join(abs, stateFile))
		if err := c.Stop(true); err != nil {
			log.Error(err, "stopping the cluster")
		}
	}
	defer cleanup()

	st := State{PID: os.Getpid(), RunDir: abs, Kubeconfig: c.KubeconfigPath, URL: c.URL, Started: time.Now()}
	if *withNATS {
		n, err := c.StartNATS()
		if err != nil {
			return err
		}
		st.NATSURL = n.URL()
	}
	if *crds != "" {
		if err := c.InstallCRDs(*crds); err != nil {
			return err
		}
	}
	if *nodes > 0 {
		rules, err := nodeagent.ParseImageMap(*images)
		if err != nil {
			return err
		}
		names := make([]string, *nodes)
		for i := range names {
			names[i] = fmt.Sprintf("local-node-%d", i+1)
		}
		agent, err = nodeagent.Start(ctx, nodeagent.Options{
			Config: c.Config, Nodes: names, Images: rules, Log: log,
			RunDir: filepath.Join(abs, "nodeagent"),
		})
		if err != nil {
			return err
		}
		st.Nodes = names
		wctx, cancel := context.WithTimeout(ctx, *timeout)
		err = agent.WaitReady(wctx)
		cancel()
		if err != nil {
			return err
		}
	}
	for _, v := range procs {
		name, cmdline, _ := strings.Cut(v, "=")
		fields := strings.Fields(cmdline)
		var env []string
		if st.NATSURL != "" {
			env = append(env, "NATS_URL="+st.NATSURL)
		}
		if _, err := c.StartProcess(name, fields[0], fields[1:], env); err != nil {
			return err
		}
	}
	if err := writeState(abs, st); err != nil {
		return err
	}
	printEnv(os.Stdout, st)
	fmt.Fprintf(os.Stderr, "local cluster is up; logs in %s; stop with Ctrl-C or `localcluster down --dir %s`\n", filepath.Join(abs, "logs"), abs)
	<-ctx.Done()
	log.Info("stopping the local cluster")
	return nil
}

// defaultImages maps the loop-worker image to the repository's
// bin/loop-worker, when the repository is found.
func defaultImages() string {
	root, err := testenv.RepoRoot()
	if err != nil {
		return ""
	}
	return "loop-worker=" + filepath.Join(root, "bin", "loop-worker")
}

// prepareDir makes dir an empty run folder. It refuses to empty a folder
// that does not look like one of ours.
func prepareDir(dir string) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return os.MkdirAll(dir, 0o700)
	}
	if err != nil {
		return fmt.Errorf("reading %s: %w", dir, err)
	}
	if len(entries) > 0 {
		if _, err := os.Stat(filepath.Join(dir, "pki", "ca.crt")); err != nil {
			return fmt.Errorf("%s is not empty and is not a local cluster's run folder; choose another --dir", dir)
		}
		if err := os.RemoveAll(dir); err != nil {
			return fmt.Errorf("clearing the old run folder: %w", err)
		}
	}
	return os.MkdirAll(dir, 0o700)
}

// upDetached starts `up` again without --detach in a session of its own,
// with its output in DIR/localcluster.log, and waits for DIR/state.json.
func upDetached(dir string, args []string, timeout time.Duration) error {
	var childArgs []string
	for _, a := range args {
		if a != "--detach" && a != "-detach" && a != "--detach=true" && a != "-detach=true" {
			childArgs = append(childArgs, a)
		}
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	logPath := filepath.Join(dir, "localcluster.log")
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	cmd := exec.Command(self, append([]string{"up", "--in-background"}, append(childArgs, "--dir", dir)...)...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting in the background: %w", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	fmt.Fprintf(os.Stderr, "starting the local cluster in the background (pid %d, log %s)", cmd.Process.Pid, logPath)
	deadline := time.After(timeout)
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for {
		if st, err := readState(dir); err == nil && st.PID == cmd.Process.Pid {
			fmt.Fprintln(os.Stderr, " ready")
			printEnv(os.Stdout, st)
			return nil
		}
		select {
		case err := <-exited:
			return fmt.Errorf("the background cluster exited (%w); its log %s ends with:\n%s", err, logPath, tail(logPath, 30))
		case <-deadline:
			_ = syscall.Kill(cmd.Process.Pid, syscall.SIGTERM)
			return fmt.Errorf("the cluster was not ready after %s; see %s", timeout, logPath)
		case <-tick.C:
			fmt.Fprint(os.Stderr, ".")
		}
	}
}

func down(args []string) error {
	fs := flag.NewFlagSet("down", flag.ExitOnError)
	dir := fs.String("dir", defaultDir(), "run folder of the cluster")
	purge := fs.Bool("purge", false, "also remove the run folder")
	timeout := fs.Duration("timeout", time.Minute, "how long to wait for it to stop")
	_ = fs.Parse(args)
	abs, err := filepath.Abs(*dir)
	if err != nil {
		return err
	}
	st, err := readState(abs)
	switch {
	case errors.Is(err, os.ErrNotExist):
		fmt.Fprintf(os.Stderr, "no local cluster is running in %s\n", abs)
	case err != nil:
		return err
	case alive(st.PID):
		if err := syscall.Kill(st.PID, syscall.SIGTERM); err != nil {
			return fmt.Errorf("stopping pid %d: %w", st.PID, err)
		}
		deadline := time.Now().Add(*timeout)
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for alive(st.PID) {
			if time.Now().After(deadline) {
				_ = syscall.Kill(st.PID, syscall.SIGKILL)
				return fmt.Errorf("pid %d did not stop within %s and was killed", st.PID, *timeout)
			}
			<-tick.C
		}
		fmt.Fprintf(os.Stderr, "local cluster in %s stopped\n", abs)
	default:
		fmt.Fprintf(os.Stderr, "the local cluster in %s is not running (stale pid %d)\n", abs, st.PID)
		_ = os.Remove(filepath.Join(abs, stateFile))
	}
	if *purge {
		if _, err := os.Stat(filepath.Join(abs, "pki", "ca.crt")); err == nil {
			return os.RemoveAll(abs)
		}
	}
	return nil
}

func env(args []string) error {
	fs := flag.NewFlagSet("env", flag.ExitOnError)
	dir := fs.String("dir", defaultDir(), "run folder of the cluster")
	_ = fs.Parse(args)
	abs, err := filepath.Abs(*dir)
	if err != nil {
		return err
	}
	st, err := readState(abs)
	if err != nil {
		return fmt.Errorf("no running local cluster in %s: %w", abs, err)
	}
	printEnv(os.Stdout, st)
	return nil
}

func printEnv(w io.Writer, st State) {
	fmt.Fprintf(w, "export KUBECONFIG=%s\n", st.Kubeconfig)
	if st.NATSURL != "" {
		fmt.Fprintf(w, "export NATS_URL=%s\n", st.NATSURL)
	}
}

func readState(dir string) (State, error) {
	var st State
	data, err := os.ReadFile(filepath.Join(dir, stateFile))
	if err != nil {
		return st, err
	}
	if err := json.Unmarshal(data, &st); err != nil {
		return st, fmt.Errorf("reading %s: %w", stateFile, err)
	}
	return st, nil
}

func writeState(dir string, st State) error {
	data, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	tmp := filepath.Join(dir, stateFile+".tmp")
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(dir, stateFile))
}

func alive(pid int) bool {
	return pid > 0 && syscall.Kill(pid, 0) == nil
}

func tail(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
