//go:build e2e && !kind

package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	loopsv1alpha1 "github.com/tenire/loop-operator/api/v1alpha1"
	"github.com/tenire/loop-operator/api/v1alpha1/contract"
	"github.com/tenire/loop-operator/controllers"
	"github.com/tenire/loop-operator/internal/benchresult"
	"github.com/tenire/loop-operator/internal/localcluster"
	workerloop "github.com/tenire/loop-operator/worker/loop"
	"github.com/tenire/loop-operator/worker/podwatch"
	"github.com/tenire/loop-operator/worker/queue"
)

// The operator benchmark (part 5 of the benchmarks issue): the time from a
// scale 0→N to N Ready pods on kwok nodes, for a LoopDeployment beside a
// Deployment of the same pod template on the same cluster with the same
// client rate limits, and the API write requests per pod; then N→0, with
// drains for the LoopDeployment, beside scaling the Deployment to 0. Goal:
// the LoopDeployment within 1.1 × the Deployment's time and 1.2 × its
// writes per pod. The goals are reported, not asserted.
//
// Set-up:
//
//   - benchOpNodes kwok nodes (internal/localcluster's StartKwok, managing
//     only nodes with the label benchOpNodeLabel=true) with a taint of the
//     same key: only the bench pods tolerate it, and they select those
//     nodes, so no scenario's pod lands on a kwok node and no bench pod on a
//     node-agent node. kwok's fast stages make a scheduled pod Running and
//     Ready at once and delete a pod being deleted at once.
//   - The suite's manager is stopped and another started with the same
//     flags plus --kube-api-qps and --kube-api-burst equal to
//     kube-controller-manager's (localcluster passes both explicitly), so
//     that the operator's one client has the rate limits each of
//     kube-controller-manager's controllers has. The suite's manager is
//     started again when the test ends.
//
// Each round runs in a fresh namespace with a LoopDeployment and a
// Deployment, both created with 0 replicas and left to settle first (the
// LoopDeployment's worker RBAC and PodDisruptionBudget, the Deployment's
// ReplicaSet are not measured). One side goes up and down, then the other;
// which goes first alternates between rounds, so that only one side's pods
// exist at a time. Each phase:
//
//   - starts with a merge patch of /scale (what kubectl scale sends);
//   - up: ends when N of the side's pods are Ready and not being deleted,
//     as the pods themselves say (Ready condition True), seen through a pod
//     informer. Both controllers' status catching up is timed beside
//     (statusSeconds) and waited for before the writes are counted, so that
//     their status writes are in the count;
//   - down: ends when none of the side's pods is left in the API; the
//     controllers' status is again waited for before counting.
//
// kwok pods run no worker, so nobody would answer a drain: the test runs
// an idle-worker stand-in, a pod informer that, for each LoopDeployment pod
// that carries the drain-requested annotation, reports Drained=True with
// reason Completed through podwatch's ReportDrained, the very patch a
// worker with nothing in flight sends. kwok applies its pod stages as
// strategic merge patches of the status, which merge conditions by type,
// and its "pod-ready" stage only matches Pending pods, so it leaves the
// Drained condition alone; the test checks that too (a pod that loses the
// condition, or is deleted before it reported Drained, fails the test).
// The stand-in reports through the suite's admin client, whose rate limits
// are far above the operator's: real workers each have a client of their
// own.
//
// Writes are the apiserver's own count, apiserver_request_total, scraped
// from its /metrics before and after each phase: the sum over the write
// verbs (POST, PUT, PATCH, APPLY, DELETE, DELETECOLLECTION, and CREATE and
// UPDATE should an apiserver report those). That is every client's
// writes: the operator, kube-controller-manager (ReplicaSet, Deployment,
// disruption and garbage collector controllers), the scheduler's bindings,
// the events, kwok's status patches and deletions, the stand-in's Drained
// reports, and the background of the node agent's node heartbeats. Leases
// are left out (node and component heartbeats, at a rate that depends on
// time, not on the pods). Both sides are counted the same way; the
// samples keep the breakdown by verb and resource, and by status code when
// it is not 2xx: kwok, for one, deletes each pod twice, and the second
// DELETE gets 404 (on both sides alike).
//
// N comes from TENIRE_BENCH_OPERATOR_PODS (default 20), the rounds from
// TENIRE_BENCH_OPERATOR_ROUNDS (default 1); when TENIRE_BENCH_OPERATOR_OUT
// names a file, the result (benchresult.Operator) is written there as
// JSON. With 200 pods and 5 rounds give `go test` a timeout of an hour.

const (
	benchOpPodsEnv   = "TENIRE_BENCH_OPERATOR_PODS"
	benchOpRoundsEnv = "TENIRE_BENCH_OPERATOR_ROUNDS"
	benchOpOutEnv    = "TENIRE_BENCH_OPERATOR_OUT"

	// benchOpNodeLabel labels and taints the kwok nodes.
	benchOpNodeLabel = "bench.tenire.io/kwok"
	benchOpNodes     = 10
	benchOpLD        = "bench-ld"
	benchOpDeploy    = "bench-deploy"
	// benchOpImage is never pulled: kwok runs nothing.
	benchOpImage = "registry.invalid/tenire/bench:kwok"

	benchOpSideLD     = "LoopDeployment"
	benchOpSideDeploy = "Deployment"

	benchOpTimeGoal   = 1.1
	benchOpWritesGoal = 1.2
)

