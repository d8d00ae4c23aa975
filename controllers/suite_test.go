package controllers

import (
	"context"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr/funcr"
	"github.com/onsi/gomega"
	"go.uber.org/goleak"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/yaml"

	loopsv1alpha1 "github.com/tenire/loop-operator/api/v1alpha1"
	"github.com/tenire/loop-operator/api/v1alpha1/contract"
	"github.com/tenire/loop-operator/controllers/stream"
	"github.com/tenire/loop-operator/internal/testenv"
)

// cfg is the REST config of the real API server all envtest tests share;
// each test works in a namespace of its own with a manager of its own.
var cfg *rest.Config

func TestMain(m *testing.M) {
	logs := io.Discard
	if os.Getenv("TEST_LOG") != "" {
		logs = os.Stderr
	}
	ctrl.SetLogger(zap.New(zap.WriteTo(logs), zap.UseDevMode(true)))

	env, err := testenv.New()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if cfg, err = env.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "starting the control plane:", err)
		os.Exit(1)
	}
	code := m.Run()
	if err := env.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, "stopping the control plane:", err)
		code = 1
	}
	if code == 0 {
		// No goroutine may outlive the managers, watches and control plane
		// the tests started. One of controller-runtime's own is ignored: a
		// multi-namespace cache (a manager given --namespaces) starts a
		// goroutine per event handler that waits, with no way to stop it,
		// until the handler has synced in every namespace; a manager
		// stopped before that (its test over first) leaves it waiting
		// for good (controller-runtime v0.25.2, multi_namespace_cache.go).
		if err := goleak.Find(goleak.IgnoreTopFunction(
			"sigs.k8s.io/controller-runtime/pkg/cache.newMultiNamespaceInformerHandlerRegistration.func1")); err != nil {
			fmt.Fprintln(os.Stderr, "goroutines leaked:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// harness is one test's namespace, its operator and a fake node that plays
// the kubelet and the worker's half of the drain contract.
type harness struct {
	t   *testing.T
	cfg *rest.Config
	g   gomega.Gomega
	c   client.WithWatch
	ns  string
	ctx context.Context

	mu       sync.Mutex
	stopMgr  func()
	silent   map[string]bool // pods that do not report Drained
	allQuiet bool            // no pod reports Drained
	notReady map[string]bool // pods kept not ready
	holdImg  string          // pods whose first container runs this image are kept not ready
	holdTerm bool            // terminating pods are not finished off
	lag      time.Duration   // the operator's cache hides changes younger than this
	kick     chan struct{}
	// pollQueues, when set before the operator starts, makes it provision
	// and poll the queues at this interval.
	pollQueues time.Duration
	// queues is the operator's poller when pollQueues is set.
	queues *stream.Poller
	// loopSelector, when set before the operator starts, is its
	// --loop-selector.
	loopSelector labels.Selector
	// operatorCfg, when set before the operator starts, is the identity
	// the operator runs as; the harness's own client stays cfg's.
	operatorCfg *rest.Config
}

const testNode = "node-a"

func newHarness(t *testing.T) *harness {
	t.Helper()
	return newHarnessOn(t, cfg)
}

// newHarnessOn is newHarness against the API server of restCfg.
func newHarnessOn(t *testing.T, restCfg *rest.Config, opts ...func(*harness)) *harness {
	t.Helper()
	c, err := client.NewWithWatch(restCfg, client.Options{Scheme: testenv.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "ld-"}}
	if err := c.Create(t.Context(), ns); err != nil {
		t.Fatal(err)
	}
	h := &harness{
		t: t, cfg: restCfg, g: gomega.NewWithT(t), c: c, ns: ns.Name, ctx: t.Context(),
		silent: map[string]bool{}, notReady: map[string]bool{}, kick: make(chan struct{}, 1),
	}
	h.g.SetDefaultEventuallyTimeout(30 * time.Second)
	h.g.SetDefaultEventuallyPollingInterval(50 * time.Millisecond)
	for _, o := range opts {
		o(h)
	}
	h.runNode()
	h.startOperator()
	t.Cleanup(h.stopOperator)
	return h
}

// startOperator starts a manager that runs the reconciler in h's namespace.
func (h *harness) startOperator() {
	h.t.Helper()
	restCfg := h.cfg
	if h.operatorCfg != nil {
		restCfg = h.operatorCfg
	}
	mgr, err := ctrl.NewManager(restCfg, ctrl.Options{
		Scheme:                 testenv.Scheme,
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Cache:                  ShardCacheOptions([]string{h.ns}, h.loopSelector), // as the manager's with --watch-namespaces
		Controller:             config.Controller{SkipNameValidation: ptr.To(true)},
	})
	if err != nil {
		h.t.Fatal(err)
	}
	r := &LoopDeploymentReconciler{DrainGrace: time.Second}
	if h.lag > 0 {
		r.Client = laggingClient{Client: mgr.GetClient(), lag: h.lag}
	}
	if h.pollQueues > 0 {
		h.queues = &stream.Poller{Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), Interval: h.pollQueues,
			Log: funcr.New(func(prefix, args string) { h.t.Log(prefix, args) }, funcr.Options{})}
		r.Queues = h.queues
	}
	if err := r.SetupWithManager(mgr, controller.Options{MaxConcurrentReconciles: 4}); err != nil { // as cmd/manager
		h.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.WithoutCancel(h.ctx))
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	h.mu.Lock()
	h.stopMgr = func() {
		cancel()
		if err := <-done; err != nil {
			h.t.Errorf("manager: %v", err)
		}
	}
	h.mu.Unlock()
}

// stopOperator stops the manager and waits until it has stopped.
func (h *harness) stopOperator() {
	h.mu.Lock()
	stop := h.stopMgr
	h.stopMgr = nil
	h.mu.Unlock()
	if stop != nil {
		stop()
	}
}

// setSilent makes pod (or every pod, for "") stop or resume reporting
// Drained.
func (h *harness) setSilent(pod string, silent bool) {
	h.mu.Lock()
	if pod == "" {
		h.allQuiet = silent
	} else {
		h.silent[pod] = silent
	}
	h.mu.Unlock()
	h.resync()
}

// setNotReady keeps pod's Ready condition False (or lets it be True).
func (h *harness) setNotReady(pod string, notReady bool) {
	h.mu.Lock()
	h.notReady[pod] = notReady
	h.mu.Unlock()
	h.resync()
}

// holdImage keeps pods that run image not ready ("" lets them be ready).
func (h *harness) holdImage(image string) {
	h.mu.Lock()
	h.holdImg = image
	h.mu.Unlock()
	h.resync()
}

// holdTerminating keeps terminating pods (as a kubelet whose workers take
// their time to drain on SIGTERM), or finishes them off again.
func (h *harness) holdTerminating(hold bool) {
	h.mu.Lock()
	h.holdTerm = hold
	h.mu.Unlock()
	h.resync()
}

func (h *harness) resync() {
	select {
	case h.kick <- struct{}{}:
	default:
	}
}

// runNode plays the kubelet and the worker for every pod of the namespace
// until the test ends: it binds new pods to a node, reports them Running
// and Ready, reports Drained once asked to drain (unless silent), and
// finishes the deletion of terminating pods, as a kubelet would once the
// containers stopped.
func (h *harness) runNode() {
	var wg sync.WaitGroup
	wg.Add(1)
	h.t.Cleanup(wg.Wait)
	go func() {
		defer wg.Done()
		for h.ctx.Err() == nil {
			h.watchPods(func(p *corev1.Pod) { h.actOn(p) })
		}
	}()
}

// watchPods lists the namespace's pods, calls f for each, then calls f for
// every change until the watch ends or the test's context is done; a kick
// lists again.
func (h *harness) watchPods(f func(*corev1.Pod)) {
	list := &corev1.PodList{}
	if err := h.c.List(h.ctx, list, client.InNamespace(h.ns)); err != nil {
		return
	}
	for i := range list.Items {
		f(&list.Items[i])
	}
	w, err := h.c.Watch(h.ctx, &corev1.PodList{}, client.InNamespace(h.ns), &client.ListOptions{Raw: &metav1.ListOptions{ResourceVersion: list.ResourceVersion}})
	if err != nil {
		return
	}
	defer w.Stop()
	for {
		select {
		case <-h.ctx.Done():
			return
		case <-h.kick:
			return // list again
		case ev, ok := <-w.ResultChan():
			if !ok {
				return
			}
			if p, isPod := ev.Object.(*corev1.Pod); isPod && ev.Type != watch.Deleted && ev.Type != watch.Error {
				f(p)
			}
		}
	}
}

func (h *harness) actOn(p *corev1.Pod) {
	ctx := h.ctx
	if p.DeletionTimestamp != nil {
		h.mu.Lock()
		hold := h.holdTerm
		h.mu.Unlock()
		if !hold {
			_ = h.c.Delete(ctx, p, client.GracePeriodSeconds(0))
		}
		return
	}
	if p.Spec.NodeName == "" {
		b := &corev1.Binding{ObjectMeta: metav1.ObjectMeta{Name: p.Name, Namespace: p.Namespace}, Target: corev1.ObjectReference{Kind: "Node", Name: testNode}}
		if err := h.c.SubResource("binding").Create(ctx, p, b); err != nil && !apierrors.IsConflict(err) && ctx.Err() == nil {
			h.t.Logf("binding %s: %v", p.Name, err)
		}
		return // the binding is an update event of its own
	}
	if p.Status.Phase == corev1.PodFailed || p.Status.Phase == corev1.PodSucceeded {
		return
	}
	h.mu.Lock()
	quiet := h.allQuiet || h.silent[p.Name]
	notReady := h.notReady[p.Name] || (h.holdImg != "" && p.Spec.Containers[0].Image == h.holdImg)
	h.mu.Unlock()

	_, asked := p.Annotations[contract.AnnotationDrainRequested]
	ready := corev1.ConditionTrue
	if notReady || asked {
		ready = corev1.ConditionFalse
	}
	want := p.DeepCopy()
	want.Status.Phase = corev1.PodRunning
	setPodCondition(want, corev1.PodScheduled, corev1.ConditionTrue, "")
	setPodCondition(want, corev1.PodReady, ready, "")
	if asked && !quiet {
		setPodCondition(want, contract.PodConditionDrained, corev1.ConditionTrue, contract.DrainedReasonCompleted)
	}
	if equalStatus(p, want) {
		return
	}
	if err := h.c.Status().Update(ctx, want); err != nil && !apierrors.IsConflict(err) && !apierrors.IsNotFound(err) && ctx.Err() == nil {
		h.t.Logf("updating the status of %s: %v", p.Name, err)
	}
}

func setPodCondition(p *corev1.Pod, t corev1.PodConditionType, s corev1.ConditionStatus, reason string) {
	for i := range p.Status.Conditions {
		if c := &p.Status.Conditions[i]; c.Type == t {
			if c.Status != s {
				c.Status, c.Reason, c.LastTransitionTime = s, reason, metav1.Now()
			}
			return
		}
	}
	c := corev1.PodCondition{Type: t, Status: s, Reason: reason, LastTransitionTime: metav1.Now()}
	if t == contract.PodConditionDrained {
		c.Message = "finished 0 tasks, handed back 0"
	}
	p.Status.Conditions = append(p.Status.Conditions, c)
}

func equalStatus(a, b *corev1.Pod) bool {
	if a.Status.Phase != b.Status.Phase || len(a.Status.Conditions) != len(b.Status.Conditions) {
		return false
	}
	for i := range a.Status.Conditions {
		if a.Status.Conditions[i].Type != b.Status.Conditions[i].Type || a.Status.Conditions[i].Status != b.Status.Conditions[i].Status {
			return false
		}
	}
	return true
}

// watcher records, at every change of the namespace's pods, the number of
// pods that exist and carry a drain request, and the number of pods that
// serve (exist, not terminating, not asked to drain).
type watcher struct {
	mu                      sync.Mutex
	maxDraining, maxServing int
	asked                   map[string]bool // every pod seen with a drain request
}

func (h *harness) watch() *watcher {
	w := &watcher{asked: map[string]bool{}}
	draining := map[string]bool{}
	serving := map[string]bool{}
	list := &corev1.PodList{}
	if err := h.c.List(h.ctx, list, client.InNamespace(h.ns)); err != nil {
		h.t.Fatal(err)
	}
	wi, err := h.c.Watch(h.ctx, &corev1.PodList{}, client.InNamespace(h.ns), &client.ListOptions{Raw: &metav1.ListOptions{ResourceVersion: list.ResourceVersion}})
	if err != nil {
		h.t.Fatal(err)
	}
	record := func(p *corev1.Pod, deleted bool) {
		_, asked := p.Annotations[contract.AnnotationDrainRequested]
		draining[p.Name] = !deleted && asked
		serving[p.Name] = !deleted && !asked && p.DeletionTimestamp == nil
		w.mu.Lock()
		defer w.mu.Unlock()
		if asked {
			w.asked[p.Name] = true
		}
		w.maxDraining = max(w.maxDraining, countTrue(draining))
		w.maxServing = max(w.maxServing, countTrue(serving))
	}
	for i := range list.Items {
		record(&list.Items[i], false)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	h.t.Cleanup(func() { wi.Stop(); wg.Wait() })
	go func() {
		defer wg.Done()
		for ev := range wi.ResultChan() {
			if p, ok := ev.Object.(*corev1.Pod); ok {
				record(p, ev.Type == watch.Deleted)
			}
		}
	}()
	return w
}

func countTrue(m map[string]bool) int {
	n := 0
	for _, v := range m {
		if v {
			n++
		}
	}
	return n
}

// wasAsked reports whether pod ever carried a drain request.
func (w *watcher) wasAsked(pod string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.asked[pod]
}

// waitRolledOut waits until the loop's Progressing condition says its
// rollout is complete, then checks what w saw: at most maxServing pods
// served and maxDraining drained at once.
func (h *harness) waitRolledOut(name string, w *watcher, maxServing, maxDraining int) {
	h.t.Helper()
	h.g.Eventually(func() string {
		return conditionReason(h.get(name), loopsv1alpha1.ConditionProgressing)
	}).Should(gomega.Equal("False/" + loopsv1alpha1.ReasonComplete))
	draining, serving := w.max()
	if serving > maxServing {
		h.t.Errorf("%d pods served at once, want at most %d (replicas+maxSurge)", serving, maxServing)
	}
	if draining > maxDraining {
		h.t.Errorf("%d pods drained at once, want at most %d (drain.maxConcurrent)", draining, maxDraining)
	}
}

// askedNames returns the pods that ever carried a drain request.
func (w *watcher) askedNames() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Sorted(maps.Keys(w.asked))
}

func (w *watcher) max() (draining, serving int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.maxDraining, w.maxServing
}

// newLD returns a LoopDeployment in h's namespace with a short drain
// timeout and a budget of one drain at a time.
func (h *harness) newLD(name string, replicas int32) *loopsv1alpha1.LoopDeployment {
	return &loopsv1alpha1.LoopDeployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: h.ns, Name: name},
		Spec: loopsv1alpha1.LoopDeploymentSpec{
			Replicas: ptr.To(replicas),
			Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: []corev1.Container{
				{Name: loopsv1alpha1.WorkerContainerName, Image: "ghcr.io/tenire/loop-worker:v1"},
			}}},
			Queue: loopsv1alpha1.QueueSpec{NATS: loopsv1alpha1.NATSQueueSpec{URL: "nats://nats.nats:4222"}},
			Drain: loopsv1alpha1.DrainSpec{
				Timeout:       &metav1.Duration{Duration: 30 * time.Second},
				MaxConcurrent: ptr.To(intstr.FromInt32(1)),
			},
		},
	}
}

