//go:build e2e && !kind

package e2e

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	loopsv1alpha1 "github.com/tenire/loop-operator/api/v1alpha1"
	"github.com/tenire/loop-operator/internal/benchresult"
	"github.com/tenire/loop-operator/internal/testenv"
)

// TestBenchOperatorMany measures the operator with many loops: L
// LoopDeployments of P pods each beside L Deployments of P pods each (the
// ReplicaSet controller of kube-controller-manager), on kwok nodes, with
// both controllers' clients at kube-controller-manager's rate limits (as
// TestBenchOperatorScale). Each side runs in a namespace of its own, one
// after the other, through four phases:
//
//   - create: the L objects are created with P replicas; until L × P pods
//     are Ready;
//   - steady: nothing changes for a while (TENIRE_BENCH_MANY_STEADY_SECONDS);
//     the status writes then should be about none;
//   - rollout: every object's pod template changes (an annotation); until
//     L × P pods of the new template are Ready and no other pod is left.
//     Both sides roll with a Deployment's default strategy, maxSurge and
//     maxUnavailable 25 %: a LoopDeployment's own default keeps every
//     replica Ready (maxUnavailable unset), which is slower and is not
//     what the Deployments are held to;
//   - zero: every object is scaled to 0 through /scale; until no pod is
//     left.
//
// Each phase but steady also waits until every object's status says what
// its pods show (benchManySettled), and on the LoopDeployment side until
// every pod's worker has announced itself: a phase's writes are then all
// its own, and the steady window starts with nothing left to report.
//
// Each phase counts every client's writes (apiserver_request_total, as
// TestBenchOperatorScale) and, on the LoopDeployment side, measures the
// operator: its resident memory (/proc, sampled), its CPU time, its
// reconciles and their duration (controller_runtime_reconcile_time_seconds
// of the loopdeployment controller, percentiles from the histogram's
// buckets) and its work queue's depth (workqueue_depth, sampled). The operator
// manages the loops' queues; stand-in workers announce each pod idle, as
// idle loop-workers would, so the operator deletes rather than drains.
//
// Sizes: TENIRE_BENCH_MANY_LOOPS (default 20) and TENIRE_BENCH_MANY_PODS
// (default 5); the goal sizes are 1,000 and 10. TENIRE_BENCH_MANY_OUT
// names the JSON file of the result (benchresult.Many). With
// TENIRE_BENCH_MANY_PROFILES naming a directory, the operator serves
// pprof and the rollout of the LoopDeployments writes its CPU profile
// (the rollout's first benchManyCPUProfile) and its heap at the rollout's
// end there, as many-rollout.cpu.prof and many-rollout.heap.prof.
func TestBenchOperatorMany(t *testing.T) {
	loops := benchOpEnvInt(t, "TENIRE_BENCH_MANY_LOOPS", 20)
	pods := benchOpEnvInt(t, "TENIRE_BENCH_MANY_PODS", 5)
	steady := time.Duration(benchOpEnvInt(t, "TENIRE_BENCH_MANY_STEADY_SECONDS", 30)) * time.Second
	qps, burst := env.Cluster.ControllerManagerQPS, env.Cluster.ControllerManagerBurst
	if qps <= 0 || burst <= 0 {
		t.Fatalf("the local cluster reports no kube-controller-manager client limits (qps %g, burst %d)", qps, burst)
	}
	writes := benchOpNewWrites(t)
	port, err := testenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	metricsAddr := fmt.Sprintf("127.0.0.1:%d", port)
	args := []string{"--metrics-bind-address=" + metricsAddr, "--metrics-secure=false"}
	// Uncompressed: gzip would add to the operator's cost of each scrape.
	op := &benchManyOperator{url: "http://" + metricsAddr + "/metrics", http: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableCompression: true}}}
	if op.profiles = os.Getenv("TENIRE_BENCH_MANY_PROFILES"); op.profiles != "" {
		if port, err = testenv.FreePort(); err != nil {
			t.Fatal(err)
		}
		op.pprof = fmt.Sprintf("http://127.0.0.1:%d/debug/pprof/", port)
		args = append(args, fmt.Sprintf("--pprof-bind-address=127.0.0.1:%d", port))
	}
	mgr := benchOpStartManager(t, qps, burst, args...)
	op.pid = mgr.PID()
	benchOpStartKwok(t, loops*pods)

	res := benchresult.Many{Loops: loops, Pods: pods, SteadySeconds: steady.Seconds(), KubeAPIQPS: qps, KubeAPIBurst: burst}
	res.LoopDeployments = benchManySide(t, benchOpSideLD, loops, pods, steady, writes, op)
	res.Deployments = benchManySide(t, benchOpSideDeploy, loops, pods, steady, writes, nil)
	for i, ld := range res.LoopDeployments {
		d := res.Deployments[i]
		t.Logf("%s: LoopDeployments %.2fs, %.2f writes per pod (%d status writes), operator RSS peak %.0f MiB, CPU %.1fs, %d reconciles p50 %.3fs p99 %.3fs, queue depth ≤ %d; Deployments %.2fs, %.2f writes per pod (%d status writes)",
			ld.Name, ld.Seconds, ld.WritesPerPod, ld.StatusWrites, ld.OperatorRSSPeakMiB, ld.OperatorCPUSeconds, ld.Reconciles, ld.ReconcileP50, ld.ReconcileP99, ld.QueueDepthMax,
			d.Seconds, d.WritesPerPod, d.StatusWrites)
	}
	writeBenchResult(t, "TENIRE_BENCH_MANY_OUT", res)
}