// benchOpManagerArgs are the flags of the suite's manager (Suite.StartManager).
var benchOpManagerArgs = []string{"--leader-elect=false", "--metrics-bind-address=0", "--health-probe-bind-address=0", "--drain-grace=10s"}

// benchOpWriteVerbs are the verbs of apiserver_request_total that write.
var benchOpWriteVerbs = []string{"POST", "PUT", "PATCH", "APPLY", "DELETE", "DELETECOLLECTION", "CREATE", "UPDATE"}

func TestBenchOperatorScale(t *testing.T) {
	n := benchOpEnvInt(t, benchOpPodsEnv, 20)
	rounds := benchOpEnvInt(t, benchOpRoundsEnv, 1)
	qps, burst := env.Cluster.ControllerManagerQPS, env.Cluster.ControllerManagerBurst
	if qps <= 0 || burst <= 0 {
		t.Fatalf("the local cluster reports no kube-controller-manager client limits (qps %g, burst %d)", qps, burst)
	}
	res := benchresult.Operator{
		Pods: n, Rounds: rounds, Nodes: benchOpNodes, KubeAPIQPS: qps, KubeAPIBurst: burst,
		Timing: "from the /scale merge patch to N pods Ready and not being deleted (up) or no pod left (down), as a pod informer sees them; " +
			"statusSeconds to the controller's status saying the same",
		Writes: "apiserver_request_total of verbs " + strings.Join(benchOpWriteVerbs, ",") + ", all clients, leases excluded, " +
			"from before the /scale patch to after the controller's status caught up, divided by N",
	}

	writes := benchOpNewWrites(t)
	benchOpStartManager(t, qps, burst)
	benchOpStartKwok(t, n)

	for r := range rounds {
		res.Samples = append(res.Samples, benchOpRound(t, r, n, writes))
	}
	res.BusyTaskSeconds, res.BusyMaxConcurrent = benchOpBusyTask.Seconds(), int(benchOpBusyConcurrent(n))
	var busyS, busyW []float64
	for _, r := range res.Samples {
		busyS, busyW = append(busyS, r.DownBusy.Seconds), append(busyW, r.DownBusy.WritesPerPod)
	}
	res.DownBusySeconds, res.DownBusyWritesPerPod = benchOpMedian(busyS), benchOpMedian(busyW)
	res.Up = benchOpSummarize(res.Samples, func(r benchresult.OperatorRound) benchresult.OperatorPair { return r.Up })
	res.Down = benchOpSummarize(res.Samples, func(r benchresult.OperatorRound) benchresult.OperatorPair { return r.Down })
	for _, p := range []struct {
		name string
		s    benchresult.OperatorSummary
	}{{"0→N", res.Up}, {"N→0", res.Down}} {
		t.Logf("scale %s of %d pods, median of %d rounds: LoopDeployment %.3fs, Deployment %.3fs, ratio %.2f (goal ≤ %.1f); "+
			"writes per pod: LoopDeployment %.2f, Deployment %.2f, ratio %.2f (goal ≤ %.1f)",
			p.name, n, rounds, p.s.LoopDeploymentSeconds, p.s.DeploymentSeconds, p.s.TimeRatio, p.s.TimeRatioGoal,
			p.s.LoopDeploymentWritesPerPod, p.s.DeploymentWritesPerPod, p.s.WritesRatio, p.s.WritesRatioGoal)
	}
	writeBenchResult(t, benchOpOutEnv, res)
}

func benchOpEnvInt(t *testing.T, name string, def int) int {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		t.Fatalf("%s=%q: want a positive whole number", name, v)
	}
	return n
}

// benchOpStartManager replaces the suite's manager by one with the given
// client limits, and brings the suite's back when the test ends.
func benchOpStartManager(t *testing.T, qps float32, burst int, extra ...string) *localcluster.Process {
	t.Helper()
	if err := env.Manager.Stop(10 * time.Second); err != nil {
		t.Fatalf("stopping the suite's manager: %v", err)
	}
	var p *localcluster.Process
	t.Cleanup(func() {
		if p != nil {
			if err := p.Stop(10 * time.Second); err != nil {
				t.Errorf("stopping the bench manager: %v", err)
			}
		}
		if err := env.StartManager(); err != nil {
			t.Errorf("starting the suite's manager again: %v", err)
		}
	})
	args := append(slices.Clone(benchOpManagerArgs),
		"--kube-api-qps="+strconv.FormatFloat(float64(qps), 'g', -1, 32), "--kube-api-burst="+strconv.Itoa(burst))
	args = append(args, extra...) // later flags win
	var err error
	p, err = env.Cluster.StartProcess("manager-bench", env.Bins["manager"], args, []string{"KUBECONFIG=" + env.Cluster.KubeconfigPath})
	if err != nil {
		t.Fatalf("starting the bench manager: %v", err)
	}
	t.Logf("bench manager started with %v; log %s", args, p.LogPath())
	return p
}

