package controllers

import (
	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

// Drain results, the "result" label of the drain metrics.
const (
	// DrainResultCompleted means the worker finished every in-flight task.
	DrainResultCompleted = "completed"
	// DrainResultDeadlineExceeded means the worker reached its deadline and
	// handed the rest back to the queue.
	DrainResultDeadlineExceeded = "deadline_exceeded"
	// DrainResultTimedOut means the worker did not report by deadline plus
	// grace; the operator deleted the pod anyway.
	DrainResultTimedOut = "timed_out"
)

// Reasons of tenire_loop_pods_deleted_without_drain_total.
const (
	deletedIdle        = "idle"
	deletedUnscheduled = "unscheduled"
)

var (
	// drainsTotal counts finished drains by result.
	drainsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "tenire",
		Subsystem: "loop",
		Name:      "drains_total",
		Help:      "Worker pod drains finished by the operator, by result (completed, deadline_exceeded, timed_out).",
	}, []string{"result"})

	// podsDeletedWithoutDrain counts the pods the operator removed by a
	// plain deletion because they held no task, by why it knew.
	podsDeletedWithoutDrain = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "tenire",
		Subsystem: "loop",
		Name:      "pods_deleted_without_drain_total",
		Help:      "Worker pods removed by a plain deletion, without a drain request, because they held no task: reason idle (the worker announced no task in flight) or unscheduled (no node ran it).",
	}, []string{"reason"})

	// drainDuration observes the time from a drain request to the pod's
	// deletion, by result.
	drainDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: "tenire",
		Subsystem: "loop",
		Name:      "drain_duration_seconds",
		Help:      "Seconds from a worker pod's drain request to its deletion, by result.",
		Buckets:   prometheus.ExponentialBuckets(0.5, 2, 14), // 0.5s .. ~68m
	}, []string{"result"})
)

func init() {
	metrics.Registry.MustRegister(drainsTotal, drainDuration, podsDeletedWithoutDrain)
	for _, r := range []string{deletedIdle, deletedUnscheduled} {
		podsDeletedWithoutDrain.WithLabelValues(r)
	}
	for _, r := range []string{DrainResultCompleted, DrainResultDeadlineExceeded, DrainResultTimedOut} {
		drainsTotal.WithLabelValues(r)
	}
}
