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
	// Up and Down are the medians over the rounds.
	Up   OperatorSummary `json:"up"`
	Down OperatorSummary `json:"down"`
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
