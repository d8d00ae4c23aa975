//go:build e2e && kind

package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	loopsv1alpha1 "github.com/tenire/loop-operator/api/v1alpha1"
	"github.com/tenire/loop-operator/controllers/stream"
	"github.com/tenire/loop-operator/internal/testenv"
	workerloop "github.com/tenire/loop-operator/worker/loop"
)

// The kind mode (make test-e2e-kind): the suite runs against the cluster
// of KUBECONFIG, a kind cluster that `make kind-create kind-load deploy`
// prepared: hack/kind-config.yaml's nodes, the NATS of config/nats, the
// operator of config/default in tenire-system and the worker image loaded
// into the nodes. The suite builds and starts nothing but a
// `kubectl port-forward` to NATS, for its own connection.
//
// It refuses a cluster whose nodes are not all kind nodes of one cluster
// (spec.providerID kind://PROVIDER/CLUSTER/NODE): it kills containers,
// drains nodes, restarts NATS and scales the operator to zero.

const (
	// managerNamespace and managerDeployment are where make deploy puts
	// the operator (config/default).
	managerNamespace  = "tenire-system"
	managerDeployment = "loop-operator-controller-manager"
	managerContainer  = "manager"
	// natsNamespace, natsService and natsPod are config/nats: one NATS in
	// a StatefulSet whose JetStream store is a PersistentVolumeClaim.
	natsNamespace = "nats"
	natsService   = "nats"
	natsPod       = "nats-0"
	natsPort      = 4222
	// kindLoopNATSURL is NATS for the workers, through the cluster's DNS.
	kindLoopNATSURL = "nats://" + natsService + "." + natsNamespace + ":4222"
	// kindWaitTimeout bounds the waits for the manager and NATS.
	kindWaitTimeout = 3 * time.Minute
	// labelControlPlane marks the kind control-plane node.
	labelControlPlane = "node-role.kubernetes.io/control-plane"
)

// WorkerImage is the worker image `make kind-load` loaded into the nodes:
// WORKER_IMG, which make test-e2e-kind passes as E2E_WORKER_IMAGE. Its tag
// is not latest, so the pods' pull policy is IfNotPresent and the nodes
// use the loaded image.
var WorkerImage = envOr("E2E_WORKER_IMAGE", "ghcr.io/tenire/loop-worker:dev")

// CustomWorkerImage is the image of examples/custom-worker that
// `make kind-load` loaded into the nodes (make custom-worker-image, without
// Docker; examples/custom-worker/Dockerfile builds it where a registry is
// reachable): CUSTOM_WORKER_IMG, which make test-e2e-kind passes as
// E2E_CUSTOM_WORKER_IMAGE. The scenario that runs it fails when it is not
// given.
var CustomWorkerImage = envOr("E2E_CUSTOM_WORKER_IMAGE", "")

// QueuePollInterval is the deployed manager's --queue-poll-interval:
// config/manager leaves it at the default.
const QueuePollInterval = stream.DefaultInterval