// benchOpStartKwok starts kwok and creates its nodes, with room for n pods
// on each side, and waits until they are Ready and schedulable. Both go
// when the test ends.
func benchOpStartKwok(t *testing.T, n int) {
	t.Helper()
	ctx := t.Context()
	kwok, err := env.Cluster.StartKwok(localcluster.KwokOptions{NodeLabelSelector: benchOpNodeLabel + "=true"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := kwok.Stop(10 * time.Second); err != nil {
			t.Errorf("stopping kwok: %v", err)
		}
	})
	t.Logf("kwok started; log %s", kwok.LogPath())

	perNode := int64(max(110, 2*n/benchOpNodes+1))
	names := make([]string, benchOpNodes)
	for i := range names {
		names[i] = fmt.Sprintf("bench-kwok-%d", i+1)
		capacity := corev1.ResourceList{
			corev1.ResourceCPU:    resource.MustParse("64"),
			corev1.ResourceMemory: resource.MustParse("256Gi"),
			corev1.ResourcePods:   *resource.NewQuantity(perNode, resource.DecimalSI),
		}
		node := &corev1.Node{
			ObjectMeta: metav1.ObjectMeta{
				Name:        names[i],
				Labels:      map[string]string{benchOpNodeLabel: "true", corev1.LabelHostname: names[i], "type": "kwok"},
				Annotations: map[string]string{"kwok.x-k8s.io/node": "fake"},
			},
			Spec:   corev1.NodeSpec{Taints: []corev1.Taint{{Key: benchOpNodeLabel, Value: "true", Effect: corev1.TaintEffectNoSchedule}}},
			Status: corev1.NodeStatus{Capacity: capacity, Allocatable: capacity},
		}
		if err := env.Client.Create(ctx, node); err != nil {
			t.Fatalf("creating node %s: %v", names[i], err)
		}
	}
	t.Cleanup(func() {
		ctx, cancel := CleanupContext(time.Minute)
		defer cancel()
		for _, name := range names {
			err := env.Client.Delete(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}})
			if err != nil && !apierrors.IsNotFound(err) {
				t.Errorf("deleting node %s: %v", name, err)
			}
		}
	})
	start := time.Now()
	eventually(t, 2*time.Minute, fmt.Sprintf("%d kwok nodes Ready and schedulable", benchOpNodes), func() (bool, error) {
		if exited, err := kwok.Exited(); exited {
			t.Fatalf("kwok exited (%v); last lines of its log:\n%s", err, kwok.Tail(30))
		}
		var nodes corev1.NodeList
		if err := env.Client.List(ctx, &nodes, client.MatchingLabels{benchOpNodeLabel: "true"}); err != nil {
			return false, err
		}
		ready := 0
		for _, node := range nodes.Items {
			if benchOpNodeReady(&node) {
				ready++
			}
		}
		return ready == benchOpNodes, fmt.Errorf("%d of %d ready", ready, benchOpNodes)
	})
	t.Logf("%d kwok nodes with room for %d pods each are Ready after %s", benchOpNodes, perNode, time.Since(start).Round(time.Millisecond))
}

