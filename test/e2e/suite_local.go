//go:build e2e && !kind

package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/tenire/loop-operator/internal/localcluster"
	"github.com/tenire/loop-operator/internal/nodeagent"
	"github.com/tenire/loop-operator/internal/testenv"
	workerloop "github.com/tenire/loop-operator/worker/loop"
)

// The local mode (make test-e2e): the suite builds the manager and
// loop-worker from this tree and starts a local control plane, nats-server,
// the test-only node agent (which runs worker pods as processes) and the
// manager, all as processes of this machine.

// WorkerImage is the image of the e2e loops; the node agent runs the
// loop-worker binary built from this tree for it.
const WorkerImage = "ghcr.io/tenire/loop-worker:e2e"

// CustomWorkerImage is the image of examples/custom-worker; the node agent
// runs the example built from this tree for it.
var CustomWorkerImage = "example.com/custom-worker:e2e"

// QueuePollInterval is the manager's --queue-poll-interval: shorter than
// the default 10s, so that the autoscaling scenarios react in test time.
const QueuePollInterval = 2 * time.Second

// Nodes are the nodes the agent registers.
var Nodes = []string{"e2e-node-1", "e2e-node-2", "e2e-node-3"}

// mode is what the local mode adds to the Suite.
type mode struct {
	BinDir  string
	Bins    map[string]string
	Cluster *localcluster.Cluster
	NATS    *localcluster.NATS
	Agent   *nodeagent.Agent
	Manager *localcluster.Process
}

// StartSuite builds the binaries and starts everything.
func StartSuite(ctx context.Context) (*Suite, error) {
	s := &Suite{Log: zap.New(zap.UseDevMode(true), zap.WriteTo(os.Stderr)).WithName("e2e")}
	// controller-runtime's own packages (envtest's CRD install) log through it too.
	ctrllog.SetLogger(s.Log.WithName("controller-runtime"))
	s.Bins = map[string]string{}
	root, err := testenv.RepoRoot()
	if err != nil {
		return nil, err
	}
	s.Root = root
	binDir, err := os.MkdirTemp("", "tenire-e2e-bin-")
	if err != nil {
		return nil, err
	}
	s.BinDir = binDir
	for name, pkg := range map[string]string{"manager": "./cmd/manager", "loop-worker": "./cmd/loop-worker", "custom-worker": "./examples/custom-worker"} {
		start := time.Now()
		out := filepath.Join(binDir, name)
		cmd := exec.CommandContext(ctx, "go", "build", "-o", out, pkg)
		cmd.Dir = root
		if b, err := cmd.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("go build %s: %w\n%s", pkg, err, b)
		}
		s.Bins[name] = out
		s.Log.Info("built", "binary", name, "took", time.Since(start).Round(time.Millisecond))
	}

	opts := localcluster.Options{Log: s.Log.WithName("cluster")}
	if opts.ControllerManagerQPS, opts.ControllerManagerBurst, err = controllerManagerLimits(); err != nil {
		return s, err
	}
	if s.Cluster, err = localcluster.Start(ctx, opts); err != nil {
		return nil, err
	}
	s.Kubeconfig = s.Cluster.KubeconfigPath
	crds, err := testenv.CRDPath()
	if err != nil {
		return s, err
	}
	if err := s.Cluster.InstallCRDs(crds); err != nil {
		return s, err
	}
	if s.NATS, err = s.Cluster.StartNATS(); err != nil {
		return s, err
	}
	if s.Agent, err = nodeagent.Start(ctx, nodeagent.Options{
		Config: s.Cluster.Config,
		Nodes:  Nodes,
		Images: nodeagent.ImageMap{{Match: "loop-worker", Binary: s.Bins["loop-worker"]}, {Match: "custom-worker", Binary: s.Bins["custom-worker"]}},
		RunDir: filepath.Join(s.Cluster.RunDir, "pods"),
		Log:    s.Log.WithName("nodeagent"),
	}); err != nil {
		return s, err
	}
	s.Config = s.Cluster.Config
	if s.Client, err = client.New(s.Cluster.Config, client.Options{Scheme: testenv.Scheme}); err != nil {
		return s, err
	}
	if s.Clientset, err = kubernetes.NewForConfig(s.Cluster.Config); err != nil {
		return s, err
	}
	if err := s.StartManager(); err != nil {
		return s, err
	}
	s.Log.Info("suite ready", "kubeconfig", s.Cluster.KubeconfigPath, "nats", s.NATS.URL(), "runDir", s.Cluster.RunDir)
	return s, nil
}

// StartManager starts the manager binary against the cluster, unless it
// runs already.
func (s *Suite) StartManager() error {
	if s.Manager != nil {
		if exited, _ := s.Manager.Exited(); !exited {
			return nil
		}
	}
	p, err := s.Cluster.StartProcess("manager", s.Bins["manager"],
		[]string{"--leader-elect=false", "--metrics-bind-address=0", "--health-probe-bind-address=0", "--drain-grace=10s",
			"--queue-poll-interval=" + QueuePollInterval.String()},
		[]string{"KUBECONFIG=" + s.Cluster.KubeconfigPath})
	if err != nil {
		return fmt.Errorf("starting the manager: %w", err)
	}
	s.Manager = p
	return nil
}