// mode is what the kind mode adds to the Suite.
type mode struct {
	// kindCluster is the kind cluster's name, containerTool the CLI of its
	// node provider (docker, podman or nerdctl) and nodeContainers the
	// provider's container of each node, all read from the nodes'
	// provider IDs.
	kindCluster, containerTool string
	nodeContainers             map[string]string
	// managerReplicas is the operator's number of replicas when the suite
	// started; StartManager scales it back to that.
	managerReplicas int32
	// natsForward is the test's port-forward to NATS.
	natsForward *portForward
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// StartSuite connects to the cluster of KUBECONFIG, checks that it is a
// kind cluster with the operator and NATS running, and forwards a local
// port to NATS.
func StartSuite(ctx context.Context) (*Suite, error) {
	s := &Suite{Log: zap.New(zap.UseDevMode(true), zap.WriteTo(os.Stderr)).WithName("e2e")}
	// controller-runtime's own packages (envtest's CRD install) log through it too.
	ctrllog.SetLogger(s.Log.WithName("controller-runtime"))
	root, err := testenv.RepoRoot()
	if err != nil {
		return nil, err
	}
	s.Root = root
	// The loading rules of kubectl: KUBECONFIG, else ~/.kube/config, and
	// the current context; the kubectl the scenarios run reads the same.
	kubeconfig := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(clientcmd.NewDefaultClientConfigLoadingRules(), &clientcmd.ConfigOverrides{})
	raw, err := kubeconfig.RawConfig()
	if err != nil {
		return nil, fmt.Errorf("reading the kubeconfig: %w", err)
	}
	cfg, err := kubeconfig.ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("reading the kubeconfig: %w", err)
	}
	cfg.QPS, cfg.Burst = 100, 200
	s.Config = cfg
	if s.Client, err = client.New(cfg, client.Options{Scheme: testenv.Scheme}); err != nil {
		return nil, err
	}
	if s.Clientset, err = kubernetes.NewForConfig(cfg); err != nil {
		return nil, err
	}
	if err := s.checkKind(ctx); err != nil {
		return nil, err
	}
	s.Log.Info("kind cluster", "context", raw.CurrentContext, "server", cfg.Host, "cluster", s.kindCluster, "provider", s.containerTool)

	prepare := "; run make kind-create kind-load deploy first (docs/development.md)"
	if err := s.Client.List(ctx, &loopsv1alpha1.LoopDeploymentList{}, client.Limit(1)); err != nil {
		return nil, fmt.Errorf("listing LoopDeployments (is the CRD installed?): %w%s", err, prepare)
	}
	d, err := s.Clientset.AppsV1().Deployments(managerNamespace).Get(ctx, managerDeployment, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("the operator's Deployment %s/%s: %w%s", managerNamespace, managerDeployment, err, prepare)
	}
	if d.Spec.Replicas == nil || *d.Spec.Replicas == 0 || !deploymentReady(d, *d.Spec.Replicas) {
		return nil, fmt.Errorf("the operator's Deployment %s/%s is not ready (a run interrupted while the manager was scaled to 0 leaves it so; make deploy restores it)%s",
			managerNamespace, managerDeployment, prepare)
	}
	s.managerReplicas = *d.Spec.Replicas
	if err := s.waitNATSReady(ctx, ""); err != nil {
		return nil, fmt.Errorf("NATS: %w%s", err, prepare)
	}
	if s.natsForward, err = startPortForward(ctx, s.Log.WithName("port-forward"), natsNamespace, "svc/"+natsService, natsPort); err != nil {
		return nil, err
	}
	s.Log.Info("suite ready", "nats", s.NATSURL(), "loopNATS", s.LoopNATSURL(), "workerImage", WorkerImage,
		"manager", managerNamespace+"/"+managerDeployment, "managerReplicas", s.managerReplicas)
	return s, nil
}

// checkKind reads the kind cluster's name and node provider from the
// nodes' provider IDs, kind://PROVIDER/CLUSTER/NODE, and fails unless
// every node has one of the same cluster.
func (s *Suite) checkKind(ctx context.Context) error {
	nodes, err := s.Clientset.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	if len(nodes.Items) == 0 {
		return errors.New("the cluster has no nodes")
	}
	s.nodeContainers = map[string]string{}
	for _, n := range nodes.Items {
		rest, ok := strings.CutPrefix(n.Spec.ProviderID, "kind://")
		parts := strings.Split(rest, "/")
		if !ok || len(parts) != 3 || slices.Contains(parts, "") {
			return fmt.Errorf("node %s has provider ID %q, not kind://PROVIDER/CLUSTER/NODE: the kind suite runs on kind clusters only (it kills containers, drains nodes and scales the operator to 0)",
				n.Name, n.Spec.ProviderID)
		}
		if s.kindCluster == "" {
			s.containerTool, s.kindCluster = parts[0], parts[1]
		}
		if parts[0] != s.containerTool || parts[1] != s.kindCluster {
			return fmt.Errorf("node %s is %s, not of the kind cluster %s/%s", n.Name, n.Spec.ProviderID, s.containerTool, s.kindCluster)
		}
		s.nodeContainers[n.Name] = parts[2]
	}
	return nil
}

// Stop stops the port-forward; the cluster stays as it is (keep does not
// matter).
func (s *Suite) Stop(bool) {
	if s.natsForward != nil {
		s.natsForward.Stop()
	}
}

// NATSURL is the test's address of NATS: its port-forward.
func (s *Suite) NATSURL() string { return s.natsForward.URL() }

// LoopNATSURL is the address the workers use, through the cluster's DNS.
func (s *Suite) LoopNATSURL() string { return kindLoopNATSURL }

