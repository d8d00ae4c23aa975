package nodeagent

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	goruntime "runtime"
	"slices"
	"sync"
	"time"

	"github.com/go-logr/logr"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
)

// Options configure an Agent.
type Options struct {
	// Config is the agent's own client configuration. It must be allowed to
	// manage nodes, leases, pods and pods/status, to delete pods, to request
	// service-account tokens and to read config maps and secrets; the
	// cluster's admin configuration does. Required.
	Config *rest.Config
	// Nodes are the names of the nodes to register. Default: one node,
	// "local-node-1".
	Nodes []string
	// NodeLabels are added to every node.
	NodeLabels map[string]string
	// Images maps container images to local binaries.
	Images ImageMap
	// RunDir receives one folder per pod with its log, token and
	// kubeconfig. Default: a new temporary folder.
	RunDir string
	// Log receives the agent's structured logs. Default: discard.
	Log logr.Logger
	// CPU, Memory and Pods are each node's capacity (and allocatable).
	// Defaults: "8", "16Gi", 110.
	CPU, Memory string
	Pods        int
	// LeaseDuration is the node leases' duration (default 40s);
	// RenewInterval how often they are renewed (default 10s), and
	// StatusInterval how often the Ready condition's heartbeat is refreshed
	// (default 20s).
	LeaseDuration, RenewInterval, StatusInterval time.Duration
	// RestartBackoff is the first delay before restarting an exited process
	// (default 1s); it doubles up to MaxRestartBackoff (default 20s).
	RestartBackoff, MaxRestartBackoff time.Duration
	// TokenExpiration is the lifetime requested for pod tokens (default
	// 1h); tokens are renewed at 80% of their life.
	TokenExpiration time.Duration
	// StopTimeout is how long a process may take to exit after SIGTERM when
	// the agent stops (default 5s).
	StopTimeout time.Duration
	// BaseEnv is the environment every process starts from, before the
	// pod's. Default: PATH, HOME, TMPDIR, GOCOVERDIR and GORACE from the
	// agent's own environment, when set.
	BaseEnv []string
}

// ProcessInfo describes the process that runs a pod's container.
type ProcessInfo struct {
	// UID is the pod's UID.
	UID types.UID
	// Node is the node the pod is bound to.
	Node string
	// PID is the process id, 0 when no process runs (back-off, exited).
	PID int
	// AdminAddr is the loopback address given in ADMIN_ADDR, which the
	// container port named "admin" maps to.
	AdminAddr string
	// RestartCount is how many times the process was restarted.
	RestartCount int32
	// LogPath is the file with the process's output, across restarts.
	LogPath string
	// KubeconfigPath is the kubeconfig handed to the process.
	KubeconfigPath string
	// Dir is the pod's folder in the run folder.
	Dir string
}

// Agent is a running test-only node agent.
type Agent struct {
	opts   Options
	log    logr.Logger
	client kubernetes.Interface
	http   *http.Client

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	factories []informers.SharedInformerFactory

	mu       sync.Mutex
	runners  map[types.UID]*podRunner
	finished map[types.UID]bool
	stopping bool
	stopOnce sync.Once
	unhook   func() bool
}

// AgentVersion is what the nodes report as their kubelet version.
const AgentVersion = "v1.37.2-tenire-nodeagent"

// TestOnlyLabel marks the nodes an agent registers.
const TestOnlyLabel = "nodeagent.tenire.io/test-only"

