//go:build e2e

package e2e

import (
	"context"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Suite is the environment every scenario shares. The suite runs in one
// of two modes, chosen by build tag:
//
//   - local (tag e2e, suite_local.go): the suite builds the manager and
//     loop-worker and starts a local control plane, nats-server, the
//     test-only node agent and the manager as processes (make test-e2e);
//   - kind (tags e2e,kind, suite_kind.go): the suite starts nothing but a
//     port-forward to NATS; it runs against the cluster of KUBECONFIG, a
//     kind cluster prepared by `make kind-create kind-load deploy`
//     (make test-e2e-kind).
//
// The scenarios are shared. What differs between the modes (killing a
// worker or the manager, restarting NATS, reaching a worker's admin port
// or its log, the NATS addresses, the nodes that may be drained) is a
// method that each mode's file defines with the same signature:
//
//	StartSuite(ctx) (*Suite, error)
//	(s *Suite) Stop(keep bool)
//	(s *Suite) NATSURL() string     // the test's own address of NATS
//	(s *Suite) LoopNATSURL() string // spec.queue.nats.url of the loops
//	(s *Suite) KillWorker(ctx, namespace, pod) error
//	(s *Suite) Worker(ctx, namespace, pod) (WorkerRun, error)
//	(s *Suite) WorkerStatus(ctx, namespace, pod) (workerloop.Status, error)
//	(s *Suite) WorkerLog(ctx, namespace, pod) (string, error)
//	(s *Suite) KillManager(ctx) error
//	(s *Suite) StartManager() error // does nothing when it runs
//	(s *Suite) RestartNATS(ctx) error
//	(s *Suite) StartNATS() error    // does nothing when it runs
//	(s *Suite) DrainableNodes(ctx) ([]string, error)
//	(s *Suite) SinkHost() (listen, advertise string, err error)
//	(s *Suite) CutOffWorker(ctx, namespace, pod, cut) error
//
// and the worker image of the loops, WorkerImage, and the manager's
// --queue-poll-interval, QueuePollInterval.
type Suite struct {
	Log  logr.Logger
	Root string
	// Kubeconfig is the file kubectl is given with --kubeconfig; empty in
	// kind mode, where kubectl reads KUBECONFIG as the suite's clients do.
	Kubeconfig string
	Client     client.Client
	Clientset  kubernetes.Interface
	// Config is the REST config of Client and Clientset, for other
	// clients (a dynamic client's watches).
	Config *rest.Config

	// mode holds what only one mode has: in local mode the cluster, NATS,
	// node agent and manager processes (Cluster, NATS, Agent, Manager,
	// BinDir, Bins); in kind mode the port-forward to NATS and the
	// manager's replicas.
	mode
}

// WorkerRun identifies the current run of a pod's worker container.
type WorkerRun struct {
	// Restarts is how many times the container was restarted.
	Restarts int32
	// ID names the running process or container (a PID in local mode, a
	// container ID in kind mode); empty while none runs.
	ID string
}

// CleanupContext is a context for test clean-ups, which run after the
// test's own context is cancelled.
func CleanupContext(d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), d)
}