// KillWorker kills the pod's worker container with SIGKILL, as kill -9
// would (killContainer). The kubelet restarts the container per the pod's
// restart policy, as after any crash.
//
// Deleting the pod with a grace period of 0 would not do: the pod leaves
// the API at once, but the kubelet still stops the container with SIGTERM
// first, and the worker drains on SIGTERM.
func (s *Suite) KillWorker(ctx context.Context, namespace, pod string) error {
	p, err := s.Clientset.CoreV1().Pods(namespace).Get(ctx, pod, metav1.GetOptions{})
	if err != nil {
		return err
	}
	return s.killContainer(ctx, p, loopsv1alpha1.WorkerContainerName)
}

// killContainer kills a running container of the pod with SIGKILL:
// `crictl stop --timeout 0` in the pod's node (a container of the kind
// provider), which sends SIGKILL at once, without the stop signal first.
func (s *Suite) killContainer(ctx context.Context, p *corev1.Pod, container string) error {
	cs := containerStatus(p, container)
	if cs == nil || cs.State.Running == nil || cs.ContainerID == "" {
		return fmt.Errorf("container %s of pod %s/%s is not running", container, p.Namespace, p.Name)
	}
	node, ok := s.nodeContainers[p.Spec.NodeName]
	if !ok {
		return fmt.Errorf("pod %s/%s runs on node %q, which the suite did not see at its start", p.Namespace, p.Name, p.Spec.NodeName)
	}
	_, id, _ := strings.Cut(cs.ContainerID, "://")
	cmd := exec.CommandContext(ctx, s.containerTool, "exec", node, "crictl", "stop", "--timeout", "0", id)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s: %w\n%s", strings.Join(cmd.Args, " "), err, out)
	}
	s.Log.Info("killed a container with SIGKILL", "pod", p.Namespace+"/"+p.Name, "container", container, "node", node, "id", id)
	return nil
}

// Worker returns the current run of the pod's worker container.
func (s *Suite) Worker(ctx context.Context, namespace, pod string) (WorkerRun, error) {
	p, err := s.Clientset.CoreV1().Pods(namespace).Get(ctx, pod, metav1.GetOptions{})
	if err != nil {
		return WorkerRun{}, err
	}
	cs := containerStatus(p, loopsv1alpha1.WorkerContainerName)
	if cs == nil {
		return WorkerRun{}, fmt.Errorf("pod %s/%s reports no worker container", namespace, pod)
	}
	run := WorkerRun{Restarts: cs.RestartCount}
	if cs.State.Running != nil {
		run.ID = cs.ContainerID
	}
	return run, nil
}

// WorkerStatus reads the loop-worker status of a pod from its admin port,
// through the API server's pod proxy.
func (s *Suite) WorkerStatus(ctx context.Context, namespace, pod string) (workerloop.Status, error) {
	var st workerloop.Status
	p, err := s.Clientset.CoreV1().Pods(namespace).Get(ctx, pod, metav1.GetOptions{})
	if err != nil {
		return st, err
	}
	port := loopsv1alpha1.WorkerAdminPort
	for _, c := range p.Spec.Containers {
		if c.Name != loopsv1alpha1.WorkerContainerName {
			continue
		}
		for _, cp := range c.Ports {
			if cp.Name == loopsv1alpha1.WorkerAdminPortName {
				port = cp.ContainerPort
			}
		}
	}
	// Through a port-forward, which arrives on the pod's loopback, as
	// docs/worker.md tells users: the API server's pod proxy does not, and
	// /status answers it only with an admin token, which the suite's loops
	// do not configure.
	body, err := s.getThroughPortForward(ctx, namespace, pod, int(port), "/status")
	if err != nil {
		return st, fmt.Errorf("GET /status of pod %s: %w", pod, err)
	}
	return st, json.Unmarshal(body, &st)
}

// getThroughPortForward forwards a local port to the pod's port with the
// suite's own kubectl port-forward (its log at debug level: WorkerStatus is
// polled), GETs path on it and stops the forward.
func (s *Suite) getThroughPortForward(ctx context.Context, namespace, pod string, port int, path string) ([]byte, error) {
	// A pod that went away fails the call within seconds, not after the
	// minute that the forward to NATS waits for its pod.
	starting, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	fw, err := startPortForward(starting, s.Log.WithName("worker-port-forward").V(1), namespace, "pod/"+pod, port)
	if err != nil {
		return nil, err
	}
	defer fw.Stop()
	get, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://127.0.0.1:"+strconv.Itoa(fw.port)+path, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(get)
	if err != nil {
		return nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(body)))
	}
	return body, nil
}