func benchOpNodeReady(node *corev1.Node) bool {
	for _, taint := range node.Spec.Taints {
		if taint.Key == corev1.TaintNodeNotReady || taint.Key == corev1.TaintNodeUnreachable {
			return false
		}
	}
	for _, c := range node.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// benchOpSide is one of the two workloads of a round.
type benchOpSide struct {
	name string // benchOpSideLD or benchOpSideDeploy
	obj  client.Object
	// statusSays reports whether the controller's status shows n ready
	// pods (n > 0) or no pod at all (n == 0).
	statusSays func(ctx context.Context, n int32) (bool, error)
}

// benchOpRound runs one round in a namespace of its own.
func benchOpRound(t *testing.T, round, n int, writes *benchOpWrites) benchresult.OperatorRound {
	t.Helper()
	ctx := t.Context()
	var b [3]byte
	_, _ = rand.Read(b[:])
	ns := fmt.Sprintf("bench-op-%d-%s", round, hex.EncodeToString(b[:]))
	if err := env.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		t.Fatal(err)
	}
	deleted := false
	t.Cleanup(func() {
		if !deleted {
			benchOpDeleteNamespace(t, ns, true)
		}
	})
	// Pods are refused until the namespace's default service account
	// exists; the ReplicaSet controller would back off.
	if err := env.Cluster.WaitForServiceAccount(ctx, ns, "default"); err != nil {
		t.Fatal(err)
	}

	ld := &loopsv1alpha1.LoopDeployment{
		ObjectMeta: metav1.ObjectMeta{Name: benchOpLD, Namespace: ns},
		Spec: loopsv1alpha1.LoopDeploymentSpec{
			Replicas: ptr.To[int32](0),
			Template: benchOpTemplate(nil, "1"),
			Queue:    loopsv1alpha1.QueueSpec{NATS: loopsv1alpha1.NATSQueueSpec{URL: env.NATS.URL()}},
			Drain:    loopsv1alpha1.DrainSpec{MaxConcurrent: ptr.To(intstr.FromInt32(benchOpBusyConcurrent(n)))},
		},
	}
	deployLabels := map[string]string{"app": benchOpDeploy}
	deploy := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: benchOpDeploy, Namespace: ns},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](0),
			Selector: &metav1.LabelSelector{MatchLabels: deployLabels},
			Template: benchOpTemplate(deployLabels, "1"),
		},
	}
	for _, obj := range []client.Object{ld, deploy} {
		if err := env.Client.Create(ctx, obj); err != nil {
			t.Fatalf("creating %T %s: %v", obj, obj.GetName(), err)
		}
	}
	tr := benchOpTrack(t, ns, ld, benchOpAnnounceEvery)
	sides := []benchOpSide{
		{name: benchOpSideLD, obj: ld, statusSays: func(ctx context.Context, want int32) (bool, error) {
			var got loopsv1alpha1.LoopDeployment
			if err := env.Client.Get(ctx, client.ObjectKeyFromObject(ld), &got); err != nil {
				return false, err
			}
			st := got.Status
			return st.ObservedGeneration == got.Generation && st.Replicas == want && st.ReadyReplicas == want &&
				st.AvailableReplicas == want && st.DrainingReplicas == 0, nil
		}},
		{name: benchOpSideDeploy, obj: deploy, statusSays: func(ctx context.Context, want int32) (bool, error) {
			var got appsv1.Deployment
			if err := env.Client.Get(ctx, client.ObjectKeyFromObject(deploy), &got); err != nil {
				return false, err
			}
			st := got.Status
			return st.ObservedGeneration == got.Generation && st.Replicas == want && st.ReadyReplicas == want &&
				st.AvailableReplicas == want && st.UpdatedReplicas == want, nil
		}},
	}
	// Both settle at 0 first: the operator's worker RBAC and
	// PodDisruptionBudget, the Deployment's ReplicaSet.
	for _, s := range sides {
		eventually(t, time.Minute, s.name+" reconciled at 0 replicas", func() (bool, error) { return s.statusSays(ctx, 0) })
	}
	eventually(t, time.Minute, "the worker service account", func() (bool, error) {
		err := env.Client.Get(ctx, clientKey(ns, controllers.WorkerServiceAccountName(benchOpLD)), &corev1.ServiceAccount{})
		return err == nil, err
	})

	if round%2 == 1 {
		slices.Reverse(sides)
	}
	rec := benchresult.OperatorRound{Round: round, Namespace: ns, First: sides[0].name}
	for _, s := range sides {
		up := benchOpPhase(t, tr, writes, s, n, int32(n))
		if s.name == benchOpSideLD {
			if err := tr.waitAnnounced(ctx, n); err != nil {
				t.Fatalf("the idle workers' announcements: %v", err)
			}
		}
		down := benchOpPhase(t, tr, writes, s, n, 0)
		if s.name == benchOpSideLD {
			rec.Up.LoopDeployment, rec.Down.LoopDeployment = up, down
		} else {
			rec.Up.Deployment, rec.Down.Deployment = up, down
		}
	}
	// The LoopDeployment once more with busy workers: each holds a task of
	// benchOpBusyTask, so each pod is drained, maxConcurrent at a time.
	for _, s := range sides {
		if s.name != benchOpSideLD {
			continue
		}
		tr.setBusy(benchOpBusyTask)
		benchOpPhase(t, tr, writes, s, n, int32(n))
		if err := tr.waitAnnounced(ctx, n); err != nil {
			t.Fatalf("the busy workers' announcements: %v", err)
		}
		rec.DownBusy = benchOpPhase(t, tr, writes, s, n, 0)
		tr.setBusy(0)
	}
	for _, p := range []*benchresult.OperatorPair{&rec.Up, &rec.Down} {
		p.TimeRatio = benchOpRatio(p.LoopDeployment.Seconds, p.Deployment.Seconds)
		p.WritesRatio = benchOpRatio(p.LoopDeployment.WritesPerPod, p.Deployment.WritesPerPod)
	}
	t.Logf("round %d (%s first): up LD %.3fs/%.2f writes per pod, Deployment %.3fs/%.2f; down LD %.3fs/%.2f, Deployment %.3fs/%.2f; down busy LD %.3fs/%.2f",
		round, rec.First, rec.Up.LoopDeployment.Seconds, rec.Up.LoopDeployment.WritesPerPod, rec.Up.Deployment.Seconds, rec.Up.Deployment.WritesPerPod,
		rec.Down.LoopDeployment.Seconds, rec.Down.LoopDeployment.WritesPerPod, rec.Down.Deployment.Seconds, rec.Down.Deployment.WritesPerPod,
		rec.DownBusy.Seconds, rec.DownBusy.WritesPerPod)

	tr.stop()
	tr.check()
	benchOpDeleteNamespace(t, ns, false)
	deleted = true
	return rec
}