// KillManager kills the manager process with SIGKILL and waits until it is
// gone.
func (s *Suite) KillManager(context.Context) error {
	if s.Manager == nil {
		return errors.New("no manager was started")
	}
	return s.Manager.Kill()
}

// Stop stops everything; keep keeps the run folder (logs) for a look.
func (s *Suite) Stop(keep bool) {
	if s.Manager != nil {
		_ = s.Manager.Stop(10 * time.Second)
	}
	if s.Agent != nil {
		s.Agent.Stop()
	}
	if s.Cluster != nil {
		if err := s.Cluster.Stop(keep); err != nil {
			s.Log.Error(err, "stopping the cluster")
		}
		if keep {
			s.Log.Info("run folder kept", "dir", s.Cluster.RunDir)
		}
	}
	if s.BinDir != "" {
		_ = os.RemoveAll(s.BinDir)
	}
}

// NATSURL is the address of the nats-server process.
func (s *Suite) NATSURL() string { return s.NATS.URL() }

// LoopNATSURL is the address the loops' workers use, the same: they are
// processes of this machine too.
func (s *Suite) LoopNATSURL() string { return s.NATS.URL() }

// RestartNATS stops the nats-server process and starts it again on the
// same port and store.
func (s *Suite) RestartNATS(context.Context) error { return s.NATS.Restart() }

// StartNATS starts the nats-server process again after a failed restart;
// it does nothing when it runs.
func (s *Suite) StartNATS() error { return s.NATS.Start() }

// KillWorker sends SIGKILL to the process of the pod's worker container
// through the node agent, which restarts it per the pod's restart policy.
func (s *Suite) KillWorker(_ context.Context, namespace, pod string) error {
	return s.Agent.Kill(namespace, pod)
}

// Worker returns the current run of the pod's worker process.
func (s *Suite) Worker(_ context.Context, namespace, pod string) (WorkerRun, error) {
	info, ok := s.Agent.Process(namespace, pod)
	if !ok {
		return WorkerRun{}, fmt.Errorf("the node agent runs no process for pod %s/%s", namespace, pod)
	}
	run := WorkerRun{Restarts: info.RestartCount}
	if info.PID != 0 {
		run.ID = strconv.Itoa(info.PID)
	}
	return run, nil
}

// WorkerStatus reads the loop-worker status of a pod from its admin port,
// which the node agent maps to a loopback address.
func (s *Suite) WorkerStatus(ctx context.Context, namespace, pod string) (workerloop.Status, error) {
	var st workerloop.Status
	info, ok := s.Agent.Process(namespace, pod)
	if !ok || info.AdminAddr == "" {
		return st, fmt.Errorf("the node agent runs no process for pod %s", pod)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+info.AdminAddr+"/status", nil)
	if err != nil {
		return st, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return st, fmt.Errorf("GET /status of pod %s: %s", pod, resp.Status)
	}
	return st, json.NewDecoder(resp.Body).Decode(&st)
}

// WorkerLog returns the output of the pod's worker process, across its
// restarts.
func (s *Suite) WorkerLog(_ context.Context, namespace, pod string) (string, error) {
	info, ok := s.Agent.Process(namespace, pod)
	if !ok {
		return "", fmt.Errorf("the node agent runs no process for pod %s/%s", namespace, pod)
	}
	b, err := os.ReadFile(info.LogPath)
	return string(b), err
}

// DrainableNodes are the agent's nodes: any of them may be drained.
func (s *Suite) DrainableNodes(context.Context) ([]string, error) { return s.Agent.Nodes(), nil }

// SinkHost is where a scenario's sink listens and the address the workers
// call it at: loopback, since they are processes of this machine.
func (s *Suite) SinkHost() (listen, advertise string, err error) {
	return "127.0.0.1", "127.0.0.1", nil
}

// CutOffWorker cuts the pod's worker off the API server (cut true), as a
// network partition would, or lets it through again: the node agent gives
// each pod a proxy of its own to the API server.
func (s *Suite) CutOffWorker(_ context.Context, namespace, pod string, cut bool) error {
	return s.Agent.CutOff(namespace, pod, cut)
}

// controllerManagerLimits reads TENIRE_E2E_KCM_QPS and TENIRE_E2E_KCM_BURST,
// kube-controller-manager's client rate limits for the run (zero, the
// default, is its own 20 and 30). The benchmarks give the operator the same,
// so a larger benchmark can raise both sides at once.
func controllerManagerLimits() (qps float32, burst int, err error) {
	if v := os.Getenv("TENIRE_E2E_KCM_QPS"); v != "" {
		f, perr := strconv.ParseFloat(v, 32)
		if perr != nil || f <= 0 {
			return 0, 0, fmt.Errorf("TENIRE_E2E_KCM_QPS=%q: want a positive number of requests per second", v)
		}
		qps = float32(f)
	}
	if v := os.Getenv("TENIRE_E2E_KCM_BURST"); v != "" {
		n, perr := strconv.Atoi(v)
		if perr != nil || n <= 0 {
			return 0, 0, fmt.Errorf("TENIRE_E2E_KCM_BURST=%q: want a positive whole number of requests", v)
		}
		burst = n
	}
	return qps, burst, nil
}