// WorkerLog returns the log of the pod's worker container (its current
// run).
func (s *Suite) WorkerLog(ctx context.Context, namespace, pod string) (string, error) {
	b, err := s.Clientset.CoreV1().Pods(namespace).GetLogs(pod, &corev1.PodLogOptions{Container: loopsv1alpha1.WorkerContainerName}).DoRaw(ctx)
	return string(b), err
}

// KillManager kills the operator's containers with SIGKILL
// (killContainer), scales its Deployment to 0 so that no pod of it runs
// again, and waits until none is left. Killed first, the leader neither
// acts between the scale-down and its SIGTERM nor releases its lease; a
// container the kubelet restarts meanwhile waits for that lease and is
// stopped by the scale-down before it can lead. (Deleting a pod would not
// do: with two replicas behind leader election, the other takes over.)
func (s *Suite) KillManager(ctx context.Context) error {
	d, err := s.Clientset.AppsV1().Deployments(managerNamespace).Get(ctx, managerDeployment, metav1.GetOptions{})
	if err != nil {
		return err
	}
	selector, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
	if err != nil {
		return err
	}
	managerPods := func(ctx context.Context) ([]corev1.Pod, error) {
		pods, err := s.Clientset.CoreV1().Pods(managerNamespace).List(ctx, metav1.ListOptions{LabelSelector: selector.String()})
		if err != nil {
			return nil, err
		}
		return pods.Items, nil
	}
	pods, err := managerPods(ctx)
	if err != nil {
		return err
	}
	for i := range pods {
		if cs := containerStatus(&pods[i], managerContainer); cs == nil || cs.State.Running == nil {
			continue // nothing runs that could act
		}
		if err := s.killContainer(ctx, &pods[i], managerContainer); err != nil {
			return err
		}
	}
	if err := s.scaleManager(ctx, 0); err != nil {
		return err
	}
	return wait.PollUntilContextTimeout(ctx, time.Second, kindWaitTimeout, true, func(ctx context.Context) (bool, error) {
		pods, err := managerPods(ctx)
		return len(pods) == 0, err
	})
}

// StartManager scales the operator's Deployment back to its replicas and
// waits until they are ready; it does nothing more when they are.
func (s *Suite) StartManager() error {
	ctx, cancel := CleanupContext(kindWaitTimeout)
	defer cancel()
	if err := s.scaleManager(ctx, s.managerReplicas); err != nil {
		return err
	}
	var last *appsv1.Deployment
	err := wait.PollUntilContextCancel(ctx, time.Second, true, func(ctx context.Context) (bool, error) {
		d, err := s.Clientset.AppsV1().Deployments(managerNamespace).Get(ctx, managerDeployment, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		last = d
		return deploymentReady(d, s.managerReplicas), nil
	})
	if err != nil && last != nil {
		return fmt.Errorf("waiting for %d ready replicas of %s/%s (status %+v): %w", s.managerReplicas, managerNamespace, managerDeployment, last.Status, err)
	}
	return err
}

// scaleManager sets the replicas of the operator's Deployment.
func (s *Suite) scaleManager(ctx context.Context, replicas int32) error {
	patch := fmt.Appendf(nil, `{"spec":{"replicas":%d}}`, replicas)
	if _, err := s.Clientset.AppsV1().Deployments(managerNamespace).Patch(ctx, managerDeployment, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		return fmt.Errorf("scaling %s/%s to %d: %w", managerNamespace, managerDeployment, replicas, err)
	}
	s.Log.Info("scaled the manager", "deployment", managerNamespace+"/"+managerDeployment, "replicas", replicas)
	return nil
}

// deploymentReady reports whether the Deployment has rolled out replicas
// pods, all available.
func deploymentReady(d *appsv1.Deployment, replicas int32) bool {
	st := d.Status
	return st.ObservedGeneration >= d.Generation && st.Replicas == replicas && st.UpdatedReplicas == replicas &&
		st.ReadyReplicas == replicas && st.AvailableReplicas == replicas
}

// RestartNATS deletes the NATS pod; its StatefulSet creates it again on
// the same PersistentVolumeClaim, so JetStream keeps its streams,
// consumers and messages. It waits until the new pod is ready and the
// port-forward reaches it.
func (s *Suite) RestartNATS(ctx context.Context) error {
	pods := s.Clientset.CoreV1().Pods(natsNamespace)
	old, err := pods.Get(ctx, natsPod, metav1.GetOptions{})
	if err != nil {
		return err
	}
	if err := pods.Delete(ctx, natsPod, metav1.DeleteOptions{Preconditions: metav1.NewUIDPreconditions(string(old.UID))}); err != nil {
		return fmt.Errorf("deleting pod %s/%s: %w", natsNamespace, natsPod, err)
	}
	s.Log.Info("deleted the NATS pod", "pod", natsNamespace+"/"+natsPod, "uid", old.UID)
	if err := s.waitNATSReady(ctx, old.UID); err != nil {
		return err
	}
	return s.natsForward.Restart(ctx)
}

// StartNATS waits until the NATS pod is ready and the port-forward runs,
// after a failed restart.
func (s *Suite) StartNATS() error {
	ctx, cancel := CleanupContext(kindWaitTimeout)
	defer cancel()
	if err := s.waitNATSReady(ctx, ""); err != nil {
		return err
	}
	return s.natsForward.WaitForwarding(ctx)
}

// waitNATSReady waits until the NATS pod, other than the one of UID
// notUID, is ready.
func (s *Suite) waitNATSReady(ctx context.Context, notUID types.UID) error {
	var last string
	err := wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, kindWaitTimeout, true, func(ctx context.Context) (bool, error) {
		p, err := s.Clientset.CoreV1().Pods(natsNamespace).Get(ctx, natsPod, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			last = "no pod"
			return false, nil
		case err != nil:
			return false, err
		}
		ready := slices.ContainsFunc(p.Status.Conditions, func(c corev1.PodCondition) bool {
			return c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue
		})
		last = fmt.Sprintf("pod %s, phase %s, ready %t", p.UID, p.Status.Phase, ready)
		return p.UID != notUID && p.DeletionTimestamp == nil && ready, nil
	})
	if err != nil {
		return fmt.Errorf("waiting for pod %s/%s to be ready (%s): %w", natsNamespace, natsPod, last, err)
	}
	return nil
}

