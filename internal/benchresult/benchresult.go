// Package benchresult holds the results the e2e suite's benchmarks
// (TestBenchDrain, TestBenchOperatorScale in test/e2e) write as JSON and
// make bench (hack/bench) reads: one definition for both sides.
package benchresult

// DrainSample is one drain. Durations are in seconds from t0.
type DrainSample struct {
	Round int    `json:"round"`
	Pod   string `json:"pod"`
	// InFlight counts the victim's tasks running at t0; LateStarts those it
	// started after t0.
	InFlight   int `json:"inFlightAtRequest"`
	LateStarts int `json:"lateStarts"`
	// LongestRemaining is the longest in-flight task's finish − t0;
	// LastFinish is the last finish of any of the victim's tasks.
	LongestRemaining float64 `json:"longestRemainingSeconds"`
	LastFinish       float64 `json:"lastFinishSeconds"`
	// Drained is t0 → the Drained condition seen, Deleting → the
	// deletionTimestamp seen, Drain → the pod gone.
	Drained  float64 `json:"drainedSeconds"`
	Deleting float64 `json:"deletingSeconds"`
	Drain    float64 `json:"drainSeconds"`
	// WorkerDrain is the drain's length as the worker reported it (from the
	// moment it saw the request to its report).
	WorkerDrain float64 `json:"workerDrainSeconds"`
	// RequestLag is the scale-down's update → t0.
	RequestLag float64 `json:"requestLagSeconds"`
	// Ratio is Drain / LongestRemaining; Slack is Drain −
	// 1.1 × LongestRemaining; the goal allows 1 s.
	Ratio   float64 `json:"ratio"`
	Slack   float64 `json:"slackSeconds"`
	MetGoal bool    `json:"metGoal"`
}

// Drain is what TestBenchDrain (test/e2e) writes to TENIRE_BENCH_DRAIN_OUT.
type Drain struct {
	Benchmark           string        `json:"benchmark"`
	Goal                string        `json:"goal"`
	Rounds              int           `json:"rounds"`
	Replicas            int           `json:"replicas"`
	PoolSize            int           `json:"poolSize"`
	TasksPerRound       int           `json:"tasksPerRound"`
	TaskLengthsMs       []int         `json:"taskLengthsMs"`
	DrainTimeoutSeconds float64       `json:"drainTimeoutSeconds"`
	Samples             []DrainSample `json:"samples"`
	MedianRatio         float64       `json:"medianRatio"`
	WorstRatio          float64       `json:"worstRatio"`
	MedianSlack         float64       `json:"medianSlackSeconds"`
	WorstSlack          float64       `json:"worstSlackSeconds"`
	MetGoal             int           `json:"metGoal"`
	AllMetGoal          bool          `json:"allMetGoal"`
	Submitted           int           `json:"submitted"`
	Completed           int           `json:"completed"`
	Duplicates          int           `json:"duplicates"`
}

// Operator is what TestBenchOperatorScale writes to
// TENIRE_BENCH_OPERATOR_OUT.
type Operator struct {
	// Pods is N, the replicas of each side.
	Pods int `json:"pods"`
	// Rounds is the number of rounds.
	Rounds int `json:"rounds"`
	// Nodes is the number of kwok nodes.
	Nodes int `json:"nodes"`
	// KubeAPIQPS and KubeAPIBurst are the client rate limits of
	// kube-controller-manager and of the operator's manager.
	KubeAPIQPS   float32 `json:"kubeAPIQPS"`
	KubeAPIBurst int     `json:"kubeAPIBurst"`
	// Timing and Writes say what was measured.
	Timing string `json:"timing"`
	Writes string `json:"writes"`
	// Up and Down are the medians over the rounds. Down has idle
	// workers: the operator deletes their pods without a drain.
	Up   OperatorSummary `json:"up"`
	Down OperatorSummary `json:"down"`
	// DownBusySeconds and DownBusyWritesPerPod are the medians of the
	// LoopDeployment's N → 0 with busy workers: each holds one task of
	// BusyTaskSeconds and is drained, BusyMaxConcurrent at a time.
	DownBusySeconds      float64 `json:"downBusySeconds"`
	DownBusyWritesPerPod float64 `json:"downBusyWritesPerPod"`
	BusyTaskSeconds      float64 `json:"busyTaskSeconds"`
	BusyMaxConcurrent    int     `json:"busyMaxConcurrent"`
	// Samples holds each round's raw figures.
	Samples []OperatorRound `json:"samples"`
}

