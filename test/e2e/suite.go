//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/tenire/loop-operator/test/localcluster"
	"github.com/tenire/loop-operator/test/nodeagent"
	"github.com/tenire/loop-operator/test/testenv"
)

// WorkerImage is the image of the e2e loops; the node agent runs the
// loop-worker binary built from this tree for it.
const WorkerImage = "ghcr.io/tenire/loop-worker:e2e"

// Nodes are the nodes the agent registers.
var Nodes = []string{"e2e-node-1", "e2e-node-2", "e2e-node-3"}

// Suite is the environment every scenario shares.
type Suite struct {
	Log       logr.Logger
	Root      string
	BinDir    string
	Bins      map[string]string
	Cluster   *localcluster.Cluster
	NATS      *localcluster.NATS
	Agent     *nodeagent.Agent
	Manager   *localcluster.Process
	Client    client.Client
	Clientset kubernetes.Interface
}

// StartSuite builds the binaries and starts everything.
func StartSuite(ctx context.Context) (*Suite, error) {
	s := &Suite{Log: zap.New(zap.UseDevMode(true), zap.WriteTo(os.Stderr)).WithName("e2e"), Bins: map[string]string{}}
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
	for _, name := range []string{"manager", "loop-worker"} {
		start := time.Now()
		out := filepath.Join(binDir, name)
		cmd := exec.CommandContext(ctx, "go", "build", "-o", out, "./cmd/"+name)
		cmd.Dir = root
		if b, err := cmd.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("go build ./cmd/%s: %w\n%s", name, err, b)
		}
		s.Bins[name] = out
		s.Log.Info("built", "binary", name, "took", time.Since(start).Round(time.Millisecond))
	}

	if s.Cluster, err = localcluster.Start(ctx, localcluster.Options{Log: s.Log.WithName("cluster")}); err != nil {
		return nil, err
	}
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
		Images: nodeagent.ImageMap{{Match: "loop-worker", Binary: s.Bins["loop-worker"]}},
		RunDir: filepath.Join(s.Cluster.RunDir, "pods"),
		Log:    s.Log.WithName("nodeagent"),
	}); err != nil {
		return s, err
	}
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

// StartManager starts the manager binary against the cluster.
func (s *Suite) StartManager() error {
	p, err := s.Cluster.StartProcess("manager", s.Bins["manager"],
		[]string{"--leader-elect=false", "--metrics-bind-address=0", "--health-probe-bind-address=0", "--drain-grace=10s"},
		[]string{"KUBECONFIG=" + s.Cluster.KubeconfigPath})
	if err != nil {
		return fmt.Errorf("starting the manager: %w", err)
	}
	s.Manager = p
	return nil
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

// CleanupContext is a context for test clean-ups, which run after the
// test's own context is cancelled.
func CleanupContext(d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), d)
}
