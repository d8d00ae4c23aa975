package stream

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	loopsv1alpha1 "github.com/tenire/loop-operator/api/v1alpha1"
)

// Metric name parts and labels.
const (
	metricNamespace = "tenire"
	subsystemLD     = "loopdeployment"
	labelNamespace  = "namespace"
	labelName       = "name"
	labelPriority   = "priority"
)

var (
	backlogGauge = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: metricNamespace, Subsystem: subsystemLD, Name: "backlog",
		Help: "Tasks pending (not yet delivered) in a LoopDeployment's queue, by priority class.",
	}, []string{labelNamespace, labelName, labelPriority})
	inFlightGauge = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: metricNamespace, Subsystem: subsystemLD, Name: "in_flight",
		Help: "Tasks delivered and not yet acknowledged (delayed retries included), by priority class.",
	}, []string{labelNamespace, labelName, labelPriority})
	redeliveredGauge = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: metricNamespace, Subsystem: subsystemLD, Name: "redelivered",
		Help: "In-flight tasks delivered more than once, by priority class.",
	}, []string{labelNamespace, labelName, labelPriority})
	deadLettersGauge = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: metricNamespace, Subsystem: subsystemLD, Name: "dead_letters",
		Help: "Tasks in a LoopDeployment's dead-letter stream.",
	}, []string{labelNamespace, labelName})
	oldestAgeGauge = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: metricNamespace, Subsystem: subsystemLD, Name: "oldest_task_age_seconds",
		Help: "Age of the oldest unfinished task in a LoopDeployment's queue (0 when empty).",
	}, []string{labelNamespace, labelName})
	queueReadyGauge = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: metricNamespace, Subsystem: subsystemLD, Name: "queue_ready",
		Help: "1 when the operator provisioned and read a LoopDeployment's queue at its last poll, else 0.",
	}, []string{labelNamespace, labelName})
	observedGauge = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: metricNamespace, Subsystem: subsystemLD, Name: "queue_observed_timestamp_seconds",
		Help: "Unix time of the last poll of a LoopDeployment's queue, successful or not: a stuck poller shows as an old value.",
	}, []string{labelNamespace, labelName})
	pollDuration = prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: metricNamespace, Subsystem: "queue", Name: "poll_duration_seconds",
		Help:    "Seconds one poll of one LoopDeployment's queue took (provisioning, moving and reading).",
		Buckets: prometheus.ExponentialBuckets(0.001, 2, 15),
	})
	pollRoundDuration = prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: metricNamespace, Subsystem: "queue", Name: "poll_round_duration_seconds",
		Help:    "Seconds one round over every LoopDeployment's queue took: the autoscaler's latency beyond the poll interval.",
		Buckets: prometheus.ExponentialBuckets(0.001, 2, 18),
	})
)

func init() {
	metrics.Registry.MustRegister(backlogGauge, inFlightGauge, redeliveredGauge, deadLettersGauge,
		oldestAgeGauge, queueReadyGauge, observedGauge, pollDuration, pollRoundDuration)
}

// record publishes one observation as metrics.
func record(ld *loopsv1alpha1.LoopDeployment, o Observation, took time.Duration) {
	ns, name := ld.Namespace, ld.Name
	pollDuration.Observe(took.Seconds())
	observedGauge.WithLabelValues(ns, name).Set(float64(o.At.UnixNano()) / 1e9)
	if !o.Ready {
		queueReadyGauge.WithLabelValues(ns, name).Set(0)
		return // keep the last figures rather than report zeros we did not read
	}
	queueReadyGauge.WithLabelValues(ns, name).Set(1)
	for _, p := range o.Backlog.Priorities {
		backlogGauge.WithLabelValues(ns, name, p.Priority).Set(float64(p.Pending))
		inFlightGauge.WithLabelValues(ns, name, p.Priority).Set(float64(p.InFlight))
		redeliveredGauge.WithLabelValues(ns, name, p.Priority).Set(float64(p.Redelivered))
	}
	deadLettersGauge.WithLabelValues(ns, name).Set(float64(o.Backlog.DeadLetters))
	age := 0.0
	if !o.Backlog.Oldest.IsZero() {
		age = o.At.Sub(o.Backlog.Oldest).Seconds()
	}
	oldestAgeGauge.WithLabelValues(ns, name).Set(age)
}

// Forget removes the metrics of a LoopDeployment that is gone.
func Forget(namespace, name string) {
	labels := map[string]string{labelNamespace: namespace, labelName: name}
	for _, v := range []*prometheus.GaugeVec{backlogGauge, inFlightGauge, redeliveredGauge, deadLettersGauge,
		oldestAgeGauge, queueReadyGauge, observedGauge} {
		v.DeletePartialMatch(labels)
	}
}