// benchOpPhase scales side s to want and measures it; n is N, the
// divisor of the writes.
func benchOpPhase(t *testing.T, tr *benchOpTracker, writes *benchOpWrites, s benchOpSide, n int, want int32) benchresult.OperatorSample {
	t.Helper()
	ctx := t.Context()
	what := fmt.Sprintf("%s 0→%d: %d pods Ready", s.name, want, want)
	// Generous: a pod a second, on top of a few minutes.
	timeout := 3*time.Minute + time.Duration(n)*time.Second
	cond := func(c benchOpCounts) bool {
		ready, total := c.ready[s.name], c.total[s.name]
		return ready == int(want) && total == int(want)
	}
	if want == 0 {
		what = fmt.Sprintf("%s %d→0: no pod left", s.name, n)
		// The LoopDeployment drains its pods; with maxConcurrent
		// resolved against 0 replicas, one at a time.
		timeout = 3*time.Minute + 2*time.Duration(n)*time.Second
	}

	before, err := writes.scrape(ctx)
	if err != nil {
		t.Fatalf("counting writes before %s: %v", what, err)
	}
	start := time.Now()
	patch := client.RawPatch(types.MergePatchType, fmt.Appendf(nil, `{"spec":{"replicas":%d}}`, want))
	if err := env.Client.SubResource("scale").Patch(ctx, s.obj, patch, client.WithSubResourceBody(&autoscalingv1.Scale{})); err != nil {
		t.Fatalf("scaling the %s to %d: %v", s.name, want, err)
	}
	done, err := tr.waitFor(ctx, timeout, cond)
	if err != nil {
		t.Fatalf("%s: %v; pods: %s; manager log %s", what, err, tr.describe(), env.Cluster.LogPath("manager-bench"))
	}
	var statusAt time.Time
	deadline := time.Now().Add(2 * time.Minute)
	ticker := time.NewTicker(50 * time.Millisecond)
	defer ticker.Stop()
	for {
		ok, err := s.statusSays(ctx, want)
		if ok {
			statusAt = time.Now()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: the pods are there but the status did not say so within 2 minutes (last error: %v)", what, err)
		}
		select {
		case <-ctx.Done():
			t.Fatal(ctx.Err())
		case <-ticker.C:
		}
	}
	after, err := writes.scrape(ctx)
	if err != nil {
		t.Fatalf("counting writes after %s: %v", what, err)
	}
	sample := benchresult.OperatorSample{
		Seconds:         benchOpRound3(done.Sub(start).Seconds()),
		StatusSeconds:   benchOpRound3(statusAt.Sub(start).Seconds()),
		WritesByRequest: map[string]int{},
	}
	for k, v := range after {
		if d := int(math.Round(v - before[k])); d > 0 {
			sample.WritesByRequest[k] = d
			sample.Writes += d
		}
	}
	if sample.Writes < n {
		t.Fatalf("%s: counted %d writes for %d pods; the count is broken: %v", what, sample.Writes, n, sample.WritesByRequest)
	}
	sample.WritesPerPod = benchOpRound3(float64(sample.Writes) / float64(n))
	t.Logf("%s in %.3fs (status %.3fs), %d writes (%.2f per pod): %s", what, sample.Seconds, sample.StatusSeconds,
		sample.Writes, sample.WritesPerPod, benchOpTop(sample.WritesByRequest, 8))
	return sample
}

// benchOpDeleteNamespace deletes ns and waits until it is gone. force,
// for clean-ups after a failure, first takes the finalizer off the
// LoopDeployment, which no manager may be left to release with pods that
// no worker drains.
func benchOpDeleteNamespace(t *testing.T, ns string, force bool) {
	t.Helper()
	ctx, cancel := CleanupContext(3 * time.Minute)
	defer cancel()
	if force {
		var lds loopsv1alpha1.LoopDeploymentList
		if err := env.Client.List(ctx, &lds, client.InNamespace(ns)); err != nil {
			t.Errorf("listing the LoopDeployments of %s: %v", ns, err)
		}
		for i := range lds.Items {
			ld := &lds.Items[i]
			err := env.Client.Patch(ctx, ld, client.RawPatch(types.MergePatchType, []byte(`{"metadata":{"finalizers":null}}`)))
			if err != nil && !apierrors.IsNotFound(err) {
				t.Errorf("taking the finalizer off %s/%s: %v", ns, ld.Name, err)
			}
		}
	}
	obj := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}
	if err := env.Client.Delete(ctx, obj); err != nil && !apierrors.IsNotFound(err) {
		t.Errorf("deleting namespace %s: %v", ns, err)
		return
	}
	ticker := time.NewTicker(200 * time.Millisecond)
	defer ticker.Stop()
	for {
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(obj), obj); apierrors.IsNotFound(err) {
			return
		}
		select {
		case <-ctx.Done():
			t.Errorf("namespace %s was not gone after 3 minutes", ns)
			return
		case <-ticker.C:
		}
	}
}

// benchOpCounts are the pods of each side: all of them, and those Ready
// and not being deleted.
type benchOpCounts struct {
	total, ready map[string]int
	// current counts the ready pods of the tracker's rev, by side.
	current map[string]int
}

// benchOpTracker follows the pods of a round's namespace. It stands in
// for the workers of the LoopDeployment's pods and records what the drain
// contract forbids. Its workers announce what they hold on the loop's
// status subject at an interval, as loop-worker does: nothing
// (idle), or, after setBusy, one task each. Asked to drain, an idle one
// reports Drained at once, a busy one once its task would have finished.
type benchOpTracker struct {
	t    *testing.T
	ns   string
	stop func()
	wg   sync.WaitGroup

	nc        *nats.Conn
	subjectOf func(*corev1.Pod) string // the status subject of a pod's loop
	rev       string                   // the template revision counted as current

	mu         sync.Mutex
	busy       time.Duration // 0: idle; else the task each worker holds
	pods       map[string]*corev1.Pod
	announced  map[string]int // announcements made per pod
	reported   map[string]bool
	drained    map[string]bool
	direct     map[string]bool // pods deleted without a drain request
	violations []string
	errs       []error
	changed    chan struct{} // closed and replaced on every change
}

// benchOpBusyTask is the task each busy stand-in worker holds when it is
// asked to drain.
const benchOpBusyTask = time.Second

// benchOpBusyConcurrent is the LoopDeployment's drain.maxConcurrent: a
// tenth of the pods, so that the busy scale-down drains in ten waves of
// benchOpBusyTask.
func benchOpBusyConcurrent(n int) int32 { return int32(max(n/10, 1)) }

// benchOpAnnounceEvery is how often the stand-in workers of part 5
// announce: a quarter of a real worker's interval, so that a round of a
// few seconds waits little for them.
const benchOpAnnounceEvery = 500 * time.Millisecond

// benchOpAnnounceEveryAtScale is how often they announce in part 8: a real
// worker's interval (loop.Config.AnnounceInterval's default), because
// there the announcements of thousands of pods share the machine with the
// control plane, as real workers on their own nodes would not.
const benchOpAnnounceEveryAtScale = 2 * time.Second

