package main

// The report's fixed text: what each part measures and how. It describes
// methods, never results, so that it stays true whatever a run finds; the
// figures, the goals met or missed and the profiles of misses are written
// from the run itself.

const introReport = `Every figure of ours is shown as a ratio against an anchor measured in the
same run on the same machine: other pools and a goroutine per task for the
worker pool, a plain nats.go consumer and asynq on Redis for the queue path,
a Deployment for the operator, the longest in-flight task for a drain. Go
benchmarks run ` + "`-count`" + ` times and are compared by benchstat (its tables, with
confidence intervals and p-values, are below each part); a figure is the
median of the runs. The operator and drain figures are medians over
repeated rounds on a local control plane (the e2e suite's: real etcd,
kube-apiserver, kube-controller-manager, kube-scheduler, the manager as a
process). A virtual machine shared with other work gives noisy figures;
the load average before and after the run is recorded for that reason.
To re-measure, run ` + "`make bench`" + ` on an otherwise idle machine.`

const introDispatch = `No-op tasks through the worker pool: b.N tasks are submitted from one
goroutine and the benchmark waits for all of them, on 64 workers with a
backlog of 16 K, at GOMAXPROCS 1 and 2. Ours (impl=pool) runs with priority
scheduling on: three weighted classes, the tasks spread over them. The
anchors: ants v2 (a pre-allocated pool of 64), pond v2 (64 workers, an
unbounded queue), a goroutine per task with a WaitGroup, and a buffered
channel read by 64 goroutines, the floor of handing a task from one
goroutine to another. Goals: ≤ 0.9× ants, ≤ 1.5× the channel, 0 allocs/op
(the few B/op are the ring's growth to the backlog, amortised).`

const introFootprint = `One op is 1,000,000 tasks that each sleep 10 ms, on a pool of 10,000
workers (ours with a backlog of 10,000; ants blocks its submitter while
full) or on a goroutine per task. Wall time is ns/op; memory is B/op,
everything allocated on the heap during the op (goroutine stacks are not
heap allocations, so the goroutines' B/op understates their footprint).
Goals: B/op ≤ 0.25× bare goroutines, wall ≤ 1.1× bare goroutines.`

const introFeatures = `What the loop's scheduling features cost a dispatch: impl=features runs
three weighted priority classes, a limit on each of four kinds (32 of the
64 workers each, binding now and then) and a circuit breaker asked before
and told after every task, as the loop does; impl=fifo is the pool's plain
path (one class, no limits, no breaker). Both run the same tasks (a
string, four kinds in turn) with the same handler, so only the features
differ. Goal ≤ 1.2×.`

const introQueue = `No-op tasks through JetStream, on an embedded nats-server in the benchmark's
process. impl=loop is our worker loop with 16 workers and the settings a
LoopDeployment runs with by default: the prefetch sized to the tasks (on
no-op tasks, up to one pool more); result records are off (a
LoopDeployment keeps them by default: one more publish per task).
impl=loop-off is the same with the prefetch off (spec.loop.pool.prefetch:
0), impl=loop-prefetch with a fixed prefetch of 16; both are shown beside
the plain consumer without a goal. impl=plain is a bare nats.go pull
consumer on the same server and stream that acks each message and pulls 16
per request (the loop's batch). impl=asynq is github.com/hibiken/asynq v0.26
with Concurrency 16 on a local redis-server (Debian's package, started and
stopped by the benchmark, no persistence, over a Unix socket); its
TaskCheckInterval is set to 1 ms (default 1 s), its best case for latency.
Throughput: b.N tasks are stored first, then timed until the last has run
(tasks/s). Latency: a closed loop that enqueues one task and waits until
its handler starts, b.N times; p50-us and p99-us are percentiles of the
time from before the enqueue call to the handler's first line. Goals:
throughput ≥ 0.8× the plain consumer and ≥ 2× asynq.

Why the loop without a prefetch trails the plain consumer on no-op tasks:
it fetches only as many tasks as it has free workers, and a finished task
frees one worker, so under a flood of instant tasks it waits for a fetch
round trip per task or two, where the plain consumer pulls the next batch
before its buffer runs dry. A fixed prefetch buys the round trips back but
lets a pod with slow tasks hold tasks that an idle pod could run. The
default sizes the prefetch from two moving averages, the fetch round trip
and the handlers' run time: about twice what the pool finishes during one
round trip, at most a pool. No-op tasks get a whole pool more; tasks much
longer than the round trip get none, so nothing waits behind a busy pod
(TestASlowWorkerDoesNotHoardTasksAnIdleOneCouldRun in worker/loop: beside a
worker whose tasks take 5 ms, one whose tasks take 500 ms holds no more
than its pool and one task, and the fast one runs most of a burst).`