func (h *harness) create(obj client.Object) {
	h.t.Helper()
	if err := h.c.Create(h.ctx, obj); err != nil {
		h.t.Fatalf("creating %s: %v", obj.GetName(), err)
	}
}

// update gets the LoopDeployment, changes it with f and updates it,
// retrying on conflicts.
func (h *harness) update(name string, f func(*loopsv1alpha1.LoopDeployment)) {
	h.t.Helper()
	h.g.Eventually(func() error {
		ld := &loopsv1alpha1.LoopDeployment{}
		if err := h.c.Get(h.ctx, client.ObjectKey{Namespace: h.ns, Name: name}, ld); err != nil {
			return err
		}
		f(ld)
		return h.c.Update(h.ctx, ld)
	}).Should(gomega.Succeed())
}

func (h *harness) get(name string) *loopsv1alpha1.LoopDeployment {
	h.t.Helper()
	ld := &loopsv1alpha1.LoopDeployment{}
	if err := h.c.Get(h.ctx, client.ObjectKey{Namespace: h.ns, Name: name}, ld); err != nil {
		h.t.Fatal(err)
	}
	return ld
}

// pods returns the pods of the LoopDeployment name that are not
// terminating, oldest first.
func (h *harness) pods(name string) []corev1.Pod {
	list := &corev1.PodList{}
	if err := h.c.List(h.ctx, list, client.InNamespace(h.ns), client.MatchingLabels{loopsv1alpha1.LabelName: name}); err != nil {
		h.t.Fatal(err)
	}
	var out []corev1.Pod
	for _, p := range list.Items {
		if p.DeletionTimestamp == nil {
			out = append(out, p)
		}
	}
	sortOldestFirst(out)
	return out
}

