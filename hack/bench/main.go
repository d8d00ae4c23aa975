package main

import (
	"bytes"
	"context"
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

	"github.com/go-logr/logr"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
)

// benchstat is the version of golang.org/x/perf/cmd/benchstat that
// compares the Go benchmarks, run with `go run`.
const benchstat = "golang.org/x/perf/cmd/benchstat@v0.0.0-20260908200009-22c9c6c9d4da"

// options are the command's flags.
type options struct {
	out     string // the report
	workDir string // raw outputs, profiles
	count   int    // -count of the Go benchmarks
	quick   bool   // a smoke run: small sizes, for CI
	skip    string // comma-separated parts to leave out
	// many: the sizes of part 8 (0: the goal size, 1,000 × 10, or 10 × 3
	// with quick) and kube-controller-manager's client limits, given to
	// the operator too (0: 100 and 200, or with quick its own defaults,
	// 20 and 30).
	manyLoops, manyPods, manyBurst int
	manyQPS                        float64
	log                            logr.Logger
}

func main() {
	log := zap.New(zap.UseDevMode(true), zap.WriteTo(os.Stderr)).WithName("bench")
	if err := run(os.Args[1:], log); err != nil {
		log.Error(err, "make bench failed")
		os.Exit(1)
	}
}

func run(args []string, log logr.Logger) error {
	o := &options{log: log}
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.StringVar(&o.out, "out", "docs/benchmarks.md", "where to write the report")
	fs.StringVar(&o.workDir, "work", "bin/bench", "where to keep the raw outputs and profiles")
	fs.IntVar(&o.count, "count", 6, "how many times each Go benchmark runs (benchstat needs at least 6 for a confidence interval)")
	fs.BoolVar(&o.quick, "quick", false, "a smoke run with small sizes and -count 1 (the figures mean nothing; CI checks that every part runs)")
	fs.StringVar(&o.skip, "skip", "", "parts to leave out, comma-separated: dispatch,features,footprint,queue,operator,drain,autoscale,many")
	fs.IntVar(&o.manyLoops, "many-loops", 0, "LoopDeployments (and Deployments) in part 8 (default the goal size, 1000; 10 with -quick)")
	fs.IntVar(&o.manyPods, "many-pods", 0, "pods of each object in part 8 (default 10, 3 with -quick)")
	fs.Float64Var(&o.manyQPS, "many-qps", 0, "kube-controller-manager's and the operator's client QPS in part 8 (default 100; with -quick kube-controller-manager's own, 20)")
	fs.IntVar(&o.manyBurst, "many-burst", 0, "kube-controller-manager's and the operator's client burst in part 8 (default 200; with -quick kube-controller-manager's own, 30)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if o.quick {
		o.count = 1
	}
	if err := os.MkdirAll(o.workDir, 0o755); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	start := time.Now()
	r := &report{Quick: o.quick, Count: o.count}
	var err error
	if r.Machine, err = readMachine(ctx); err != nil {
		return err
	}
	log.Info("machine", "cpu", r.Machine.CPU, "cores", r.Machine.Cores, "load", r.Machine.LoadBefore, "go", r.Machine.Go, "commit", r.Machine.Commit)
	if r.Machine.LoadBefore1 > 0.5*float64(r.Machine.Cores) && !o.quick {
		log.Info("the machine is busy: figures taken now are noisy; the report records the load", "load1", r.Machine.LoadBefore1)
	}

	for _, p := range parts(o) {
		if strings.Contains(","+o.skip+",", ","+p.id+",") {
			log.Info("skipped", "part", p.title)
			r.Skipped = append(r.Skipped, p.title)
			continue
		}
		t := time.Now()
		log.Info("running", "part", p.title)
		sec, err := p.run(ctx, o)
		if err != nil {
			return fmt.Errorf("%s: %w", p.title, err)
		}
		sec.Took = time.Since(t).Round(time.Second)
		r.Sections = append(r.Sections, sec)
		for _, f := range sec.Figures {
			log.Info("figure", "part", p.title, "what", f.What, "ratio", fmt.Sprintf("%.2f", f.Ratio), "goal", f.Goal, "met", f.metString())
		}
	}
	if r.Machine.LoadAfter, _, err = loadAvg(); err != nil {
		return err
	}
	r.Took = time.Since(start).Round(time.Second)
	var buf bytes.Buffer
	if err := r.write(&buf); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(o.out), 0o755); err != nil {
		return err
	}
	if old, err := os.ReadFile(o.out); err == nil {
		buf.Write(carriedNotes(old))
	}
	if err := os.WriteFile(o.out, buf.Bytes(), 0o644); err != nil {
		return err
	}
	log.Info("report written", "file", o.out, "took", r.Took, "goalsMissed", r.missed())
	return nil
}

// part is one section of the report.
type part struct {
	id, title string
	run       func(ctx context.Context, o *options) (*section, error)
}

// command runs name with args in the repository, streaming its output to
// the log's writer and into a file under the work folder; it returns the
// output.
func command(ctx context.Context, o *options, logFile string, env []string, name string, args ...string) ([]byte, error) {
	o.log.Info("command", "cmd", name+" "+strings.Join(args, " "), "output", filepath.Join(o.workDir, logFile))
	f, err := os.Create(filepath.Join(o.workDir, logFile))
	if err != nil {
		return nil, err
	}
	defer func() { _ = f.Close() }()
	var buf bytes.Buffer
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout = io.MultiWriter(f, &buf, os.Stderr)
	cmd.Stderr = io.MultiWriter(f, os.Stderr)
	if err := cmd.Run(); err != nil {
		return buf.Bytes(), fmt.Errorf("%s %s: %w (output in %s)", name, strings.Join(args, " "), err, f.Name())
	}
	return buf.Bytes(), nil
}

// ensureRedis makes sure redis-server is installed for the asynq anchor,
// installing Debian's package when it can.
func ensureRedis(ctx context.Context, o *options) error {
	if _, err := exec.LookPath("redis-server"); err == nil {
		return nil
	}
	if _, err := exec.LookPath("apt-get"); err != nil || os.Geteuid() != 0 {
		return errors.New("redis-server is needed for the asynq anchor: install it (Debian: apt-get install redis-server) and run make bench again")
	}
	o.log.Info("installing redis-server from Debian's packages (the asynq anchor needs it)")
	env := []string{"DEBIAN_FRONTEND=noninteractive"}
	if _, err := command(ctx, o, "apt-install.log", env, "apt-get", "install", "-y", "--no-install-recommends", "redis-server"); err != nil {
		if _, err := command(ctx, o, "apt-update.log", env, "apt-get", "update"); err != nil {
			return err
		}
		if _, err := command(ctx, o, "apt-install.log", env, "apt-get", "install", "-y", "--no-install-recommends", "redis-server"); err != nil {
			return err
		}
	}
	return nil
}