const introMany = `The operator with many loops (TestBenchOperatorMany in test/e2e): L
LoopDeployments of P pods beside L Deployments of P pods on kwok nodes, on
the e2e suite's local control plane, at the goal size (1,000 × 10) unless
-many-loops and -many-pods say otherwise, both controllers' clients at the
same rate limits: 100 QPS, burst 200 (at kube-controller-manager's own,
20 and 30, the goal size takes some four hours; -quick keeps them). Each side runs alone, in four phases:
create (until L × P pods are Ready), steady (nothing changes for a while),
rollout (every pod template changes; until L × P new pods are Ready and no
old one is left; both sides with a Deployment's default update strategy,
maxSurge and maxUnavailable 25 %, which a LoopDeployment takes only when
asked) and zero (every object scaled to 0 through /scale; until
no pod is left); each phase but steady ends only when every object's
status says what its pods show (observed generation, replicas Ready and
updated) and every loop pod's worker has announced itself, so that a
phase's writes are its own and the steady window starts quiet. The
operator manages the loops' queues, and stand-in workers announce each
pod idle every 2 s, as idle loop-workers would. Writes are
every client's, as in part 5; status writes are the controllers' writes of
their own objects' status. On the LoopDeployment side the operator is
measured: resident memory (/proc, every 250 ms), CPU time, reconciles of
the loopdeployment controller and their duration (percentiles are bucket
bounds of controller_runtime_reconcile_time_seconds), work queue depth
(its metrics, scraped every 2 s: at 1,000 loops each scrape has a cost).
On both sides the CPU seconds of every process of the machine (/proc:
etcd, the control plane, kwok, NATS, the operator, and the test, which
runs the stand-in workers and the pod tracker) show where the cores went;
outside -quick, the operator's CPU profile over the rollout's first
minute and its heap at the rollout's end (--pprof-bind-address) follow the
tables. Goals: time and writes per pod ≤ 1.2× the Deployments' in each phase, the
operator's peak resident memory ≤ 500 MiB, reconcile p99 ≤ 1 s in the
steady state, and status writes in the steady state about none.`

const outroReport = `## What the figures do not say

- The Go benchmarks run on one machine with its noise; benchstat's
  intervals above say how much to trust each median. A ratio near a goal
  is within the noise unless benchstat marks the difference significant.
- The queue figures use an embedded server in the same process: no
  network, which favours the anchors and us alike.
- The operator figures come from pods on kwok nodes, where a pod has no
  process: they measure the control plane's work (creating, scheduling,
  reporting, draining and deleting pods), not a worker's start-up.`

const introDrain = `How long a drain takes against the longest task it must wait for, on the
local control plane of the e2e suite with real loop-worker processes
(TestBenchDrain in test/e2e). A LoopDeployment of 2 workers runs sleep tasks
of known lengths; each round fills both pods, scales to 1, and measures from
the moment the operator's drain-requested annotation is seen on the victim
(t0) until the pod is gone from the API. The longest in-flight task is read
from the result records: the largest finish − t0 over the victim's tasks
that started before t0 and finished after it. Goal: every drain ≤ 1.1 × the
longest in-flight task + 1 s.`

const introOperator = `The control plane's work for a LoopDeployment against a Deployment of the
same size, on the e2e suite's local control plane with pods on kwok nodes
(TestBenchOperatorScale in test/e2e): kwok plays the kubelet, so pods start
and stop at once and the figures are the controllers' own. Up: the /scale
subresource goes 0 → N, timed until N pods are Ready. Down: N → 0, timed
until no pod is left. kwok pods run no worker, so stand-in workers in the
test announce on the loop's status subject every 0.5 s what they hold, as
loop-worker does, and report Drained when asked: in the down phase they are
idle, so the operator deletes their pods without a drain, as a ReplicaSet
deletes its surplus. The Deployment's pods are deleted by its ReplicaSet.
Then the LoopDeployment goes up and down once more with busy workers, each
holding a task of 1 s: every pod is drained (asked, Drained once its task
ended, deleted), a tenth of the pods at a time (drain.maxConcurrent), and
the time is reported beside the least those waves can take. API writes are
the apiserver's apiserver_request_total for write verbs, summed over every
client, before and after each phase, divided by N. Goals: time ≤ 1.1× the
Deployment's, writes per pod ≤ 1.2× its.

What a LoopDeployment writes beyond a Deployment, by design: the
PodDisruptionBudget it keeps, whose status kube-controller-manager updates
as pods become ready and go; and, per busy pod going down, the drain request
(a PATCH of the pod by the operator, before its DELETE) and the Drained
report (a PATCH of pods/status by the worker, here the stand-in). The tables
of writes by request below show each of these beside the Deployment's.`

const introAutoscale = `The autoscaler on the e2e suite's local control plane with real
loop-worker processes (TestBenchAutoscale in test/e2e), the manager polling
the queues every 2 s (the suite's --queue-poll-interval; the default is
10 s). Completion: N sleep tasks of 50 ms on a loop autoscaled between 1
and 8 pods (100 tasks per replica, scale-up allowed to the maximum at
once), at 1 Ready pod when the tasks come, against the same loop fixed at
8 Ready pods; each timed from just before the first submission to the last
result record. Where the burst falls in the poll interval matters, so
rounds are repeated, each with new loops, and the figures are medians.
Goal ≤ 1.3×. Reaction: from just before the first
submission to the autoscaled loop to the first new pod Ready, as a pod
watch sees it. Goal ≤ the poll interval + 2 s. Status writes: the
autoscaled loop then gets 1,000 tasks of 10 minutes, more than its 8 pods
of 20 workers hold, so that pending and in flight stay put; once
status.queue shows those figures, a watch on the LoopDeployment counts
the updates that changed its status but not its generation, over 2
minutes. Goal ≤ 2 per minute.`