// OperatorSummary holds the medians of one phase over the rounds; the
// ratios are medians of each round's LoopDeployment ÷ Deployment.
type OperatorSummary struct {
	LoopDeploymentSeconds      float64 `json:"loopDeploymentSeconds"`
	DeploymentSeconds          float64 `json:"deploymentSeconds"`
	TimeRatio                  float64 `json:"timeRatio"`
	TimeRatioGoal              float64 `json:"timeRatioGoal"`
	LoopDeploymentWritesPerPod float64 `json:"loopDeploymentWritesPerPod"`
	DeploymentWritesPerPod     float64 `json:"deploymentWritesPerPod"`
	WritesRatio                float64 `json:"writesRatio"`
	WritesRatioGoal            float64 `json:"writesRatioGoal"`
}

// OperatorRound is one round: which side went first, and both phases.
type OperatorRound struct {
	Round     int          `json:"round"`
	Namespace string       `json:"namespace"`
	First     string       `json:"first"`
	Up        OperatorPair `json:"up"`
	Down      OperatorPair `json:"down"`
	// DownBusy is the LoopDeployment's N → 0 with busy workers.
	DownBusy OperatorSample `json:"downBusy"`
}

// OperatorPair is one phase of one round on both sides.
type OperatorPair struct {
	LoopDeployment OperatorSample `json:"loopDeployment"`
	Deployment     OperatorSample `json:"deployment"`
	TimeRatio      float64        `json:"timeRatio"`
	WritesRatio    float64        `json:"writesRatio"`
}

// OperatorSample is one phase of one side.
type OperatorSample struct {
	// Seconds runs from the /scale patch to N Ready pods (up) or none left
	// (down).
	Seconds float64 `json:"seconds"`
	// StatusSeconds runs from the /scale patch to the controller's status
	// saying the same.
	StatusSeconds float64 `json:"statusSeconds"`
	// Writes counts the write requests of the phase; WritesPerPod is
	// Writes ÷ N.
	Writes       int     `json:"writes"`
	WritesPerPod float64 `json:"writesPerPod"`
	// WritesByRequest breaks Writes down by "VERB resource[/subresource]",
	// followed by the status code when it is not 2xx ("DELETE pods 404").
	WritesByRequest map[string]int `json:"writesByRequest"`
}

// Autoscale is what TestBenchAutoscale (test/e2e) writes to
// TENIRE_BENCH_AUTOSCALE_OUT. Times are in seconds.
type Autoscale struct {
	// The set-up: Tasks sleep tasks of TaskMs each; the autoscaled loop
	// runs between MinReplicas and MaxReplicas pods at
	// TargetBacklogPerReplica, the fixed one at MaxReplicas; each pod has
	// a pool of PoolMaxWorkers; the manager polls every PollInterval.
	Tasks                   int     `json:"tasks"`
	TaskMs                  int     `json:"taskMs"`
	MinReplicas             int32   `json:"minReplicas"`
	MaxReplicas             int32   `json:"maxReplicas"`
	TargetBacklogPerReplica int32   `json:"targetBacklogPerReplica"`
	PoolMaxWorkers          int32   `json:"poolMaxWorkers"`
	PollInterval            float64 `json:"pollIntervalSeconds"`

	// Rounds is the number of rounds, each a burst on a fixed loop then
	// on an autoscaled one; Samples holds each round's figures.
	Rounds  int              `json:"rounds"`
	Samples []AutoscaleRound `json:"samples"`
	// The medians over the rounds of the completion times, their ratio
	// and the first new pod Ready, and the worst ratio and reaction.
	Fixed              float64 `json:"fixedSeconds"`
	Autoscaled         float64 `json:"autoscaledSeconds"`
	CompletionRatio    float64 `json:"completionRatio"`
	WorstRatio         float64 `json:"worstRatio"`
	FirstPodReady      float64 `json:"firstPodReadySeconds"`
	WorstFirstPodReady float64 `json:"worstFirstPodReadySeconds"`
	// FirstPodGoal is PollInterval + 2 s.
	FirstPodGoal float64 `json:"firstPodGoalSeconds"`

	// The steady backlog: SteadyPending and SteadyInFlight tasks held
	// still (tasks far longer than the window, pods at their maximum),
	// SteadyStatusWrites writes counted over SteadyWindow;
	// StatusWritesPerMinute is their rate, goal ≤ 2.
	SteadyPending         int64   `json:"steadyPending"`
	SteadyInFlight        int64   `json:"steadyInFlight"`
	SteadyWindow          float64 `json:"steadyWindowSeconds"`
	SteadyStatusWrites    int     `json:"steadyStatusWrites"`
	StatusWritesPerMinute float64 `json:"statusWritesPerMinute"`
	// SteadyWrites describes each write of the window: what changed.
	SteadyWrites []string `json:"steadyWrites,omitempty"`

	// The ledger of both burst runs together.
	Submitted  int `json:"submitted"`
	Completed  int `json:"completed"`
	Duplicates int `json:"duplicates"`
}

