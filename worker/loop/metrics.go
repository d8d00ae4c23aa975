package loop

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/tenire/loop-operator/worker/breaker"
)

// Task outcomes, the "outcome" label of tenire_loop_tasks_total and the
// keys of /status counters.
const (
	OutcomeSucceeded    = "succeeded"
	OutcomeRetried      = "retried"
	OutcomeDeadLettered = "dead_lettered"
	OutcomeHandedBack   = "handed_back"
	OutcomeDeferred     = "deferred" // breaker open
)

// labelKind is the task kind label of the metrics.
const labelKind = "kind"

type metrics struct {
	tasks        *prometheus.CounterVec
	duration     *prometheus.HistogramVec
	queueWait    *prometheus.HistogramVec
	breakerState *prometheus.GaugeVec
	drain        prometheus.Histogram
	fetchErrors  prometheus.Counter
	resultsLost  prometheus.Counter
}

func newMetrics(reg *prometheus.Registry, l *Loop) *metrics {
	m := &metrics{
		tasks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tenire_loop_tasks_total",
			Help: "Tasks that ended, by kind and outcome (succeeded, retried, dead_lettered, handed_back, deferred).",
		}, []string{labelKind, "outcome"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "tenire_loop_task_duration_seconds",
			Help:    "Time a task's handler ran, by kind.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 12),
		}, []string{labelKind}),
		queueWait: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "tenire_loop_task_queue_wait_seconds",
			Help:    "Time from a task's storage in the stream to the start of this attempt, by kind.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 12),
		}, []string{labelKind}),
		breakerState: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "tenire_loop_breaker_state",
			Help: "Circuit breaker state by kind: 0 closed, 1 open, 2 half-open.",
		}, []string{labelKind}),
		drain: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "tenire_loop_drain_duration_seconds",
			Help:    "Time drains took, from the request to the Drained report.",
			Buckets: prometheus.ExponentialBuckets(0.01, 4, 10),
		}),
		fetchErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tenire_loop_fetch_errors_total",
			Help: "Failed fetches from the queue (for example while NATS restarts).",
		}),
		resultsLost: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tenire_loop_result_records_lost_total",
			Help: "Tasks that succeeded and were acked without a result record, because publishing it failed three times.",
		}),
	}
	gauge := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f)
	}
	reg.MustRegister(m.tasks, m.duration, m.queueWait, m.breakerState, m.drain, m.fetchErrors, m.resultsLost,
		gauge("tenire_loop_pool_workers", "Goroutines in the pool.", func() float64 { return float64(l.poolStats().Workers) }),
		gauge("tenire_loop_tasks_in_flight", "Tasks held by this worker: running or waiting in the pool.", func() float64 {
			s := l.poolStats()
			return float64(s.Running + s.Queued)
		}),
		gauge("tenire_loop_tasks_running", "Tasks in their handler.", func() float64 { return float64(l.poolStats().Running) }),
		gauge("tenire_loop_prefetch", "Tasks the worker may hold beyond its pool, queued until a handler is free: the fixed prefetch, or the adaptive one's current size.", func() float64 {
			if l.State() == Starting || l.pool == nil {
				return 0
			}
			return float64(l.pool.Backlog())
		}),
		gauge("tenire_loop_stuck_slots", "Pool slots held by handlers abandoned past their timeout and grace.", func() float64 { return float64(l.stuck.Load()) }),
		gauge("tenire_loop_state", "Loop state: 0 Starting, 1 Running, 2 Draining, 3 Drained, 4 Stopped.", func() float64 { return float64(l.State()) }),
	)
	return m
}

func newRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

func breakerValue(s breaker.State) float64 {
	return float64(s)
}