// benchOpTrack follows the pods of ns, whose LoopDeployments all have
// the queue settings of ld (names aside); its stand-in workers announce
// every announceEvery.
func benchOpTrack(t *testing.T, ns string, ld *loopsv1alpha1.LoopDeployment, announceEvery time.Duration) *benchOpTracker {
	t.Helper()
	nc, err := nats.Connect(env.NATSURL())
	if err != nil {
		t.Fatal(err)
	}
	subjectOf := func(p *corev1.Pod) string {
		return queue.NewNames(contract.QueueNames(ns, p.Labels[loopsv1alpha1.LabelName], ld.Spec.Queue.NATS)).StatusSubject()
	}
	tr := &benchOpTracker{t: t, ns: ns, nc: nc, subjectOf: subjectOf, pods: map[string]*corev1.Pod{},
		announced: map[string]int{}, reported: map[string]bool{}, drained: map[string]bool{}, direct: map[string]bool{}, changed: make(chan struct{})}
	stop := watchNamespacePods(t, ns, tr.seen, tr.gone)
	quit := make(chan struct{})
	tr.wg.Add(1)
	go tr.announce(quit, announceEvery)
	var once sync.Once
	tr.stop = func() {
		once.Do(func() {
			stop()
			close(quit)
			tr.wg.Wait()
			nc.Close()
		})
	}
	t.Cleanup(tr.stop)
	return tr
}

// setBusy makes the stand-in workers hold one task of d each from now on
// (0: idle again).
func (tr *benchOpTracker) setBusy(d time.Duration) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	tr.busy = d
	clear(tr.announced)
}

// announce publishes, every interval until quit, what each serving
// LoopDeployment pod's worker holds.
func (tr *benchOpTracker) announce(quit <-chan struct{}, every time.Duration) {
	defer tr.wg.Done()
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		tr.mu.Lock()
		type msg struct {
			subject string
			data    []byte
		}
		var msgs []msg
		for name, p := range tr.pods {
			if benchOpSideOf(p) != benchOpSideLD || p.DeletionTimestamp != nil || contract.DrainRequested(p) || !benchOpPodReady(p) {
				continue
			}
			a := workerloop.Announcement{Worker: name, At: time.Now(), Status: workerloop.Status{State: "Running", InFlightByKind: map[string]int{}}}
			if tr.busy > 0 {
				a.Status.InFlightByKind["sleep"] = 1
			}
			data, err := json.Marshal(a)
			if err != nil {
				tr.errs = append(tr.errs, err)
				continue
			}
			msgs = append(msgs, msg{tr.subjectOf(p), data})
			tr.announced[name]++
		}
		tr.notify()
		tr.mu.Unlock()
		for _, m := range msgs {
			if err := tr.nc.Publish(m.subject, m.data); err != nil {
				tr.mu.Lock()
				tr.errs = append(tr.errs, fmt.Errorf("announcing: %w", err))
				tr.mu.Unlock()
			}
		}
		select {
		case <-quit:
			return
		case <-tick.C:
		}
	}
}

// waitAnnounced waits until every serving LoopDeployment pod's worker
// announced twice since the last setBusy: the operator, which hears them
// on the same subject, then knows what each holds.
func (tr *benchOpTracker) waitAnnounced(ctx context.Context, n int) error {
	_, err := tr.waitFor(ctx, time.Minute, func(benchOpCounts) bool {
		heard := 0
		for name, p := range tr.pods {
			if benchOpSideOf(p) == benchOpSideLD && tr.announced[name] >= 2 {
				heard++
			}
		}
		return heard >= n
	})
	return err
}

func benchOpSideOf(p *corev1.Pod) string {
	switch {
	case p.Labels[loopsv1alpha1.LabelName] != "":
		return benchOpSideLD
	case p.Labels["app"] != "":
		return benchOpSideDeploy
	}
	return ""
}

// benchOpRevAnnotation marks the template revision of a bench pod; a
// rollout changes it.
const benchOpRevAnnotation = "bench.tenire.io/rev"

// benchOpTemplate is the pod template of both sides' bench pods: kwok
// nodes only, never pulled, the revision in an annotation.
func benchOpTemplate(labels map[string]string, rev string) corev1.PodTemplateSpec {
	return corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: labels, Annotations: map[string]string{benchOpRevAnnotation: rev}},
		Spec: corev1.PodSpec{
			NodeSelector: map[string]string{benchOpNodeLabel: "true"},
			Tolerations:  []corev1.Toleration{{Key: benchOpNodeLabel, Operator: corev1.TolerationOpEqual, Value: "true", Effect: corev1.TaintEffectNoSchedule}},
			Containers:   []corev1.Container{{Name: loopsv1alpha1.WorkerContainerName, Image: benchOpImage}},
		},
	}
}

// notify wakes the waiters; tr.mu is held.
func (tr *benchOpTracker) notify() {
	close(tr.changed)
	tr.changed = make(chan struct{})
}

func (tr *benchOpTracker) seen(p *corev1.Pod) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	defer tr.notify()
	tr.pods[p.Name] = p
	if benchOpSideOf(p) != benchOpSideLD {
		return
	}
	_, drained := contract.Drained(p)
	switch {
	case drained:
		tr.drained[p.Name] = true
	case tr.drained[p.Name]:
		tr.violations = append(tr.violations, fmt.Sprintf("pod %s lost its Drained condition (resourceVersion %s)", p.Name, p.ResourceVersion))
	}
	if p.DeletionTimestamp != nil && !drained {
		tr.deletedUndrained(p)
	}
	if contract.DrainRequested(p) && !drained && p.DeletionTimestamp == nil && !tr.reported[p.Name] {
		tr.reported[p.Name] = true
		tr.wg.Add(1)
		go tr.reportDrained(p.Name, time.Now(), tr.busy)
	}
}