func sortOldestFirst(pods []corev1.Pod) {
	for i := 1; i < len(pods); i++ {
		for j := i; j > 0 && pods[j].CreationTimestamp.Before(&pods[j-1].CreationTimestamp); j-- {
			pods[j], pods[j-1] = pods[j-1], pods[j]
		}
	}
}

func podNames(pods []corev1.Pod) []string {
	var out []string
	for _, p := range pods {
		out = append(out, p.Name)
	}
	return out
}

// readyPods returns the names of the pods that serve and are Ready.
func (h *harness) readyPods(name string) []string {
	var out []string
	for _, p := range h.pods(name) {
		if _, asked := p.Annotations[contract.AnnotationDrainRequested]; !asked && isReady(&p) {
			out = append(out, p.Name)
		}
	}
	return out
}

// events returns the reasons of the events recorded on the LoopDeployment.
func (h *harness) events(name string) []string {
	list := &eventsv1.EventList{}
	if err := h.c.List(h.ctx, list, client.InNamespace(h.ns)); err != nil {
		h.t.Fatal(err)
	}
	var out []string
	for _, e := range list.Items {
		if e.Regarding.Name == name {
			out = append(out, e.Reason)
		}
	}
	return out
}

// gone reports whether the object no longer exists.
func (h *harness) gone(obj client.Object) func() bool {
	return func() bool {
		err := h.c.Get(h.ctx, client.ObjectKeyFromObject(obj), obj)
		return apierrors.IsNotFound(err)
	}
}