// benchManySide runs the four phases on one side in a fresh namespace.
func benchManySide(t *testing.T, side string, loops, pods int, steady time.Duration, writes *benchOpWrites, op *benchManyOperator) []benchresult.ManyPhase {
	t.Helper()
	ctx := t.Context()
	var b [3]byte
	_, _ = rand.Read(b[:])
	ns := fmt.Sprintf("bench-many-%s-%s", strings.ToLower(side[:1]), hex.EncodeToString(b[:]))
	if err := env.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { benchOpDeleteNamespace(t, ns, true) })
	if err := env.Cluster.WaitForServiceAccount(ctx, ns, "default"); err != nil {
		t.Fatal(err)
	}
	queueOf := loopsv1alpha1.QueueSpec{NATS: loopsv1alpha1.NATSQueueSpec{URL: env.NATS.URL()}}
	tr := benchOpTrack(t, ns, &loopsv1alpha1.LoopDeployment{Spec: loopsv1alpha1.LoopDeploymentSpec{Queue: queueOf}}, benchOpAnnounceEveryAtScale)
	tr.mu.Lock()
	tr.rev = "1"
	tr.mu.Unlock()
	n := loops * pods

	objs := make([]client.Object, loops)
	for i := range objs {
		name := fmt.Sprintf("loop-%04d", i)
		if side == benchOpSideLD {
			objs[i] = &loopsv1alpha1.LoopDeployment{
				ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
				Spec: loopsv1alpha1.LoopDeploymentSpec{
					Replicas: ptr.To(int32(pods)), Template: benchOpTemplate(nil, "1"), Queue: queueOf,
					UpdateStrategy: loopsv1alpha1.UpdateStrategy{
						MaxSurge: ptr.To(intstr.FromString("25%")), MaxUnavailable: ptr.To(intstr.FromString("25%")),
					},
				},
			}
			continue
		}
		labels := map[string]string{"app": name}
		objs[i] = &appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
			Spec: appsv1.DeploymentSpec{
				Replicas: ptr.To(int32(pods)), Selector: &metav1.LabelSelector{MatchLabels: labels}, Template: benchOpTemplate(labels, "1"),
			},
		}
	}
	// Every pod of the tracker's rev is Ready, and no other is left.
	ready := func(c benchOpCounts) bool { return c.current[side] == n && c.total[side] == n }
	timeout := 5*time.Minute + time.Duration(n)*time.Second
	var phases []benchresult.ManyPhase

	m := benchManyStart(t, writes, op)
	benchManyEach(t, objs, func(ctx context.Context, obj client.Object) error { return env.Client.Create(ctx, obj) })
	if _, err := tr.waitFor(ctx, timeout, ready); err != nil {
		t.Fatalf("%s create: %v; pods: %s", side, err, tr.describe())
	}
	benchManySettled(t, side, tr, ns, int32(pods), timeout)
	phases = append(phases, m.end("create", n))

	m = benchManyStart(t, writes, op)
	if err := benchManyHold(ctx, steady); err != nil {
		t.Fatal(err)
	}
	phases = append(phases, m.end("steady", n))

	tr.mu.Lock()
	tr.rev = "2"
	tr.mu.Unlock()
	m = benchManyStart(t, writes, op)
	cpu := op.profileCPU(t, "many-rollout.cpu.prof")
	patch := client.RawPatch(types.MergePatchType, fmt.Appendf(nil, `{"spec":{"template":{"metadata":{"annotations":{%q:"2"}}}}}`, benchOpRevAnnotation))
	benchManyEach(t, objs, func(ctx context.Context, obj client.Object) error { return env.Client.Patch(ctx, obj, patch) })
	if _, err := tr.waitFor(ctx, 2*timeout, ready); err != nil {
		t.Fatalf("%s rollout: %v; pods: %s", side, err, tr.describe())
	}
	benchManySettled(t, side, tr, ns, int32(pods), timeout)
	cpu()
	op.profileHeap(t, "many-rollout.heap.prof")
	phases = append(phases, m.end("rollout", n))

	m = benchManyStart(t, writes, op)
	zero := client.RawPatch(types.MergePatchType, []byte(`{"spec":{"replicas":0}}`))
	benchManyEach(t, objs, func(ctx context.Context, obj client.Object) error {
		return env.Client.SubResource("scale").Patch(ctx, obj, zero, client.WithSubResourceBody(&autoscalingv1.Scale{}))
	})
	if _, err := tr.waitFor(ctx, timeout, func(c benchOpCounts) bool { return c.total[side] == 0 }); err != nil {
		t.Fatalf("%s zero: %v; pods: %s", side, err, tr.describe())
	}
	benchManySettled(t, side, nil, ns, 0, timeout)
	phases = append(phases, m.end("zero", n))
	tr.stop()
	tr.check()
	return phases
}

