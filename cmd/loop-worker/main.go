package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/tenire/loop-operator/worker"
	"github.com/tenire/loop-operator/worker/embedded"
	"github.com/tenire/loop-operator/worker/loop"
	"github.com/tenire/loop-operator/worker/queue"
)

// Defaults of --standalone and of the submit subcommand.
const (
	standaloneStream = "LOOP_local"
	standalonePrefix = "loops.local"
	standalonePort   = 4222
)

// errUsage marks errors in the command line or settings (exit code 2).
var errUsage = errors.New("usage")

// version is set at build time with -ldflags "-X main.version=v1.2.3"
// (make images, make release).
var version = "dev"

// stdout receives --version.
var stdout io.Writer = os.Stdout

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	go func() {
		// After the first signal, a second SIGINT kills at once.
		<-ctx.Done()
		stop()
	}()
	err := run(ctx, os.Args[1:], os.Getenv, os.Stderr)
	switch {
	case err == nil:
	case errors.Is(err, flag.ErrHelp):
		os.Exit(0)
	case errors.Is(err, errUsage):
		fmt.Fprintln(os.Stderr, "loop-worker:", err)
		os.Exit(2)
	default:
		fmt.Fprintln(os.Stderr, "loop-worker:", err)
		os.Exit(1)
	}
}

// options are the command-line settings; each flag also has an
// environment variable.
type options struct {
	config         string
	natsURL        string
	stream         string
	subjectPrefix  string
	adminAddr      string
	drainTimeout   time.Duration
	maxWorkers     int
	standalone     bool
	ensureQueue    bool
	standalonePort int
	standaloneDir  string
	execCommand    string
	httpURL        string
	outputLimit    int
	zap            zap.Options
}

// envOf maps flags to their environment variables.
var envOf = map[string]string{
	"config":          "LOOP_CONFIG",
	"nats-url":        "NATS_URL",
	"stream":          "LOOP_STREAM",
	"subject-prefix":  "LOOP_SUBJECT_PREFIX",
	"admin-addr":      "ADMIN_ADDR",
	"drain-timeout":   "DRAIN_TIMEOUT",
	"max-workers":     "MAX_WORKERS",
	"standalone":      "LOOP_STANDALONE",
	"ensure-queue":    "LOOP_ENSURE_QUEUE",
	"standalone-port": "LOOP_STANDALONE_PORT",
	"standalone-dir":  "LOOP_STANDALONE_DIR",
	"exec-command":    "EXEC_COMMAND",
	"http-url":        "HTTP_URL",
	"output-limit":    "OUTPUT_LIMIT",
}

