// Package worker runs a worker of a LoopDeployment in one call: it reads
// what the operator passes to the pod, and runs a loop with the given Mux
// under the drain contract, with metrics and probes on the admin port.
//
//	func main() {
//		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
//		defer stop()
//		mux := loop.NewMux()
//		mux.Handle("resize", resize)
//		if err := worker.Run(ctx, mux); err != nil {
//			fmt.Fprintln(os.Stderr, err)
//			os.Exit(1)
//		}
//	}
//
// What the operator passes, and what Config reads:
//
//	LOOP_SETTINGS             the WorkerSettings document: queue (NATS URL, stream, subjects,
//	                          credentials file), pool, retries, timeouts, drain timeout
//	POD_NAME, POD_NAMESPACE   the pod's identity: the worker's name in result records, and
//	                          the Pod watched for drain requests and given the Drained condition
//	KUBECONFIG                the API server, else the in-cluster configuration
//	ADMIN_ADDR                the admin HTTP address (default :8081)
//
// The default worker, cmd/loop-worker, reads its configuration with
// Config too, and adds its command-line flags through Options.Adjust.
package worker

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/go-logr/logr"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	loopsv1alpha1 "github.com/tenire/loop-operator/api/v1alpha1"
	"github.com/tenire/loop-operator/worker/loop"
	"github.com/tenire/loop-operator/worker/podwatch"
	"github.com/tenire/loop-operator/worker/settings"
)

// EnvAdminAddr names the admin HTTP address (":8081" when unset).
const EnvAdminAddr = "ADMIN_ADDR"

// ErrSettings is wrapped by the errors of Config for settings that cannot
// be read or are invalid (cmd/loop-worker exits with code 2 on them).
var ErrSettings = errors.New("worker settings")

// Options change where Config and Run read from. The zero value reads the
// process's environment, which is what a pod of a LoopDeployment needs.
type Options struct {
	// Getenv reads the environment. Default os.Getenv.
	Getenv func(string) string
	// SettingsFile, when set, is read for the WorkerSettings (JSON or
	// YAML) instead of LOOP_SETTINGS.
	SettingsFile string
	// Logger receives structured logs. Default a JSON logger on standard
	// error (controller-runtime's zap).
	Logger *logr.Logger
	// Kube is the API server configuration of the pod watch. Default
	// KUBECONFIG if set, else the in-cluster configuration.
	Kube *rest.Config
	// Adjust, when set, changes the configuration read from the settings
	// before the pod watch is attached (command-line flags, say). An error
	// it returns is Config's.
	Adjust func(*loop.Config) error
}

func (o Options) getenv() func(string) string {
	if o.Getenv == nil {
		return os.Getenv
	}
	return o.Getenv
}

func (o Options) logger() logr.Logger {
	if o.Logger == nil {
		return zap.New()
	}
	return *o.Logger
}

// Config returns the loop configuration of this worker:
//
//   - the WorkerSettings (SettingsFile, else LOOP_SETTINGS; without them the
//     configuration has no queue, and loop.New says so), mapped by
//     settings.Config, the NATS credentials file included;
//   - ADMIN_ADDR as the admin address, POD_NAME as the worker's name;
//   - Adjust, if set;
//   - in a pod (POD_NAME set), the pod watch (package podwatch) as
//     Config.Pod, whose unreadable drain requests fall back to the
//     configuration's DrainTimeout.
func Config(o Options) (loop.Config, error) {
	getenv, log := o.getenv(), o.logger()
	var (
		s     loopsv1alpha1.WorkerSettings
		found bool
		err   error
	)
	if o.SettingsFile != "" {
		data, rerr := os.ReadFile(o.SettingsFile)
		if rerr != nil {
			return loop.Config{}, fmt.Errorf("%w: %w", ErrSettings, rerr)
		}
		if s, err = settings.Parse(data); err != nil {
			return loop.Config{}, fmt.Errorf("%w: %s: %w", ErrSettings, o.SettingsFile, err)
		}
		found = true
	} else if s, found, err = settings.FromEnvironment(getenv); err != nil {
		return loop.Config{}, fmt.Errorf("%w: %w", ErrSettings, err)
	}
	var cfg loop.Config
	if found {
		if cfg, err = settings.Config(s); err != nil {
			return loop.Config{}, fmt.Errorf("%w: %w", ErrSettings, err)
		}
	}
	cfg.Logger = log
	if addr := getenv(EnvAdminAddr); addr != "" {
		cfg.AdminAddr = addr
	}
	if pod := getenv(loopsv1alpha1.EnvPodName); pod != "" {
		cfg.Worker = pod
	}
	if o.Adjust != nil {
		if err := o.Adjust(&cfg); err != nil {
			return loop.Config{}, err
		}
	}
	w, err := podwatch.FromEnvironment(getenv, o.Kube)
	switch {
	case errors.Is(err, podwatch.ErrNotInPod):
		log.Info("not in a pod (no " + loopsv1alpha1.EnvPodName + "); drains come from signals and POST /drain")
	case err != nil:
		return loop.Config{}, err
	default:
		w.Log = log.WithName("podwatch")
		w.FallbackTimeout = cfg.DrainTimeout
		if w.FallbackTimeout == 0 {
			w.FallbackTimeout = loopsv1alpha1.DefaultDrainTimeout
		}
		cfg.Pod = w
	}
	return cfg, nil
}

// Run reads the configuration with Config, runs a loop that routes tasks
// through mux, and returns when ctx is cancelled and the loop has drained
// (nil), or when it cannot start. Cancel ctx on SIGTERM: a pod's deletion
// then drains the worker within its grace period.
func Run(ctx context.Context, mux *loop.Mux) error { return Options{}.Run(ctx, mux) }

// Run is Run with these options.
func (o Options) Run(ctx context.Context, mux *loop.Mux) error {
	if mux == nil {
		return errors.New("worker: Run needs a Mux with the handlers (loop.NewMux)")
	}
	cfg, err := Config(o)
	if err != nil {
		return err
	}
	if cfg.NATSURL == "" && cfg.Conn == nil {
		return fmt.Errorf("%w: no queue configured: %s is not set (the operator sets it in a LoopDeployment's pods; outside one, give Options.SettingsFile)",
			ErrSettings, loopsv1alpha1.EnvWorkerSettings)
	}
	cfg.Mux = mux
	l, err := loop.New(cfg)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrSettings, err)
	}
	return l.Run(ctx)
}