// benchManySettled waits until every object of the side in ns has
// observed its generation and reports replicas Ready and updated (want
// of them, or none left), and, on the LoopDeployment side with tr given,
// until every pod's stand-in worker announced itself (tr.waitAnnounced).
// It lists every 500 ms: reads, which the writes' counts leave out.
func benchManySettled(t *testing.T, side string, tr *benchOpTracker, ns string, want int32, timeout time.Duration) {
	t.Helper()
	ctx := t.Context()
	if side == benchOpSideLD && tr != nil && want > 0 {
		tr.mu.Lock()
		n := tr.counts().total[side]
		tr.mu.Unlock()
		if err := tr.waitAnnounced(ctx, n); err != nil {
			t.Fatalf("the idle workers' announcements: %v", err)
		}
	}
	// counts is one object of the side: its generation, the generation its
	// status observed, and the status's replicas, ready and updated.
	type counts struct {
		name                     string
		gen, observed            int64
		replicas, ready, updated int32
		status                   any
	}
	list := func(ctx context.Context) ([]counts, error) {
		var out []counts
		if side == benchOpSideLD {
			var items loopsv1alpha1.LoopDeploymentList
			err := env.Client.List(ctx, &items, client.InNamespace(ns))
			for _, o := range items.Items {
				st := o.Status
				out = append(out, counts{o.Name, o.Generation, st.ObservedGeneration, st.Replicas, st.ReadyReplicas, st.UpdatedReplicas, st})
			}
			return out, err
		}
		var items appsv1.DeploymentList
		err := env.Client.List(ctx, &items, client.InNamespace(ns))
		for _, o := range items.Items {
			st := o.Status
			out = append(out, counts{o.Name, o.Generation, st.ObservedGeneration, st.Replicas, st.ReadyReplicas, st.UpdatedReplicas, st})
		}
		return out, err
	}
	var left string
	err := wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		all, err := list(ctx)
		if err != nil {
			return false, err
		}
		for _, c := range all {
			if c.observed != c.gen || c.replicas != want || c.ready != want || c.updated != want {
				left = fmt.Sprintf("%s: %+v", c.name, c.status)
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		t.Fatalf("%s: the statuses did not settle at %d replicas: %v; first not settled: %s", side, want, err, left)
	}
}

// benchManyEach applies f to every object, eight at a time, as a user's
// script or a GitOps tool would; the clients' own rate limits pace it.
func benchManyEach(t *testing.T, objs []client.Object, f func(context.Context, client.Object) error) {
	t.Helper()
	sem := make(chan struct{}, 8)
	errs := make([]error, len(objs))
	var wg sync.WaitGroup
	for i, obj := range objs {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			errs[i] = f(t.Context(), obj)
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("%s: %v", objs[i].GetName(), err)
		}
	}
}

