package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/controller-runtime/pkg/metrics/filters"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	loopsv1alpha1 "github.com/tenire/loop-operator/api/v1alpha1"
	"github.com/tenire/loop-operator/controllers"
	"github.com/tenire/loop-operator/controllers/stream"
)

// version is the operator's version, set at build time with
// -ldflags "-X main.version=v1.2.3" (make images, make release).
var version = "dev"

// defaultLeaderElectionID names the Lease the replicas of the manager
// compete for, unless --leader-election-id names another (one per shard).
const defaultLeaderElectionID = "loop-operator.loops.tenire.io"

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "manager:", err)
		os.Exit(1)
	}
}

// options are the manager's flags.
type options struct {
	metricsAddr             string
	metricsSecure           bool
	probeAddr               string
	pprofAddr               string
	leaderElect             bool
	leaderElectionNamespace string
	leaderElectionID        string
	drainGrace              time.Duration
	maxConcurrentReconciles int
	kubeAPIQPS              float64
	kubeAPIBurst            int
	manageQueues            bool
	queuePollInterval       time.Duration
	watchNamespaces         []string
	loopSelector            labels.Selector
	printVersion            bool
	zap                     zap.Options
}

func parseFlags(args []string) (*options, error) {
	o := &options{zap: zap.Options{}}
	fs := flag.NewFlagSet("manager", flag.ContinueOnError)
	fs.StringVar(&o.metricsAddr, "metrics-bind-address", ":8443", `address of the Prometheus metrics endpoint; "0" disables it`)
	fs.BoolVar(&o.metricsSecure, "metrics-secure", true, "serve the metrics over HTTPS, to clients that authenticate with a token allowed to get /metrics (TokenReview and SubjectAccessReview); --metrics-secure=false serves plain HTTP to anyone")
	fs.StringVar(&o.probeAddr, "health-probe-bind-address", ":8081", "address of the /healthz and /readyz probes")
	fs.StringVar(&o.pprofAddr, "pprof-bind-address", "", `address of Go's /debug/pprof/ profiles, plain HTTP without authentication (bind it to 127.0.0.1 and reach it with kubectl port-forward); "" or "0" disables it`)
	fs.BoolVar(&o.leaderElect, "leader-elect", true, "run behind a leader election lease, so that only one replica acts; --leader-elect=false to disable")
	fs.StringVar(&o.leaderElectionNamespace, "leader-election-namespace", "", "namespace of the leader election lease (default: the namespace the manager runs in)")
	fs.StringVar(&o.leaderElectionID, "leader-election-id", defaultLeaderElectionID, "name of the leader election lease: managers that shard the cluster (--watch-namespaces, --loop-selector) each need their own (docs/scaling.md)")
	fs.DurationVar(&o.drainGrace, "drain-grace", controllers.DefaultDrainGrace, "how long after a drain's deadline to wait for the worker's Drained report before deleting the pod anyway")
	fs.IntVar(&o.maxConcurrentReconciles, "max-concurrent-reconciles", 4, "how many LoopDeployments are reconciled in parallel")
	fs.Float64Var(&o.kubeAPIQPS, "kube-api-qps", 20, "queries per second the manager's client may send to the API server (as kube-controller-manager's flag of the same name)")
	fs.IntVar(&o.kubeAPIBurst, "kube-api-burst", 30, "burst of queries the manager's client may send to the API server")
	fs.BoolVar(&o.manageQueues, "manage-queues", true, "provision each LoopDeployment's NATS JetStream queue, record its backlog in status and autoscale on it; --manage-queues=false leaves queues to someone else")
	fs.DurationVar(&o.queuePollInterval, "queue-poll-interval", stream.DefaultInterval, "how often each LoopDeployment's queue is provisioned and read (the autoscaler's reaction time)")
	fs.Func("watch-namespaces", "comma-separated namespaces whose LoopDeployments (and their pods) the manager watches and manages (default: all)", func(v string) error {
		for _, ns := range strings.Split(v, ",") {
			if ns = strings.TrimSpace(ns); ns != "" {
				o.watchNamespaces = append(o.watchNamespaces, ns)
			}
		}
		return nil
	})
	fs.Func("loop-selector", "label selector of the LoopDeployments the manager manages, e.g. shard=a (default: all); managers that shard a cluster by it need selectors no LoopDeployment matches twice, and each its own --leader-election-id (docs/scaling.md)", func(v string) error {
		sel, err := labels.Parse(v)
		if err != nil {
			return fmt.Errorf("not a label selector (write it as kubectl -l takes it, e.g. shard=a or tier in (a,b)): %w", err)
		}
		o.loopSelector = sel
		return nil
	})
	fs.BoolVar(&o.printVersion, "version", false, "print the version and exit")
	o.zap.BindFlags(fs)
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if o.leaderElect && strings.TrimSpace(o.leaderElectionID) == "" {
		return nil, errors.New("--leader-election-id must name a lease when leader election is on")
	}
	if o.drainGrace <= 0 {
		return nil, fmt.Errorf("--drain-grace must be positive, got %s", o.drainGrace)
	}
	if o.maxConcurrentReconciles < 1 {
		return nil, fmt.Errorf("--max-concurrent-reconciles must be at least 1, got %d", o.maxConcurrentReconciles)
	}
	if o.queuePollInterval < time.Second {
		return nil, fmt.Errorf("--queue-poll-interval must be at least 1s, got %s", o.queuePollInterval)
	}
	if o.kubeAPIQPS <= 0 || o.kubeAPIBurst < 1 {
		return nil, fmt.Errorf("--kube-api-qps must be positive and --kube-api-burst at least 1, got %g and %d", o.kubeAPIQPS, o.kubeAPIBurst)
	}
	return o, nil
}