// Start registers the nodes, starts their heartbeats and starts watching the
// pods bound to them. The agent runs until Stop is called or ctx ends.
func Start(ctx context.Context, opts Options) (*Agent, error) {
	if opts.Config == nil {
		return nil, errors.New("nodeagent: Options.Config is required")
	}
	if len(opts.Nodes) == 0 {
		opts.Nodes = []string{"local-node-1"}
	}
	setDefault(&opts.CPU, "8")
	setDefault(&opts.Memory, "16Gi")
	setDefault(&opts.Pods, 110)
	setDefault(&opts.LeaseDuration, 40*time.Second)
	setDefault(&opts.RenewInterval, 10*time.Second)
	setDefault(&opts.StatusInterval, 20*time.Second)
	setDefault(&opts.RestartBackoff, time.Second)
	setDefault(&opts.MaxRestartBackoff, 20*time.Second)
	setDefault(&opts.TokenExpiration, time.Hour)
	setDefault(&opts.StopTimeout, 5*time.Second)
	if opts.BaseEnv == nil {
		for _, k := range []string{"PATH", "HOME", "TMPDIR", "GOCOVERDIR", "GORACE"} {
			if v, ok := os.LookupEnv(k); ok {
				opts.BaseEnv = append(opts.BaseEnv, k+"="+v)
			}
		}
	}
	for _, q := range []string{opts.CPU, opts.Memory} {
		if _, err := resource.ParseQuantity(q); err != nil {
			return nil, fmt.Errorf("nodeagent: capacity %q: %w", q, err)
		}
	}
	if opts.RunDir == "" {
		dir, err := os.MkdirTemp("", "nodeagent-")
		if err != nil {
			return nil, fmt.Errorf("nodeagent: creating the run folder: %w", err)
		}
		opts.RunDir = dir
	}
	if err := os.MkdirAll(filepath.Join(opts.RunDir, "pods"), 0o700); err != nil {
		return nil, fmt.Errorf("nodeagent: creating the run folder: %w", err)
	}
	httpClient, err := rest.HTTPClientFor(opts.Config)
	if err != nil {
		return nil, fmt.Errorf("nodeagent: an HTTP client: %w", err)
	}
	cs, err := kubernetes.NewForConfigAndClient(opts.Config, httpClient)
	if err != nil {
		return nil, fmt.Errorf("nodeagent: a client: %w", err)
	}
	a := &Agent{
		opts: opts, log: opts.Log.WithName("nodeagent"), client: cs, http: httpClient,
		runners: map[types.UID]*podRunner{}, finished: map[types.UID]bool{},
	}
	a.ctx, a.cancel = context.WithCancel(context.WithoutCancel(ctx))
	a.unhook = context.AfterFunc(ctx, a.Stop)

	for _, node := range opts.Nodes {
		if err := a.registerNode(ctx, node); err != nil {
			a.Stop()
			return nil, err
		}
	}
	for _, node := range opts.Nodes {
		a.wg.Go(func() { a.heartbeat(node) })
	}
	for _, node := range opts.Nodes {
		f := informers.NewSharedInformerFactoryWithOptions(cs, 0, informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = "spec.nodeName=" + node
		}))
		inf := f.Core().V1().Pods().Informer()
		if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc:    func(obj any) { a.onPod(obj) },
			UpdateFunc: func(_, obj any) { a.onPod(obj) },
			DeleteFunc: func(obj any) { a.onPodDeleted(obj) },
		}); err != nil {
			a.Stop()
			return nil, fmt.Errorf("nodeagent: watching pods: %w", err)
		}
		a.factories = append(a.factories, f)
		f.Start(a.ctx.Done())
	}
	for _, f := range a.factories {
		for typ, ok := range f.WaitForCacheSync(ctx.Done()) {
			if !ok {
				a.Stop()
				return nil, fmt.Errorf("nodeagent: the %v informer did not sync: %w", typ, context.Cause(ctx))
			}
		}
	}
	a.log.Info("node agent started (TEST ONLY: pods run as local processes)", "nodes", opts.Nodes, "images", opts.Images.String(), "runDir", opts.RunDir)
	return a, nil
}

func setDefault[T comparable](v *T, def T) {
	var zero T
	if *v == zero {
		*v = def
	}
}

// Nodes returns the names of the agent's nodes.
func (a *Agent) Nodes() []string { return slices.Clone(a.opts.Nodes) }

// RunDir returns the agent's run folder.
func (a *Agent) RunDir() string { return a.opts.RunDir }

// Stop stops the agent: every process gets SIGTERM, then SIGKILL after the
// stop timeout; heartbeats and watches end. Pods and nodes are left in the
// API as they are, as when a kubelet dies. It is idempotent.
func (a *Agent) Stop() {
	a.stopOnce.Do(func() {
		a.unhook()
		a.mu.Lock()
		a.stopping = true
		a.mu.Unlock()
		a.cancel()
		for _, f := range a.factories {
			f.Shutdown()
		}
		a.wg.Wait()
		a.http.CloseIdleConnections()
		a.log.Info("node agent stopped")
	})
}

// Process returns what runs the pod namespace/name, if the agent runs it.
func (a *Agent) Process(namespace, name string) (ProcessInfo, bool) {
	r := a.runner(namespace, name)
	if r == nil {
		return ProcessInfo{}, false
	}
	return r.info(), true
}

// Kill sends SIGKILL to the process group of the pod's container, as the
// kernel's OOM killer or `kill -9` would. The agent then handles the exit
// like any other (restart per the restart policy).
func (a *Agent) Kill(namespace, name string) error {
	r := a.runner(namespace, name)
	if r == nil {
		return fmt.Errorf("nodeagent: no pod %s/%s runs on this agent", namespace, name)
	}
	return r.kill()
}