// benchManyHold is the steady phase's window: a measurement over a fixed
// time, not a wait for a condition.
func benchManyHold(ctx context.Context, d time.Duration) error {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// benchManyOperator reads the bench manager's process and metrics, and
// its profiles if pprof is set.
type benchManyOperator struct {
	pid      int
	url      string
	http     *http.Client
	pprof    string // base URL of /debug/pprof/, or ""
	profiles string // directory of the profiles
}

// benchManyCPUProfile is how long the CPU profile of a phase lasts, from
// its start: at the goal size the work queue is full from the phase's
// first seconds to its last.
const benchManyCPUProfile = 60 * time.Second

// profileCPU starts recording the operator's CPU profile for
// benchManyCPUProfile into name and returns a function that waits for it.
// On the Deployments' side (o nil) or without pprof it does nothing.
func (o *benchManyOperator) profileCPU(t *testing.T, name string) (wait func()) {
	t.Helper()
	if o == nil || o.pprof == "" {
		return func() {}
	}
	done := make(chan error, 1)
	go func() {
		done <- o.fetchProfile(t.Context(), fmt.Sprintf("profile?seconds=%d", int(benchManyCPUProfile.Seconds())), name, benchManyCPUProfile+time.Minute)
	}()
	return func() {
		if err := <-done; err != nil {
			t.Fatalf("the operator's CPU profile: %v", err)
		}
	}
}

// profileHeap writes the operator's heap profile now into name.
func (o *benchManyOperator) profileHeap(t *testing.T, name string) {
	t.Helper()
	if o == nil || o.pprof == "" {
		return
	}
	if err := o.fetchProfile(t.Context(), "heap", name, time.Minute); err != nil {
		t.Fatalf("the operator's heap profile: %v", err)
	}
}

// fetchProfile gets pprof's path and writes the answer into name in the
// profiles' directory.
func (o *benchManyOperator) fetchProfile(ctx context.Context, path, name string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, o.pprof+path, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s: %s", o.pprof+path, resp.Status, body)
	}
	return os.WriteFile(filepath.Join(o.profiles, name), body, 0o644)
}

// rssMiB is the process's resident memory now.
func (o *benchManyOperator) rssMiB() (float64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", o.pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 64)
			return kb / 1024, err
		}
	}
	return 0, fmt.Errorf("/proc/%d/status has no VmRSS", o.pid)
}

// cpuSeconds is the operator's user and system time so far.
func (o *benchManyOperator) cpuSeconds() (float64, error) { return benchProcCPUSeconds(o.pid) }

// benchProcCPUSeconds is the user and system time so far of process pid.
func benchProcCPUSeconds(pid int) (float64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The fields after the command (in parentheses, which may hold
	// spaces): state is field 3, utime 14 and stime 15.
	_, rest, ok := strings.Cut(string(data), ") ")
	if !ok {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected %q", pid, data)
	}
	f := strings.Fields(rest)
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: too few fields", pid)
	}
	utime, err1 := strconv.ParseFloat(f[11], 64)
	stime, err2 := strconv.ParseFloat(f[12], 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("/proc/%d/stat: %w", pid, err)
	}
	return (utime + stime) / 100, nil // USER_HZ is 100 on Linux
}

// benchManyTestProcess names this test's own process in
// ManyPhase.CPUSecondsByProcess: the pod tracker, the stand-in workers'
// announcements and the status checks.
const benchManyTestProcess = "e2e test"