// deletedUndrained records a pod deleted before it reported Drained:
// allowed only for an idle worker deleted without a drain request (its
// SIGTERM drain has nothing to do); tr.mu is held.
func (tr *benchOpTracker) deletedUndrained(p *corev1.Pod) {
	switch {
	case contract.DrainRequested(p):
		tr.violations = append(tr.violations, fmt.Sprintf("pod %s was deleted after a drain request before it reported Drained", p.Name))
	case tr.busy > 0:
		tr.violations = append(tr.violations, fmt.Sprintf("pod %s, whose worker announced a task in flight, was deleted without a drain request", p.Name))
	default:
		tr.direct[p.Name] = true
	}
}

// reportDrained does what a worker does when asked to drain: an idle one
// (busy 0) reports Drained=True, reason Completed, at once; a busy one
// once its task would have finished. requested is when the tracker saw
// the request.
func (tr *benchOpTracker) reportDrained(name string, requested time.Time, busy time.Duration) {
	defer tr.wg.Done()
	if busy > 0 {
		t := time.NewTimer(busy) // the task the worker holds runs to its end
		select {
		case <-t.C:
		case <-tr.t.Context().Done():
			t.Stop()
			return
		}
	}
	w := podwatch.New(env.Clientset, tr.ns, name)
	err := w.ReportDrained(tr.t.Context(), workerloop.DrainReport{Cause: "pod", Duration: time.Since(requested)})
	if err != nil && !apierrors.IsNotFound(err) && tr.t.Context().Err() == nil {
		tr.mu.Lock()
		tr.errs = append(tr.errs, err)
		tr.mu.Unlock()
	}
}

func (tr *benchOpTracker) gone(p *corev1.Pod) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	defer tr.notify()
	delete(tr.pods, p.Name)
	if benchOpSideOf(p) == benchOpSideLD && !tr.drained[p.Name] {
		if _, ok := contract.Drained(p); !ok {
			tr.deletedUndrained(p)
		}
	}
}

// counts returns the pods of each side; tr.mu is held.
func (tr *benchOpTracker) counts() benchOpCounts {
	c := benchOpCounts{total: map[string]int{}, ready: map[string]int{}, current: map[string]int{}}
	for _, p := range tr.pods {
		side := benchOpSideOf(p)
		c.total[side]++
		if p.DeletionTimestamp == nil && benchOpPodReady(p) {
			c.ready[side]++
			if p.Annotations[benchOpRevAnnotation] == tr.rev {
				c.current[side]++
			}
		}
	}
	return c
}

// waitFor waits until cond holds for the pods and returns when the
// tracker saw it hold.
func (tr *benchOpTracker) waitFor(ctx context.Context, timeout time.Duration, cond func(benchOpCounts) bool) (time.Time, error) {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		tr.mu.Lock()
		ok, ch := cond(tr.counts()), tr.changed
		tr.mu.Unlock()
		if ok {
			return time.Now(), nil
		}
		select {
		case <-ch:
		case <-timer.C:
			return time.Time{}, fmt.Errorf("not after %s", timeout)
		case <-ctx.Done():
			return time.Time{}, ctx.Err()
		}
	}
}

// describe sums up the pods for a failure message.
func (tr *benchOpTracker) describe() string {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	c := tr.counts()
	phases := map[string]int{}
	for _, p := range tr.pods {
		key := string(p.Status.Phase)
		if p.Spec.NodeName == "" {
			key = "unscheduled"
		}
		if p.DeletionTimestamp != nil {
			key += "+deleting"
		}
		if contract.DrainRequested(p) {
			key += "+drain-requested"
		}
		phases[benchOpSideOf(p)+"/"+key]++
	}
	return fmt.Sprintf("total %v, ready %v, by state %v", c.total, c.ready, phases)
}

// check fails the test for what the tracker saw wrong.
func (tr *benchOpTracker) check() {
	tr.t.Helper()
	tr.mu.Lock()
	defer tr.mu.Unlock()
	for _, v := range tr.violations {
		tr.t.Error(v)
	}
	for _, err := range tr.errs {
		tr.t.Errorf("the stand-in workers: %v", err)
	}
	tr.t.Logf("the stand-in workers reported %d drains; %d idle pods were deleted without one", len(tr.reported), len(tr.direct))
}

func benchOpPodReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// benchOpWrites reads the apiserver's count of write requests.
type benchOpWrites struct {
	http *http.Client
	url  string
}

func benchOpNewWrites(t *testing.T) *benchOpWrites {
	t.Helper()
	hc, err := rest.HTTPClientFor(env.Cluster.Config)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(hc.CloseIdleConnections)
	w := &benchOpWrites{http: hc, url: env.Cluster.URL + "/metrics"}
	verbs, err := w.verbs(t.Context())
	if err != nil {
		t.Fatalf("reading apiserver_request_total: %v", err)
	}
	t.Logf("apiserver_request_total reports the verbs %v; counting %v as writes", verbs, benchOpWriteVerbs)
	return w
}