// DrainableNodes are the kind worker nodes that may be drained: not the
// control plane, which runs no workers, and not the node of the NATS pod,
// whose store is a local-path volume on that node: drained, NATS could
// not start anywhere else.
func (s *Suite) DrainableNodes(ctx context.Context) ([]string, error) {
	nats, err := s.Clientset.CoreV1().Pods(natsNamespace).Get(ctx, natsPod, metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	nodes, err := s.Clientset.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	var out []string
	for _, n := range nodes.Items {
		if _, cp := n.Labels[labelControlPlane]; cp || n.Spec.Unschedulable || n.Name == nats.Spec.NodeName {
			continue
		}
		out = append(out, n.Name)
	}
	slices.Sort(out)
	return out, nil
}

// containerStatus returns the status of the pod's container of that name,
// nil when the pod reports none.
func containerStatus(p *corev1.Pod, name string) *corev1.ContainerStatus {
	for i := range p.Status.ContainerStatuses {
		if p.Status.ContainerStatuses[i].Name == name {
			return &p.Status.ContainerStatuses[i]
		}
	}
	return nil
}

// SinkHost is where a scenario's sink listens (every interface of this
// machine) and the address the kind nodes' pods call it at: E2E_SINK_HOST,
// by default the gateway of Docker's "kind" network, which is this machine
// as the nodes see it.
func (s *Suite) SinkHost() (listen, advertise string, err error) {
	if h := os.Getenv("E2E_SINK_HOST"); h != "" {
		return "0.0.0.0", h, nil
	}
	out, err := exec.Command("docker", "network", "inspect", "kind", "--format", "{{range .IPAM.Config}}{{.Gateway}} {{end}}").Output()
	if err != nil {
		return "", "", fmt.Errorf("finding this machine's address on the kind network (set E2E_SINK_HOST to skip): %w", err)
	}
	for f := range strings.FieldsSeq(string(out)) {
		if ip := net.ParseIP(f); ip != nil && ip.To4() != nil {
			return "0.0.0.0", f, nil
		}
	}
	return "", "", fmt.Errorf("the kind network has no IPv4 gateway (%q); set E2E_SINK_HOST", out)
}

// CutOffWorker is not available in kind mode: the scenarios that need it
// run in local mode only.
func (s *Suite) CutOffWorker(context.Context, string, string, bool) error {
	return errors.New("cutting a worker off the API server needs the local mode's node agent")
}