// benchManyCPU is the CPU time so far of every process of the local
// cluster (the control plane, etcd, kwok, NATS, the operator) and of this
// test, by name. A process that cannot be read (it just ended) is left out.
func benchManyCPU() map[string]float64 {
	pids := env.Cluster.PIDs()
	pids[benchManyTestProcess] = os.Getpid()
	cpu := make(map[string]float64, len(pids))
	for name, pid := range pids {
		if s, err := benchProcCPUSeconds(pid); err == nil {
			cpu[name] = s
		}
	}
	return cpu
}

// reconcileHistogram returns the loopdeployment controller's reconcile
// duration buckets (upper bound → cumulative count) and the work queue's
// depth now.
func (o *benchManyOperator) scrape(ctx context.Context) (buckets map[float64]float64, depth float64, err error) {
	const hist, queue = "controller_runtime_reconcile_time_seconds", "workqueue_depth"
	fams, err := benchScrape(ctx, o.http, o.url, hist, queue)
	if err != nil {
		return nil, 0, err
	}
	isLD := func(m *dto.Metric, label string) bool {
		for _, l := range m.GetLabel() {
			if l.GetName() == label && l.GetValue() == "loopdeployment" {
				return true
			}
		}
		return false
	}
	buckets = map[float64]float64{}
	for _, m := range fams[hist].GetMetric() {
		if !isLD(m, "controller") {
			continue
		}
		// The text format lists the +Inf bucket; the sample count is
		// the same figure.
		for _, b := range m.GetHistogram().GetBucket() {
			if !math.IsInf(b.GetUpperBound(), 1) {
				buckets[b.GetUpperBound()] += float64(b.GetCumulativeCount())
			}
		}
		buckets[math.Inf(1)] += float64(m.GetHistogram().GetSampleCount())
	}
	for _, m := range fams[queue].GetMetric() {
		if isLD(m, "name") {
			depth += m.GetGauge().GetValue()
		}
	}
	// Before the first reconcile the histogram has no series yet: empty
	// buckets; end checks that a phase that reconciled counted some.
	return buckets, depth, nil
}

// benchManyMeasure is one phase being measured.
type benchManyMeasure struct {
	t       *testing.T
	start   time.Time
	writes  *benchOpWrites
	before  map[string]float64
	op      *benchManyOperator
	buckets map[float64]float64
	cpu     float64
	procs   map[string]float64 // benchManyCPU at the start
	stop    chan struct{}
	done    chan struct{}

	mu               sync.Mutex
	rssPeak, rssLast float64
	depthMax         float64
	sampleErr        error
}

func benchManyStart(t *testing.T, writes *benchOpWrites, op *benchManyOperator) *benchManyMeasure {
	t.Helper()
	ctx := t.Context()
	m := &benchManyMeasure{t: t, writes: writes, op: op, stop: make(chan struct{}), done: make(chan struct{})}
	var err error
	if m.before, err = writes.scrape(ctx); err != nil {
		t.Fatalf("counting writes: %v", err)
	}
	m.procs = benchManyCPU()
	if op == nil {
		close(m.done)
		m.start = time.Now()
		return m
	}
	if m.buckets, _, err = op.scrape(ctx); err != nil {
		t.Fatalf("reading the operator's metrics: %v", err)
	}
	if m.cpu, err = op.cpuSeconds(); err != nil {
		t.Fatal(err)
	}
	go m.sample(ctx)
	m.start = time.Now()
	return m
}

// The sampling of the operator: its resident memory (from /proc, which
// costs it nothing) every benchManyRSSEvery, its metrics every
// benchManyScrapeEvery. The metrics page holds a handful of gauges per
// loop, and at 1,000 loops a scrape every 250 ms took a third of the
// operator's CPU (its profile in the rollout): a measurement that large
// changes what it measures. Prometheus itself scrapes every 15–30 s.
const (
	benchManyRSSEvery    = 250 * time.Millisecond
	benchManyScrapeEvery = 2 * time.Second
)