// CutOff cuts the pod namespace/name off the API server (cut true): its
// connections through its kubeconfig close and new ones are refused, as in
// a network partition between its node and the control plane; the agent
// itself still reaches the API server, as a kubelet on the far side of a
// partition of the pod's network would not — use it for what the worker
// does, not for node failures. CutOff(…, false) restores the road.
func (a *Agent) CutOff(namespace, name string, cut bool) error {
	r := a.runner(namespace, name)
	if r == nil {
		return fmt.Errorf("nodeagent: no pod %s/%s runs on this agent", namespace, name)
	}
	r.mu.Lock()
	proxy := r.apiProxy
	r.mu.Unlock()
	if proxy == nil {
		return fmt.Errorf("nodeagent: pod %s/%s has no API credentials to cut", namespace, name)
	}
	proxy.setCut(cut)
	return nil
}

func (a *Agent) runner(namespace, name string) *podRunner {
	a.mu.Lock()
	defer a.mu.Unlock()
	var found *podRunner
	for _, r := range a.runners {
		if r.namespace == namespace && r.name == name && (found == nil || r.created.After(found.created)) {
			found = r
		}
	}
	return found
}

func (a *Agent) onPod(obj any) {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.stopping || a.finished[pod.UID] {
		return
	}
	r := a.runners[pod.UID]
	if r == nil {
		r = newPodRunner(a, pod)
		a.runners[pod.UID] = r
		// The runner reads its pod as soon as it starts: give it first.
		r.update(pod)
		a.wg.Go(func() {
			r.run(a.ctx)
			a.mu.Lock()
			delete(a.runners, r.uid)
			a.finished[r.uid] = true
			a.mu.Unlock()
		})
	}
	r.update(pod)
}

func (a *Agent) onPodDeleted(obj any) {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	a.mu.Lock()
	r := a.runners[pod.UID]
	a.mu.Unlock()
	if r != nil {
		r.goneFromAPI()
	}
}

// registerNode creates the node (or takes over an existing one with that
// name) and reports it Ready.
func (a *Agent) registerNode(ctx context.Context, name string) error {
	labels := map[string]string{
		"kubernetes.io/hostname": name,
		"kubernetes.io/os":       "linux",
		"kubernetes.io/arch":     goruntime.GOARCH,
		TestOnlyLabel:            "true",
	}
	for k, v := range a.opts.NodeLabels {
		labels[k] = v
	}
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}
	created, err := a.client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
	switch {
	case apierrors.IsAlreadyExists(err):
		a.log.Info("taking over an existing node", "node", name)
	case err != nil:
		return fmt.Errorf("nodeagent: registering node %s: %w", name, err)
	default:
		a.log.Info("registered node", "node", name, "uid", created.UID)
	}
	now := metav1.Now()
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		n, err := a.client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		qty := resource.MustParse
		res := corev1.ResourceList{
			corev1.ResourceCPU:    qty(a.opts.CPU),
			corev1.ResourceMemory: qty(a.opts.Memory),
			corev1.ResourcePods:   *resource.NewQuantity(int64(a.opts.Pods), resource.DecimalSI),
		}
		n.Status.Capacity = res
		n.Status.Allocatable = res
		n.Status.Addresses = []corev1.NodeAddress{
			{Type: corev1.NodeInternalIP, Address: "127.0.0.1"},
			{Type: corev1.NodeHostName, Address: name},
		}
		n.Status.NodeInfo = corev1.NodeSystemInfo{
			MachineID: name, SystemUUID: string(n.UID), BootID: string(n.UID),
			KernelVersion: "local", OSImage: "tenire test-only node agent",
			ContainerRuntimeVersion: "nodeagent://local-process",
			KubeletVersion:          AgentVersion,
			OperatingSystem:         "linux",
			Architecture:            goruntime.GOARCH,
		}
		n.Status.Conditions = nodeConditions(now, now)
		_, err = a.client.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		return fmt.Errorf("nodeagent: reporting node %s ready: %w", name, err)
	}
	if err := a.renewLease(ctx, name); err != nil {
		return err
	}
	return nil
}

func nodeConditions(transition, heartbeat metav1.Time) []corev1.NodeCondition {
	cond := func(t corev1.NodeConditionType, s corev1.ConditionStatus, reason, msg string) corev1.NodeCondition {
		return corev1.NodeCondition{Type: t, Status: s, Reason: reason, Message: msg, LastHeartbeatTime: heartbeat, LastTransitionTime: transition}
	}
	return []corev1.NodeCondition{
		cond(corev1.NodeMemoryPressure, corev1.ConditionFalse, "KubeletHasSufficientMemory", "test-only node agent"),
		cond(corev1.NodeDiskPressure, corev1.ConditionFalse, "KubeletHasNoDiskPressure", "test-only node agent"),
		cond(corev1.NodePIDPressure, corev1.ConditionFalse, "KubeletHasSufficientPID", "test-only node agent"),
		cond(corev1.NodeReady, corev1.ConditionTrue, "KubeletReady", "test-only node agent is posting ready status"),
	}
}