// benchScrape reads the families named from the Prometheus text at url,
// keeping only their lines (an apiserver's page is megabytes).
func benchScrape(ctx context.Context, hc *http.Client, url string, names ...string) (map[string]*dto.MetricFamily, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	var text bytes.Buffer
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Bytes()
		for _, name := range names {
			if bytes.HasPrefix(line, []byte(name+"{")) || bytes.HasPrefix(line, []byte(name+" ")) ||
				bytes.HasPrefix(line, []byte(name+"_bucket{")) || bytes.HasPrefix(line, []byte(name+"_sum")) ||
				bytes.HasPrefix(line, []byte(name+"_count")) || bytes.HasPrefix(line, []byte("# TYPE "+name+" ")) {
				text.Write(line)
				text.WriteByte('\n')
				break
			}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading %s: %w", url, err)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(&text)
	if err != nil {
		return nil, fmt.Errorf("parsing %v: %w", names, err)
	}
	return families, nil
}

// requestTotal returns the samples of apiserver_request_total.
func (w *benchOpWrites) requestTotal(ctx context.Context) ([]map[string]string, []float64, error) {
	const metric = "apiserver_request_total"
	families, err := benchScrape(ctx, w.http, w.url, metric)
	if err != nil {
		return nil, nil, err
	}
	fam, ok := families[metric]
	if !ok || len(fam.GetMetric()) == 0 {
		return nil, nil, fmt.Errorf("/metrics has no %s", metric)
	}
	labels := make([]map[string]string, 0, len(fam.GetMetric()))
	values := make([]float64, 0, len(fam.GetMetric()))
	for _, m := range fam.GetMetric() {
		l := map[string]string{}
		for _, lp := range m.GetLabel() {
			l[lp.GetName()] = lp.GetValue()
		}
		labels = append(labels, l)
		values = append(values, m.GetCounter().GetValue())
	}
	return labels, values, nil
}

// verbs returns the verbs apiserver_request_total reports now.
func (w *benchOpWrites) verbs(ctx context.Context) ([]string, error) {
	labels, _, err := w.requestTotal(ctx)
	if err != nil {
		return nil, err
	}
	var verbs []string
	for _, l := range labels {
		if !slices.Contains(verbs, l["verb"]) {
			verbs = append(verbs, l["verb"])
		}
	}
	sort.Strings(verbs)
	return verbs, nil
}

// scrape returns the write requests so far by "VERB resource[/subresource]"
// and the status code when it is not 2xx, leases left out.
func (w *benchOpWrites) scrape(ctx context.Context) (map[string]float64, error) {
	labels, values, err := w.requestTotal(ctx)
	if err != nil {
		return nil, err
	}
	out := map[string]float64{}
	for i, l := range labels {
		if !slices.Contains(benchOpWriteVerbs, l["verb"]) || l["resource"] == "leases" {
			continue
		}
		key := l["verb"] + " " + l["resource"]
		if l["subresource"] != "" {
			key += "/" + l["subresource"]
		}
		if code := l["code"]; !strings.HasPrefix(code, "2") {
			key += " " + code
		}
		out[key] += values[i]
	}
	if len(out) == 0 {
		return nil, errors.New("apiserver_request_total counts no write request at all")
	}
	return out, nil
}

// benchOpTop formats the largest entries of a breakdown.
func benchOpTop(m map[string]int, k int) string {
	keys := make([]string, 0, len(m))
	for key := range m {
		keys = append(keys, key)
	}
	sort.Slice(keys, func(i, j int) bool {
		if m[keys[i]] != m[keys[j]] {
			return m[keys[i]] > m[keys[j]]
		}
		return keys[i] < keys[j]
	})
	parts := make([]string, 0, k)
	for i, key := range keys {
		if i == k {
			parts = append(parts, "…")
			break
		}
		parts = append(parts, fmt.Sprintf("%s %d", key, m[key]))
	}
	return strings.Join(parts, ", ")
}

func benchOpSummarize(rounds []benchresult.OperatorRound, phase func(benchresult.OperatorRound) benchresult.OperatorPair) benchresult.OperatorSummary {
	var ldS, dS, tR, ldW, dW, wR []float64
	for _, r := range rounds {
		p := phase(r)
		ldS = append(ldS, p.LoopDeployment.Seconds)
		dS = append(dS, p.Deployment.Seconds)
		tR = append(tR, p.TimeRatio)
		ldW = append(ldW, p.LoopDeployment.WritesPerPod)
		dW = append(dW, p.Deployment.WritesPerPod)
		wR = append(wR, p.WritesRatio)
	}
	return benchresult.OperatorSummary{
		LoopDeploymentSeconds: benchOpMedian(ldS), DeploymentSeconds: benchOpMedian(dS),
		TimeRatio: benchOpMedian(tR), TimeRatioGoal: benchOpTimeGoal,
		LoopDeploymentWritesPerPod: benchOpMedian(ldW), DeploymentWritesPerPod: benchOpMedian(dW),
		WritesRatio: benchOpMedian(wR), WritesRatioGoal: benchOpWritesGoal,
	}
}

func benchOpMedian(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	m := s[len(s)/2]
	if len(s)%2 == 0 {
		m = (s[len(s)/2-1] + m) / 2
	}
	return benchOpRound3(m)
}

// benchOpRatio is a ÷ b, 0 when b is 0 (JSON has no infinity).
func benchOpRatio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return benchOpRound3(a / b)
}

func benchOpRound3(f float64) float64 { return math.Round(f*1000) / 1000 }