// laggingClient is the operator's cached client made to lag: the pods it
// lists hide, for lag, their creation (they are left out) and a drain
// request (the annotations are left out), as an informer cache that has not
// caught up with the reconciler's own writes would.
type laggingClient struct {
	client.Client
	lag time.Duration
}

func (c laggingClient) List(ctx context.Context, list client.ObjectList, opts ...client.ListOption) error {
	if err := c.Client.List(ctx, list, opts...); err != nil {
		return err
	}
	pods, ok := list.(*corev1.PodList)
	if !ok {
		return nil
	}
	now := time.Now()
	young := func(t time.Time) bool { return now.Sub(t) < c.lag }
	var shown []corev1.Pod
	for _, p := range pods.Items {
		if young(p.CreationTimestamp.Time) {
			continue
		}
		if v, asked := p.Annotations[contract.AnnotationDrainRequested]; asked {
			if at, err := time.Parse(time.RFC3339, v); err == nil && young(at) {
				p.Annotations = maps.Clone(p.Annotations)
				delete(p.Annotations, contract.AnnotationDrainRequested)
				delete(p.Annotations, contract.AnnotationDrainDeadline)
			}
		}
		shown = append(shown, p)
	}
	pods.Items = shown
	return nil
}

// decodeRepoFile strictly decodes the YAML file at the repository path
// parts (as users get it) into obj.
func decodeRepoFile(t *testing.T, obj any, parts ...string) {
	t.Helper()
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(append([]string{root}, parts...)...))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.UnmarshalStrict(raw, obj); err != nil {
		t.Fatalf("decoding %s: %v", filepath.Join(parts...), err)
	}
}