func parseFlags(args []string, getenv func(string) string, stderr io.Writer) (*options, *flag.FlagSet, error) {
	o := &options{}
	fs := flag.NewFlagSet("loop-worker", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.config, "config", "", "file with WorkerSettings as JSON or YAML (default: the LOOP_SETTINGS variable)")
	fs.StringVar(&o.natsURL, "nats-url", "", "NATS server URL (overrides the settings)")
	fs.StringVar(&o.stream, "stream", "", "JetStream work-queue stream (overrides the settings)")
	fs.StringVar(&o.subjectPrefix, "subject-prefix", "", "subject prefix of the loop (overrides the settings)")
	fs.StringVar(&o.adminAddr, "admin-addr", ":8081", "admin HTTP address (/healthz /readyz /metrics /status POST /drain); - disables it")
	fs.DurationVar(&o.drainTimeout, "drain-timeout", 0, "drain deadline after SIGTERM, SIGINT or POST /drain (default: the settings' drainTimeout, else 5m)")
	fs.IntVar(&o.maxWorkers, "max-workers", 0, "most tasks run at once (overrides the settings)")
	fs.BoolVar(&o.standalone, "standalone", false, "run an embedded NATS server with JetStream in the process (implies --ensure-queue)")
	fs.BoolVar(&o.ensureQueue, "ensure-queue", false, "create or update the queue's streams and consumers instead of waiting for the operator to provision them (outside a cluster only: in a cluster the operator owns the queue)")
	fs.IntVar(&o.standalonePort, "standalone-port", standalonePort, "port of the embedded NATS server")
	fs.StringVar(&o.standaloneDir, "standalone-dir", "", "store of the embedded NATS server (default: a temporary folder removed at exit)")
	fs.StringVar(&o.execCommand, "exec-command", "", `command of the exec kind: words split on spaces, or a JSON array such as ["sh","-c","wc -c"]; the kind is off when empty`)
	fs.StringVar(&o.httpURL, "http-url", "", "URL the http kind POSTs payloads to; the kind is off when empty")
	fs.IntVar(&o.outputLimit, "output-limit", 16<<10, "bytes of an exec task's output kept for the logs")
	o.zap.BindFlags(fs)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: loop-worker [flags]\n       loop-worker submit [flags]\n\nFlags (environment variable in brackets):\n")
		fs.VisitAll(func(f *flag.Flag) {
			env := ""
			if e, ok := envOf[f.Name]; ok {
				env = " [" + e + "]"
			}
			fmt.Fprintf(stderr, "  --%s%s\n    \t%s (default %q)\n", f.Name, env, f.Usage, f.DefValue)
		})
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, nil, err
		}
		return nil, nil, fmt.Errorf("%w: %w", errUsage, err)
	}
	if fs.NArg() > 0 {
		return nil, nil, fmt.Errorf("%w: unexpected arguments %q", errUsage, fs.Args())
	}
	if err := applyEnv(fs, getenv); err != nil {
		return nil, nil, err
	}
	if _, err := execArgv(o.execCommand); err != nil {
		return nil, nil, fmt.Errorf("%w: --exec-command: %w", errUsage, err)
	}
	switch {
	case o.outputLimit < 0:
		return nil, nil, fmt.Errorf("%w: --output-limit %d must not be negative", errUsage, o.outputLimit)
	case o.drainTimeout < 0:
		return nil, nil, fmt.Errorf("%w: --drain-timeout %s must not be negative", errUsage, o.drainTimeout)
	case o.maxWorkers < 0:
		return nil, nil, fmt.Errorf("%w: --max-workers %d must not be negative", errUsage, o.maxWorkers)
	}
	return o, fs, nil
}

// applyEnv sets every flag not given on the command line from its
// environment variable.
func applyEnv(fs *flag.FlagSet, getenv func(string) string) error {
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	for name, env := range envOf {
		v := getenv(env)
		if v == "" || given[name] {
			continue
		}
		if err := fs.Set(name, v); err != nil {
			return fmt.Errorf("%w: %s=%q (for --%s): %w", errUsage, env, v, name, err)
		}
	}
	return nil
}

// adjust applies the options to the configuration that worker.Config
// read from the settings: the default worker's flags and their
// environment variables win over the settings.
func adjust(o *options) func(*loop.Config) error {
	return func(cfg *loop.Config) error {
		if o.standalone && cfg.Stream == "" {
			cfg.Stream, cfg.SubjectPrefix = standaloneStream, standalonePrefix
		}
		cfg.EnsureQueue = o.ensureQueue || o.standalone
		if o.natsURL != "" {
			cfg.NATSURL = o.natsURL
		}
		if o.stream != "" {
			cfg.Stream = o.stream
		}
		if o.subjectPrefix != "" {
			cfg.SubjectPrefix = o.subjectPrefix
		}
		if o.drainTimeout > 0 {
			cfg.DrainTimeout = o.drainTimeout
		}
		if o.maxWorkers > 0 {
			cfg.MaxWorkers = o.maxWorkers
		}
		cfg.AdminAddr = o.adminAddr
		if cfg.NATSURL == "" && !o.standalone {
			return fmt.Errorf("%w: no queue configured: set LOOP_SETTINGS or --config, or --nats-url with --stream and --subject-prefix, or use --standalone", errUsage)
		}
		if cfg.Stream == "" || cfg.SubjectPrefix == "" {
			return fmt.Errorf("%w: --stream and --subject-prefix (or settings that name them) are required", errUsage)
		}
		return nil
	}
}