// heartbeat renews the node's lease and refreshes its conditions until the
// agent stops.
func (a *Agent) heartbeat(node string) {
	renew := time.NewTicker(a.opts.RenewInterval)
	defer renew.Stop()
	status := time.NewTicker(a.opts.StatusInterval)
	defer status.Stop()
	for {
		select {
		case <-a.ctx.Done():
			return
		case <-renew.C:
			if err := a.renewLease(a.ctx, node); err != nil && a.ctx.Err() == nil {
				a.log.Error(err, "renewing the node lease", "node", node)
			}
		case <-status.C:
			if err := a.refreshNodeStatus(a.ctx, node); err != nil && a.ctx.Err() == nil {
				a.log.Error(err, "refreshing the node status", "node", node)
			}
		}
	}
}

func (a *Agent) refreshNodeStatus(ctx context.Context, name string) error {
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		n, err := a.client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		now := metav1.Now()
		want := nodeConditions(now, now)
		for i := range want {
			for _, have := range n.Status.Conditions {
				if have.Type == want[i].Type && have.Status == want[i].Status {
					want[i].LastTransitionTime = have.LastTransitionTime
				}
			}
		}
		// Keep conditions that others (e.g. a test) set.
		for _, have := range n.Status.Conditions {
			if !slices.ContainsFunc(want, func(c corev1.NodeCondition) bool { return c.Type == have.Type }) {
				want = append(want, have)
			}
		}
		n.Status.Conditions = want
		_, err = a.client.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{})
		return err
	})
}

func (a *Agent) renewLease(ctx context.Context, node string) error {
	leases := a.client.CoordinationV1().Leases(corev1.NamespaceNodeLease)
	now := metav1.NewMicroTime(time.Now())
	l, err := leases.Get(ctx, node, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		n, err := a.client.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
		if err != nil {
			return fmt.Errorf("nodeagent: getting node %s for its lease: %w", node, err)
		}
		l = &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Name: node, Namespace: corev1.NamespaceNodeLease,
				OwnerReferences: []metav1.OwnerReference{{APIVersion: "v1", Kind: "Node", Name: node, UID: n.UID}}},
			Spec: coordinationv1.LeaseSpec{
				HolderIdentity:       ptr.To(node),
				LeaseDurationSeconds: ptr.To(int32(a.opts.LeaseDuration / time.Second)),
				RenewTime:            &now,
			},
		}
		if _, err := leases.Create(ctx, l, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("nodeagent: creating the lease of node %s: %w", node, err)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("nodeagent: getting the lease of node %s: %w", node, err)
	}
	l.Spec.HolderIdentity = ptr.To(node)
	l.Spec.LeaseDurationSeconds = ptr.To(int32(a.opts.LeaseDuration / time.Second))
	l.Spec.RenewTime = &now
	if _, err := leases.Update(ctx, l, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("nodeagent: renewing the lease of node %s: %w", node, err)
	}
	return nil
}

// WaitReady waits until every node of the agent is Ready and carries none of
// the node.kubernetes.io/not-ready or unreachable taints (admission puts the
// not-ready taint on new nodes; the node lifecycle controller removes it a
// few seconds after it sees them ready). Pods can be scheduled from then on.
func (a *Agent) WaitReady(ctx context.Context) error {
	start := time.Now()
	lastLog := start
	for {
		pending, err := a.unreadyNodes(ctx)
		if err == nil && len(pending) == 0 {
			a.log.Info("nodes are ready and schedulable", "nodes", a.opts.Nodes, "after", time.Since(start).Round(time.Millisecond).String())
			return nil
		}
		if time.Since(lastLog) >= 5*time.Second {
			lastLog = time.Now()
			a.log.Info("waiting for the nodes to be schedulable", "pending", pending, "err", fmt.Sprint(err))
		}
		t := time.NewTimer(200 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("nodeagent: nodes %v not schedulable (is kube-controller-manager running?): %w", pending, ctx.Err())
		case <-t.C:
		}
	}
}

func (a *Agent) unreadyNodes(ctx context.Context) ([]string, error) {
	var pending []string
	for _, name := range a.opts.Nodes {
		n, err := a.client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return a.opts.Nodes, err
		}
		ready := false
		for _, c := range n.Status.Conditions {
			if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
				ready = true
			}
		}
		for _, t := range n.Spec.Taints {
			if t.Key == corev1.TaintNodeNotReady || t.Key == corev1.TaintNodeUnreachable {
				ready = false
			}
		}
		if !ready {
			pending = append(pending, name)
		}
	}
	return pending, nil
}