// AutoscaleRound is one round of TestBenchAutoscale. Times in seconds.
type AutoscaleRound struct {
	Round int `json:"round"`
	// Fixed and Autoscaled are the completion times (first submission →
	// last result record) of the fixed and the autoscaled loop; Ratio is
	// Autoscaled / Fixed.
	Fixed      float64 `json:"fixedSeconds"`
	Autoscaled float64 `json:"autoscaledSeconds"`
	Ratio      float64 `json:"ratio"`
	// FirstPodReady is the first submission → the first new pod Ready.
	FirstPodReady float64 `json:"firstPodReadySeconds"`
	// Trajectory is the autoscaled loop's spec.replicas/readyReplicas
	// over the burst.
	Trajectory string `json:"trajectory"`
	// BurstStatusWrites counts the autoscaled loop's status writes from
	// the first submission to the last result, over BurstWindow.
	BurstStatusWrites int     `json:"burstStatusWrites"`
	BurstWindow       float64 `json:"burstWindowSeconds"`
}

// Many is what TestBenchOperatorMany (test/e2e) writes to
// TENIRE_BENCH_MANY_OUT: many LoopDeployments beside as many Deployments.
type Many struct {
	// Loops objects of Pods replicas each, on each side.
	Loops int `json:"loops"`
	Pods  int `json:"pods"`
	// SteadySeconds is the length of the steady phase.
	SteadySeconds float64 `json:"steadySeconds"`
	// KubeAPIQPS and KubeAPIBurst are both controllers' client limits.
	KubeAPIQPS   float32 `json:"kubeAPIQPS"`
	KubeAPIBurst int     `json:"kubeAPIBurst"`
	// LoopDeployments and Deployments hold each side's phases, in the
	// order create, steady, rollout, zero.
	LoopDeployments []ManyPhase `json:"loopDeployments"`
	Deployments     []ManyPhase `json:"deployments"`
}

// ManyPhase is one phase of one side. The operator's figures are only
// taken on the LoopDeployment side (kube-controller-manager runs every
// controller of the cluster in one process, so its memory says nothing of
// the ReplicaSet controller's).
type ManyPhase struct {
	Name    string  `json:"name"`
	Seconds float64 `json:"seconds"`
	// Writes counts every client's write requests (leases left out);
	// WritesPerPod divides them by Loops × Pods.
	Writes          int            `json:"writes"`
	WritesPerPod    float64        `json:"writesPerPod"`
	WritesByRequest map[string]int `json:"writesByRequest"`
	// StatusWrites counts the controllers' status writes of their own
	// objects (loopdeployments/status; deployments/status and
	// replicasets/status).
	StatusWrites int `json:"statusWrites"`
	// The operator's resident memory (peak and at the end of the phase),
	// CPU seconds, reconciles and their duration percentiles, and the
	// deepest its work queue got, all sampled during the phase.
	OperatorRSSPeakMiB float64 `json:"operatorRSSPeakMiB,omitempty"`
	OperatorRSSEndMiB  float64 `json:"operatorRSSEndMiB,omitempty"`
	OperatorCPUSeconds float64 `json:"operatorCPUSeconds,omitempty"`
	Reconciles         int     `json:"reconciles,omitempty"`
	ReconcileP50       float64 `json:"reconcileP50Seconds,omitempty"`
	ReconcileP99       float64 `json:"reconcileP99Seconds,omitempty"`
	QueueDepthMax      int     `json:"queueDepthMax,omitempty"`
	// CPUSecondsByProcess is the CPU time each process of the machine's
	// cluster used in the phase, by name (etcd, kube-apiserver,
	// kube-controller-manager, kube-scheduler, kwok, the NATS server,
	// the operator, and the test itself, which runs the stand-in workers
	// and the pod tracker): where the machine's cores went.
	CPUSecondsByProcess map[string]float64 `json:"cpuSecondsByProcess,omitempty"`
}