func run(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "submit" {
		return submit(ctx, args[1:], getenv, stderr)
	}
	if len(args) == 1 && (args[0] == "--version" || args[0] == "-version") {
		fmt.Fprintln(stdout, "loop-worker", version)
		return nil
	}
	o, _, err := parseFlags(args, getenv, stderr)
	if err != nil {
		return err
	}
	log := zap.New(zap.UseFlagOptions(&o.zap), zap.WriteTo(stderr))
	// What the operator passes to the pod (settings, credentials, pod
	// identity, the pod watch), read as every worker reads it, with the
	// flags on top.
	cfg, err := worker.Config(worker.Options{Getenv: getenv, SettingsFile: o.config, Logger: &log, Adjust: adjust(o)})
	switch {
	case errors.Is(err, worker.ErrSettings):
		return fmt.Errorf("%w: %w", errUsage, err)
	case err != nil:
		return err
	}

	if o.standalone {
		url, stopServer, err := startStandalone(o, log)
		if err != nil {
			return err
		}
		defer stopServer()
		cfg.NATSURL = url
	}

	l, err := loop.New(cfg)
	if err != nil {
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	registerKinds(l, o, log)
	return l.Run(ctx)
}

// startStandalone runs the embedded NATS server and returns its URL and a
// function that stops it and removes a temporary store.
func startStandalone(o *options, log logr.Logger) (string, func(), error) {
	dir, removeDir := o.standaloneDir, func() {}
	if dir == "" {
		tmp, err := os.MkdirTemp("", "loop-worker-standalone-")
		if err != nil {
			return "", nil, fmt.Errorf("standalone: %w", err)
		}
		dir, removeDir = tmp, func() { _ = os.RemoveAll(tmp) }
	}
	srv, err := embedded.Start(embedded.Options{StoreDir: dir, Port: o.standalonePort})
	if err != nil {
		removeDir()
		return "", nil, fmt.Errorf("standalone: %w", err)
	}
	log.Info("standalone: embedded NATS server with JetStream is running", "url", srv.URL(), "store", dir)
	return srv.URL(), func() {
		srv.Shutdown()
		removeDir()
	}, nil
}

func registerKinds(l *loop.Loop, o *options, log logr.Logger) {
	l.Handle("sleep", sleepHandler)
	l.Handle("count", countHandler(log.WithName("count")))
	kinds := []string{"sleep", "count"}
	if argv, _ := execArgv(o.execCommand); len(argv) > 0 {
		l.Handle("exec", execHandler(argv, o.outputLimit, log.WithName("exec")))
		kinds = append(kinds, "exec")
	}
	if o.httpURL != "" {
		l.Handle("http", httpHandler(&http.Client{}, o.httpURL))
		kinds = append(kinds, "http")
	}
	log.Info("task kinds registered", "kinds", kinds)
}

// execArgv reads --exec-command: a JSON array of strings, or words
// separated by spaces.
func execArgv(s string) ([]string, error) {
	s = strings.TrimSpace(s)
	if !strings.HasPrefix(s, "[") {
		return strings.Fields(s), nil
	}
	var argv []string
	if err := json.Unmarshal([]byte(s), &argv); err != nil {
		return nil, fmt.Errorf("not a JSON array of strings: %w", err)
	}
	if len(argv) == 0 || argv[0] == "" {
		return nil, errors.New("the JSON array names no command")
	}
	return argv, nil
}

// submit publishes one task.
func submit(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) error {
	fs := flag.NewFlagSet("loop-worker submit", flag.ContinueOnError)
	fs.SetOutput(stderr)
	natsURL := fs.String("nats-url", fmt.Sprintf("nats://127.0.0.1:%d", standalonePort), "NATS server URL [NATS_URL]")
	stream := fs.String("stream", standaloneStream, "JetStream work-queue stream [LOOP_STREAM]")
	prefix := fs.String("subject-prefix", standalonePrefix, "subject prefix of the loop [LOOP_SUBJECT_PREFIX]")
	kind := fs.String("kind", "", "task kind (required)")
	priority := fs.String("priority", queue.DefaultPriority, "priority class")
	id := fs.String("id", "", "task id, for de-duplication")
	payload := fs.String("payload", "", "task payload")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	for name, env := range map[string]string{"nats-url": "NATS_URL", "stream": "LOOP_STREAM", "subject-prefix": "LOOP_SUBJECT_PREFIX"} {
		given := false
		fs.Visit(func(f *flag.Flag) { given = given || f.Name == name })
		if v := getenv(env); v != "" && !given {
			_ = fs.Set(name, v)
		}
	}
	if *kind == "" {
		return fmt.Errorf("%w: submit: --kind is required", errUsage)
	}
	p, closeConn, err := dialProducer(*natsURL, queue.NewNames(*stream, *prefix))
	if err != nil {
		return err
	}
	defer closeConn()
	seq, dup, err := p.Submit(ctx, queue.Task{ID: *id, Kind: *kind, Priority: *priority, Payload: []byte(*payload)})
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "submitted %s task as stream sequence %d (duplicate: %v)\n", *kind, seq, dup)
	return nil
}
