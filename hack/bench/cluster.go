package main

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tenire/loop-operator/internal/benchresult"
)

// The operator and drain parts are tests of the e2e suite (build tag e2e,
// test/e2e/bench_*_test.go): they start the suite's local control plane,
// run their rounds and write their samples as JSON, which this file reads.

// runE2EBench runs one e2e benchmark test with env and decodes the JSON it
// writes into v. It returns the command line, for the report.
func runE2EBench(ctx context.Context, o *options, id, test, outVar, timeout string, env []string, v any) (string, error) {
	if _, err := command(ctx, o, "kube-bins.log", nil, "bash", "hack/kube-bins.sh"); err != nil {
		return "", err
	}
	dir, err := command(ctx, o, "kube-bins-dir.log", nil, "bash", "hack/kube-bins.sh", "--print-dir")
	if err != nil {
		return "", err
	}
	out, err := filepath.Abs(filepath.Join(o.workDir, id+".json"))
	if err != nil {
		return "", err
	}
	_ = os.Remove(out)
	env = append(env, "KUBEBUILDER_ASSETS="+strings.TrimSpace(string(dir)), outVar+"="+out)
	args := []string{"test", "-tags", "e2e", "-count=1", "-timeout", timeout, "-run", "^" + test + "$", "-v", "./test/e2e/"}
	if _, err := command(ctx, o, id+".log", env, "go", args...); err != nil {
		return "", err
	}
	b, err := os.ReadFile(out)
	if err != nil {
		return "", fmt.Errorf("%s wrote no results: %w", test, err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return "", fmt.Errorf("%s: %w", out, err)
	}
	var shown []string
	for _, e := range env {
		if !strings.HasPrefix(e, "KUBEBUILDER_ASSETS=") && !strings.HasPrefix(e, outVar+"=") {
			shown = append(shown, e)
		}
	}
	return strings.Join(shown, " ") + " " + outVar + "=" + id + ".json go " + strings.Join(args, " "), nil
}

func runDrain(ctx context.Context, o *options) (*section, error) {
	rounds := "20"
	if o.quick {
		rounds = "2"
	}
	var r benchresult.Drain
	cmd, err := runE2EBench(ctx, o, "drain", "TestBenchDrain", "TENIRE_BENCH_DRAIN_OUT", "90m", []string{"TENIRE_BENCH_DRAIN_ROUNDS=" + rounds}, &r)
	if err != nil {
		return nil, err
	}
	if len(r.Samples) == 0 {
		return nil, fmt.Errorf("TestBenchDrain reported no drains")
	}
	sec := &section{Title: "6. Drain", Intro: introDrain, Commands: []string{cmd}}
	longest := make([]float64, len(r.Samples))
	drains := make([]float64, len(r.Samples))
	for i, s := range r.Samples {
		longest[i], drains[i] = s.LongestRemaining, s.Drain
	}
	sec.add(&figure{
		What: "drain time ÷ longest in-flight task, median of " + strconv.Itoa(len(r.Samples)) + " drains", Unit: "s",
		Ours: "drain", OursV: median(drains), Anchor: "longest task", AnchorV: median(longest), Ratio: r.MedianRatio,
		Goal: "every drain ≤ 1.1× longest + 1 s", Met: ptr(r.AllMetGoal),
	})
	var b strings.Builder
	fmt.Fprintf(&b, "%d of %d drains met drain ≤ 1.1 × longest + 1 s; the worst drain took %.2f× its longest in-flight task, %.2f s over 1.1 × it. "+
		"%d workers with a pool of %d each, sleep tasks of %v ms; %d tasks submitted, %d completed, %d duplicates.\n\n",
		r.MetGoal, len(r.Samples), r.WorstRatio, r.WorstSlack, r.Replicas, r.PoolSize, r.TaskLengthsMs, r.Submitted, r.Completed, r.Duplicates)
	b.WriteString("| round | in flight | started after the request | longest in-flight (s) | Drained reported (s) | pod gone = drain (s) | worker's own drain (s) | ratio | goal |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- |\n")
	for _, s := range r.Samples {
		met := "met"
		if !s.MetGoal {
			met = "MISSED"
		}
		fmt.Fprintf(&b, "| %d | %d | %d | %.2f | %.2f | %.2f | %.2f | %.2f× | %s |\n", s.Round, s.InFlight, s.LateStarts, s.LongestRemaining, s.Drained, s.Drain, s.WorkerDrain, s.Ratio, met)
	}
	sec.Details = strings.TrimSpace(b.String())
	return sec, nil
}

// manyProfiles are the operator's profiles that part 8 records
// (TestBenchOperatorMany, TENIRE_BENCH_MANY_PROFILES) and the report shows.
var manyProfiles = []struct {
	file, what string
	args       []string
}{
	{"many-rollout.cpu.prof", "The operator's CPU profile over the first minute of the LoopDeployments' rollout:", nil},
	{"many-rollout.heap.prof", "The operator's heap at the end of the rollout (memory in use):", []string{"-sample_index=inuse_space"}},
}

func runOperator(ctx context.Context, o *options) (*section, error) {
	pods, rounds := "200", "5"
	if o.quick {
		pods, rounds = "20", "1"
	}
	var r benchresult.Operator
	cmd, err := runE2EBench(ctx, o, "operator", "TestBenchOperatorScale", "TENIRE_BENCH_OPERATOR_OUT", "90m",
		[]string{"TENIRE_BENCH_OPERATOR_PODS=" + pods, "TENIRE_BENCH_OPERATOR_ROUNDS=" + rounds}, &r)
	if err != nil {
		return nil, err
	}
	if len(r.Samples) == 0 {
		return nil, fmt.Errorf("TestBenchOperatorScale reported no rounds")
	}
	sec := &section{Title: "5. Operator", Intro: introOperator, Commands: []string{cmd}}
	for _, ph := range []struct {
		name string
		s    benchresult.OperatorSummary
	}{{fmt.Sprintf("scale 0→%d", r.Pods), r.Up}, {fmt.Sprintf("scale %d→0", r.Pods), r.Down}} {
		sec.add(&figure{What: ph.name + ", seconds", Unit: "s", Ours: "LoopDeployment", Anchor: "Deployment",
			OursV: ph.s.LoopDeploymentSeconds, AnchorV: ph.s.DeploymentSeconds, Ratio: ph.s.TimeRatio, GoalMax: 1.1})
		sec.add(&figure{What: ph.name + ", API writes per pod", Unit: "writes", Ours: "LoopDeployment", Anchor: "Deployment",
			OursV: ph.s.LoopDeploymentWritesPerPod, AnchorV: ph.s.DeploymentWritesPerPod, Ratio: ph.s.WritesRatio, GoalMax: 1.2})
	}
	waves := math.Ceil(float64(r.Pods) / float64(max(r.BusyMaxConcurrent, 1)))
	floor := waves * r.BusyTaskSeconds
	sec.add(&figure{What: fmt.Sprintf("scale %d→0 with busy workers (a %g s task each, maxConcurrent %d), seconds", r.Pods, r.BusyTaskSeconds, r.BusyMaxConcurrent),
		Unit: "s", Ours: "LoopDeployment", Anchor: "waves × task", OursV: r.DownBusySeconds, AnchorV: floor, Ratio: r.DownBusySeconds / floor,
		Goal: "no goal: reported beside the idle figure"})
	var b strings.Builder
	fmt.Fprintf(&b, "With busy workers the LoopDeployment's scale-down writes %.2f per pod and takes %.2f s: %g waves of %d drains, each as long as its %g s task, are %.1f s at least.\n\n",
		r.DownBusyWritesPerPod, r.DownBusySeconds, waves, r.BusyMaxConcurrent, r.BusyTaskSeconds, floor)
	fmt.Fprintf(&b, "%d pods on %d kwok nodes, %d rounds (the side that goes first alternates); both controllers' clients at %g QPS, burst %d. "+
		"Ratios are medians of each round's LoopDeployment ÷ Deployment.\n\nTiming: %s\n\nWrites: %s\n\n", r.Pods, r.Nodes, len(r.Samples), r.KubeAPIQPS, r.KubeAPIBurst, r.Timing, r.Writes)
	b.WriteString("| round | first | up: LD s | up: Deployment s | up: LD writes/pod | up: Deployment writes/pod | down: LD s | down: Deployment s | down: LD writes/pod | down: Deployment writes/pod | down busy: LD s | down busy: LD writes/pod |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n")
	for _, s := range r.Samples {
		fmt.Fprintf(&b, "| %d | %s | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f |\n", s.Round, s.First,
			s.Up.LoopDeployment.Seconds, s.Up.Deployment.Seconds, s.Up.LoopDeployment.WritesPerPod, s.Up.Deployment.WritesPerPod,
			s.Down.LoopDeployment.Seconds, s.Down.Deployment.Seconds, s.Down.LoopDeployment.WritesPerPod, s.Down.Deployment.WritesPerPod,
			s.DownBusy.Seconds, s.DownBusy.WritesPerPod)
	}
	last := r.Samples[len(r.Samples)-1]
	fmt.Fprintf(&b, "\nWrites of round %d by request, LoopDeployment beside Deployment:\n\n", last.Round)
	b.WriteString(writesTable("up", last.Up) + "\n" + writesTable("down", last.Down))
	sec.Details = strings.TrimSpace(b.String())
	return sec, nil
}

// writesTable lists one phase's writes by request on both sides.
func writesTable(phase string, p benchresult.OperatorPair) string {
	keys := map[string]bool{}
	for k := range p.LoopDeployment.WritesByRequest {
		keys[k] = true
	}
	for k := range p.Deployment.WritesByRequest {
		keys[k] = true
	}
	sorted := make([]string, 0, len(keys))
	for k := range keys {
		sorted = append(sorted, k)
	}
	slices.SortFunc(sorted, func(a, b string) int {
		return cmp.Or(
			cmp.Compare(p.LoopDeployment.WritesByRequest[b]+p.Deployment.WritesByRequest[b], p.LoopDeployment.WritesByRequest[a]+p.Deployment.WritesByRequest[a]),
			strings.Compare(a, b))
	})
	var b strings.Builder
	fmt.Fprintf(&b, "| %s: request | LoopDeployment | Deployment |\n| --- | --- | --- |\n", phase)
	for _, k := range sorted {
		fmt.Fprintf(&b, "| %s | %d | %d |\n", k, p.LoopDeployment.WritesByRequest[k], p.Deployment.WritesByRequest[k])
	}
	return b.String()
}

func runAutoscale(ctx context.Context, o *options) (*section, error) {
	env := []string{"TENIRE_BENCH_AUTOSCALE_TASKS=10000", "TENIRE_BENCH_AUTOSCALE_ROUNDS=5", "TENIRE_BENCH_AUTOSCALE_WINDOW=2m"}
	if o.quick {
		env = []string{"TENIRE_BENCH_AUTOSCALE_TASKS=1000", "TENIRE_BENCH_AUTOSCALE_ROUNDS=1", "TENIRE_BENCH_AUTOSCALE_WINDOW=10s", "TENIRE_BENCH_AUTOSCALE_QUICK=1"}
	}
	var r benchresult.Autoscale
	cmd, err := runE2EBench(ctx, o, "autoscale", "TestBenchAutoscale", "TENIRE_BENCH_AUTOSCALE_OUT", "90m", env, &r)
	if err != nil {
		return nil, err
	}
	if len(r.Samples) == 0 || r.Fixed == 0 {
		return nil, fmt.Errorf("TestBenchAutoscale reported no rounds")
	}
	n := strconv.Itoa(len(r.Samples))
	sec := &section{Title: "7. Autoscaling", Intro: introAutoscale, Commands: []string{cmd}}
	sec.add(&figure{
		What: fmt.Sprintf("%d tasks of %d ms, completion time, median of %s rounds", r.Tasks, r.TaskMs, n), Unit: "s",
		Ours: fmt.Sprintf("autoscaled %d-%d", r.MinReplicas, r.MaxReplicas), OursV: r.Autoscaled,
		Anchor: fmt.Sprintf("fixed at %d", r.MaxReplicas), AnchorV: r.Fixed, Ratio: r.CompletionRatio, GoalMax: 1.3,
	})
	sec.add(&figure{
		What: "first pending task → first new pod Ready, seconds, median of " + n + " rounds", Unit: "s",
		Ours: "autoscaled", OursV: r.FirstPodReady, Anchor: "poll interval + 2 s", AnchorV: r.FirstPodGoal,
		Ratio: r.FirstPodReady / r.FirstPodGoal, Goal: fmt.Sprintf("≤ poll interval (%gs) + 2 s", r.PollInterval),
		Met: ptr(r.FirstPodReady <= r.FirstPodGoal),
	})
	sec.add(&figure{
		What: "status writes per LoopDeployment per minute, steady backlog", Unit: "writes/min",
		Ours: "autoscaled", OursV: r.StatusWritesPerMinute, Anchor: "goal", AnchorV: 2, Ratio: -1,
		Goal: "≤ 2 per minute", Met: ptr(r.StatusWritesPerMinute <= 2),
	})
	var b strings.Builder
	fmt.Fprintf(&b, "Pods with a pool of %d; the autoscaled loop targets %d tasks per replica; the manager polls every %gs. "+
		"%d tasks submitted over both runs, %d completed, %d duplicates.\n\n", r.PoolMaxWorkers, r.TargetBacklogPerReplica, r.PollInterval,
		r.Submitted, r.Completed, r.Duplicates)
	fmt.Fprintf(&b, "Worst of the rounds: completion %.2f× the fixed loop's, first new pod Ready after %.2f s.\n\n", r.WorstRatio, r.WorstFirstPodReady)
	b.WriteString("| round | fixed (s) | autoscaled (s) | ratio | first new pod Ready (s) | status writes in the burst | replicas of the autoscaled loop, spec/ready, from the first task |\n| --- | --- | --- | --- | --- | --- | --- |\n")
	for _, s := range r.Samples {
		fmt.Fprintf(&b, "| %d | %.2f | %.2f | %.2f× | %.2f | %d in %.1f s | %s |\n", s.Round, s.Fixed, s.Autoscaled, s.Ratio, s.FirstPodReady, s.BurstStatusWrites, s.BurstWindow, s.Trajectory)
	}
	fmt.Fprintf(&b, "\nAt the steady backlog (%d pending, %d in flight): %d status writes in %.0f s",
		r.SteadyPending, r.SteadyInFlight, r.SteadyStatusWrites, r.SteadyWindow)
	if len(r.SteadyWrites) > 0 {
		fmt.Fprintf(&b, ", each changing: %s", strings.Join(r.SteadyWrites, "; "))
	}
	b.WriteString(".")
	sec.Details = b.String()
	return sec, nil
}

func runMany(ctx context.Context, o *options) (*section, error) {
	// The goal size, 1,000 × 10, with both sides' clients at 100 QPS,
	// burst 200: at kube-controller-manager's own 20 and 30 it takes
	// some four hours. The smoke run keeps kube-controller-manager's
	// defaults (0: not set).
	loops, pods, steady, qps, burst := 1000, 10, "60", 100.0, 200
	if o.quick {
		loops, pods, steady, qps, burst = 10, 3, "10", 0, 0
	}
	if o.manyLoops > 0 {
		loops = o.manyLoops
	}
	if o.manyPods > 0 {
		pods = o.manyPods
	}
	if o.manyQPS > 0 {
		qps = o.manyQPS
	}
	if o.manyBurst > 0 {
		burst = o.manyBurst
	}
	env := []string{"TENIRE_BENCH_MANY_LOOPS=" + strconv.Itoa(loops), "TENIRE_BENCH_MANY_PODS=" + strconv.Itoa(pods), "TENIRE_BENCH_MANY_STEADY_SECONDS=" + steady}
	if qps > 0 {
		env = append(env, "TENIRE_E2E_KCM_QPS="+strconv.FormatFloat(qps, 'g', -1, 64))
	}
	if burst > 0 {
		env = append(env, "TENIRE_E2E_KCM_BURST="+strconv.Itoa(burst))
	}
	// The report shows the profiles this run writes, never an earlier
	// run's left in the work directory.
	for _, f := range manyProfiles {
		_ = os.Remove(filepath.Join(o.workDir, f.file))
	}
	if !o.quick {
		// The operator's CPU profile over the rollout's first minute and
		// its heap at the rollout's end (the peak), for the report.
		abs, err := filepath.Abs(o.workDir)
		if err != nil {
			return nil, err
		}
		env = append(env, "TENIRE_BENCH_MANY_PROFILES="+abs)
	}
	// About a second per pod a side at the default limits, with room.
	timeout := (90*time.Minute + time.Duration(loops*pods)*time.Second).String()
	var r benchresult.Many
	cmd, err := runE2EBench(ctx, o, "many", "TestBenchOperatorMany", "TENIRE_BENCH_MANY_OUT", timeout, env, &r)
	if err != nil {
		return nil, err
	}
	if len(r.LoopDeployments) != 4 || len(r.Deployments) != 4 {
		return nil, fmt.Errorf("TestBenchOperatorMany reported %d and %d phases, want 4 each", len(r.LoopDeployments), len(r.Deployments))
	}
	sec := &section{Title: "8. Many loops", Intro: introMany, Commands: []string{cmd}}
	n := r.Loops * r.Pods
	for i, what := range []string{fmt.Sprintf("create %d × %d pods", r.Loops, r.Pods), "", "rollout of every loop", "scale every loop to 0"} {
		if what == "" {
			continue // steady: figures below
		}
		ld, d := r.LoopDeployments[i], r.Deployments[i]
		sec.add(&figure{What: what + ", seconds", Unit: "s", Ours: "LoopDeployments", Anchor: "Deployments",
			OursV: ld.Seconds, AnchorV: d.Seconds, Ratio: divide(ld.Seconds, d.Seconds), GoalMax: 1.2})
		if i < 3 {
			sec.add(&figure{What: what + ", API writes per pod", Unit: "writes", Ours: "LoopDeployments", Anchor: "Deployments",
				OursV: ld.WritesPerPod, AnchorV: d.WritesPerPod, Ratio: divide(ld.WritesPerPod, d.WritesPerPod), GoalMax: 1.2})
		}
	}
	var peak float64
	for _, p := range r.LoopDeployments {
		peak = max(peak, p.OperatorRSSPeakMiB)
	}
	sec.add(&figure{What: "operator resident memory, peak over every phase", Unit: "MiB", Ours: "operator", Anchor: "goal",
		OursV: peak, AnchorV: 500, Ratio: peak / 500, GoalMax: 1})
	st, dst := r.LoopDeployments[1], r.Deployments[1]
	p99 := &figure{What: "reconcile duration p99, steady state", Unit: "s", Ours: "operator", Anchor: "goal",
		OursV: st.ReconcileP99, AnchorV: 1, Ratio: st.ReconcileP99, GoalMax: 1}
	if st.Reconciles == 0 {
		// No duration to rank: say so rather than print a p99 of 0 s.
		p99.What += ": no reconcile ran"
		p99.Ratio, p99.GoalMax, p99.Goal, p99.Met = -1, 0, "≤ 1 s", ptr(true)
	}
	sec.add(p99)
	perMinute := func(p benchresult.ManyPhase) float64 { return float64(p.StatusWrites) / (p.Seconds / 60) }
	sw := perMinute(st)
	sec.add(&figure{What: fmt.Sprintf("status writes per minute in steady state, all %d loops", r.Loops), Unit: "writes",
		Ours: "LoopDeployments", Anchor: "Deployments", OursV: sw, AnchorV: perMinute(dst), Ratio: -1,
		Goal: "≈ 0 (≤ 1 a minute)", Met: ptr(sw <= 1)})

	var b strings.Builder
	fmt.Fprintf(&b, "%d LoopDeployments of %d pods beside %d Deployments of %d pods (%d pods a side) on kwok nodes; both controllers' clients at %g QPS, burst %d; steady state %g s.",
		r.Loops, r.Pods, r.Loops, r.Pods, n, r.KubeAPIQPS, r.KubeAPIBurst, r.SteadySeconds)
	if n < 10000 {
		b.WriteString(" The goal size is 1,000 × 10, `make bench`'s own.")
	}
	b.WriteString("\n\n")
	b.WriteString("| phase | LD s | Deployment s | LD writes/pod | Deployment writes/pod | LD status writes | Deployment status writes | operator RSS peak / end MiB | operator CPU s | reconciles | p50 s | p99 s | queue depth max |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n")
	for i, ld := range r.LoopDeployments {
		d := r.Deployments[i]
		fmt.Fprintf(&b, "| %s | %.2f | %.2f | %.2f | %.2f | %d | %d | %.0f / %.0f | %.1f | %d | %.3f | %.3f | %d |\n", ld.Name, ld.Seconds, d.Seconds,
			ld.WritesPerPod, d.WritesPerPod, ld.StatusWrites, d.StatusWrites, ld.OperatorRSSPeakMiB, ld.OperatorRSSEndMiB, ld.OperatorCPUSeconds,
			ld.Reconciles, ld.ReconcileP50, ld.ReconcileP99, ld.QueueDepthMax)
	}
	b.WriteString(cpuTable(r))
	for i, ld := range r.LoopDeployments {
		fmt.Fprintf(&b, "\n%s", writesTable(ld.Name, benchresult.OperatorPair{
			LoopDeployment: benchresult.OperatorSample{WritesByRequest: ld.WritesByRequest},
			Deployment:     benchresult.OperatorSample{WritesByRequest: r.Deployments[i].WritesByRequest}}))
	}
	for _, f := range manyProfiles {
		prof := filepath.Join(o.workDir, f.file)
		if _, err := os.Stat(prof); err != nil {
			continue // not asked for (-quick)
		}
		args := append([]string{"tool", "pprof", "-top", "-nodecount", "25"}, f.args...)
		top, err := command(ctx, o, f.file+".top.txt", nil, "go", append(args, prof)...)
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(&b, "\n%s\n\n```\ngo %s %s\n\n%s\n```\n", f.what, strings.Join(args, " "), f.file, trimProfile(string(top)))
	}
	sec.Details = strings.TrimSpace(b.String())
	return sec, nil
}

// cpuTable is the CPU seconds of each process of the machine in each
// phase but steady, a column a side: where the two cores went, and what
// the LoopDeployment side spent that the Deployment side did not. Empty
// when the result has none (an older result).
func cpuTable(r benchresult.Many) string {
	names := map[string]bool{}
	for _, side := range [][]benchresult.ManyPhase{r.LoopDeployments, r.Deployments} {
		for _, p := range side {
			for name := range p.CPUSecondsByProcess {
				names[name] = true
			}
		}
	}
	if len(names) == 0 {
		return ""
	}
	phases := []int{0, 2, 3} // create, rollout, zero
	var b strings.Builder
	b.WriteString("\n| CPU seconds by process |")
	for _, i := range phases {
		fmt.Fprintf(&b, " %s LD | %s Deployment |", r.LoopDeployments[i].Name, r.Deployments[i].Name)
	}
	b.WriteString("\n| --- |" + strings.Repeat(" --- | --- |", len(phases)) + "\n")
	row := func(name string, v func(p benchresult.ManyPhase) float64) {
		fmt.Fprintf(&b, "| %s |", name)
		for _, i := range phases {
			fmt.Fprintf(&b, " %.1f | %.1f |", v(r.LoopDeployments[i]), v(r.Deployments[i]))
		}
		b.WriteString("\n")
	}
	for _, name := range slices.Sorted(maps.Keys(names)) {
		row(name, func(p benchresult.ManyPhase) float64 { return p.CPUSecondsByProcess[name] })
	}
	row("all", func(p benchresult.ManyPhase) float64 {
		var sum float64
		for _, v := range p.CPUSecondsByProcess {
			sum += v
		}
		return sum
	})
	row("wall time × cores", func(p benchresult.ManyPhase) float64 { return p.Seconds * float64(runtime.NumCPU()) })
	return b.String()
}

// divide is a ÷ b, 0 when b is 0.
func divide(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}