// metricsOptions serves the metrics as kubebuilder's scaffold does: by
// default over HTTPS (a self-signed certificate unless one is given),
// answering only clients whose bearer token the API server authenticates
// (TokenReview) and authorises for GET /metrics (SubjectAccessReview; the
// ClusterRole metrics-reader grants it).
func metricsOptions(o *options) metricsserver.Options {
	m := metricsserver.Options{BindAddress: o.metricsAddr, SecureServing: o.metricsSecure}
	if o.metricsSecure {
		m.FilterProvider = filters.WithAuthenticationAndAuthorization
	}
	return m
}

// cacheOptions limits the cache to the watched namespaces and the
// selected LoopDeployments, if any; the objects of cluster scope (nodes)
// are watched everywhere all the same.
func cacheOptions(o *options) cache.Options {
	return controllers.ShardCacheOptions(o.watchNamespaces, o.loopSelector)
}

func newScheme() *runtime.Scheme {
	s := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(s))
	utilruntime.Must(loopsv1alpha1.AddToScheme(s))
	return s
}

func run(args []string) error {
	o, err := parseFlags(args)
	if err != nil {
		return err
	}
	if o.printVersion {
		fmt.Println("manager", version)
		return nil
	}
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&o.zap)))
	logger := ctrl.Log.WithName("setup")

	cfg, err := ctrl.GetConfig()
	if err != nil {
		return fmt.Errorf("loading the kubeconfig: %w", err)
	}
	cfg.QPS, cfg.Burst = float32(o.kubeAPIQPS), o.kubeAPIBurst
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                        newScheme(),
		Metrics:                       metricsOptions(o),
		HealthProbeBindAddress:        o.probeAddr,
		PprofBindAddress:              o.pprofAddr,
		LeaderElection:                o.leaderElect,
		LeaderElectionID:              o.leaderElectionID,
		LeaderElectionNamespace:       o.leaderElectionNamespace,
		LeaderElectionReleaseOnCancel: true,
		Cache:                         cacheOptions(o),
	})
	if err != nil {
		return fmt.Errorf("creating the manager: %w", err)
	}
	r := &controllers.LoopDeploymentReconciler{DrainGrace: o.drainGrace}
	if o.manageQueues {
		r.Queues = &stream.Poller{
			Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(),
			Interval: o.queuePollInterval, Log: ctrl.Log.WithName("queues"),
		}
	}
	if err := r.SetupWithManager(mgr, controller.Options{MaxConcurrentReconciles: o.maxConcurrentReconciles}); err != nil {
		return err
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return fmt.Errorf("adding the health check: %w", err)
	}
	if err := mgr.AddReadyzCheck("readyz", healthz.Ping); err != nil {
		return fmt.Errorf("adding the readiness check: %w", err)
	}

	logger.Info("Starting the manager", "version", version, "watchNamespaces", o.watchNamespaces, "loopSelector", selectorString(o.loopSelector), "metricsAddress", o.metricsAddr, "metricsSecure", o.metricsSecure, "probeAddress", o.probeAddr, "leaderElection", o.leaderElect)
	if err := mgr.Start(ctrl.SetupSignalHandler()); err != nil {
		return fmt.Errorf("running the manager: %w", err)
	}
	return nil
}

// selectorString is the selector as written, or "" for none.
func selectorString(s labels.Selector) string {
	if s == nil {
		return ""
	}
	return s.String()
}