// sample reads the operator's memory and queue depth until stopped.
func (m *benchManyMeasure) sample(ctx context.Context) {
	defer close(m.done)
	tick := time.NewTicker(benchManyRSSEvery)
	defer tick.Stop()
	var scraped time.Time
	for {
		rss, err := m.op.rssMiB()
		var depth float64
		var serr error
		scrape := time.Since(scraped) >= benchManyScrapeEvery
		if scrape {
			scraped = time.Now()
			_, depth, serr = m.op.scrape(ctx)
		}
		m.mu.Lock()
		if err == nil {
			m.rssPeak, m.rssLast = max(m.rssPeak, rss), rss
		}
		if scrape && serr == nil {
			m.depthMax = max(m.depthMax, depth)
		}
		if m.sampleErr == nil {
			m.sampleErr = cmpErr(err, serr)
		}
		m.mu.Unlock()
		select {
		case <-m.stop:
			return
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

func cmpErr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// end finishes the phase; n is the pods divided by.
func (m *benchManyMeasure) end(name string, n int) benchresult.ManyPhase {
	m.t.Helper()
	ctx := m.t.Context()
	took := time.Since(m.start)
	close(m.stop)
	<-m.done
	after, err := m.writes.scrape(ctx)
	if err != nil {
		m.t.Fatalf("counting writes: %v", err)
	}
	p := benchresult.ManyPhase{Name: name, Seconds: benchOpRound3(took.Seconds()), WritesByRequest: map[string]int{}, CPUSecondsByProcess: map[string]float64{}}
	for name, cpu := range benchManyCPU() {
		if before, ok := m.procs[name]; ok {
			p.CPUSecondsByProcess[name] = benchOpRound3(cpu - before)
		}
	}
	for k, v := range after {
		d := int(math.Round(v - m.before[k]))
		if d <= 0 {
			continue
		}
		p.WritesByRequest[k] = d
		p.Writes += d
		if k == "PATCH loopdeployments/status" || k == "PUT loopdeployments/status" || k == "PUT deployments/status" || k == "PUT replicasets/status" {
			p.StatusWrites += d
		}
	}
	p.WritesPerPod = benchOpRound3(float64(p.Writes) / float64(n))
	if m.op != nil {
		if m.sampleErr != nil {
			m.t.Fatalf("sampling the operator: %v", m.sampleErr)
		}
		buckets, _, err := m.op.scrape(ctx)
		if err != nil {
			m.t.Fatalf("reading the operator's metrics: %v", err)
		}
		cpu, err := m.op.cpuSeconds()
		if err != nil {
			m.t.Fatal(err)
		}
		p.OperatorCPUSeconds = benchOpRound3(cpu - m.cpu)
		p.OperatorRSSPeakMiB, p.OperatorRSSEndMiB = math.Round(m.rssPeak), math.Round(m.rssLast)
		p.QueueDepthMax = int(m.depthMax)
		delta := map[float64]float64{}
		for le, c := range buckets {
			delta[le] = c - m.buckets[le]
		}
		p.Reconciles = int(delta[math.Inf(1)])
		if name == "create" && p.Reconciles == 0 {
			m.t.Fatalf("no reconcile of the loopdeployment controller counted while it created every pod: is %s the right page?", m.op.url)
		}
		p.ReconcileP50, p.ReconcileP99 = benchQuantile(delta, 0.5), benchQuantile(delta, 0.99)
	}
	m.t.Logf("%s in %.2fs: %d writes (%.2f per pod, %d status): %s; CPU seconds by process: %v", name, p.Seconds, p.Writes, p.WritesPerPod, p.StatusWrites, benchOpTop(p.WritesByRequest, 8), p.CPUSecondsByProcess)
	return p
}

// benchQuantile is the upper bound of the first bucket of a cumulative
// histogram (upper bound → count) that holds the q-th quantile; 0 when
// it is empty, the largest finite bound for the +Inf bucket.
func benchQuantile(buckets map[float64]float64, q float64) float64 {
	total := buckets[math.Inf(1)]
	if total <= 0 {
		return 0
	}
	bounds := make([]float64, 0, len(buckets))
	for le := range buckets {
		bounds = append(bounds, le)
	}
	sort.Float64s(bounds)
	for i, le := range bounds {
		if buckets[le] >= q*total {
			if math.IsInf(le, 1) && i > 0 {
				return bounds[i-1]
			}
			return le
		}
	}
	return 0
}
