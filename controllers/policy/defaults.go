package policy

import (
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	loopsv1alpha1 "github.com/tenire/loop-operator/api/v1alpha1"
)

// The defaults of the API, as the CRD schema documents them. The API server
// applies them on write; WithDefaults applies them again so that objects
// built in memory (tests, older stored objects) hash and render the same.
const (
	// DefaultPriorityName is the single priority class of a loop that lists
	// none.
	DefaultPriorityName = "default"
	// DefaultMaxConcurrent is drain.maxConcurrent when unset.
	DefaultMaxConcurrent = "25%"
	// DefaultMaxSurge is updateStrategy.maxSurge when unset.
	DefaultMaxSurge = "25%"
	// DefaultDrainTimeout is drain.timeout when unset.
	DefaultDrainTimeout = 5 * time.Minute
)

// WithDefaults returns a copy of spec with every unset field that has a
// documented default set to it. It never changes a field that is set.
func WithDefaults(spec loopsv1alpha1.LoopDeploymentSpec) loopsv1alpha1.LoopDeploymentSpec {
	out := *spec.DeepCopy()
	if out.Replicas == nil {
		out.Replicas = ptr.To[int32](1)
	}
	l := &out.Loop
	if l.Pool.MinWorkers == nil {
		l.Pool.MinWorkers = ptr.To[int32](1)
	}
	setInt32(&l.Pool.MaxWorkers, 16)
	setDuration(&l.Pool.IdleTimeout, 30*time.Second)
	if len(l.Priorities) == 0 {
		l.Priorities = []loopsv1alpha1.PriorityClass{{Name: DefaultPriorityName, Weight: 1}}
	}
	for i := range l.Priorities {
		setInt32(&l.Priorities[i].Weight, 1)
	}
	if l.Scheduling == "" {
		l.Scheduling = loopsv1alpha1.SchedulingWeighted
	}
	setDuration(&l.TaskTimeout, 10*time.Minute)
	setInt32(&l.Retry.MaxAttempts, 5)
	setDuration(&l.Retry.InitialBackoff, time.Second)
	setDuration(&l.Retry.MaxBackoff, 5*time.Minute)
	setInt32(&l.CircuitBreaker.FailureThreshold, 5)
	setDuration(&l.CircuitBreaker.Cooldown, 30*time.Second)

	q := &out.Queue.NATS
	setDuration(&q.AckWait, 30*time.Second)
	setInt32(&q.MaxAckPending, 1000)
	setInt32(&q.Replicas, 1)
	setDuration(&q.ResultRetention, time.Hour)

	setDuration(&out.Drain.Timeout, DefaultDrainTimeout)
	if out.Drain.MaxConcurrent == nil {
		out.Drain.MaxConcurrent = ptr.To(intstr.FromString(DefaultMaxConcurrent))
	}
	if out.UpdateStrategy.MaxSurge == nil {
		out.UpdateStrategy.MaxSurge = ptr.To(intstr.FromString(DefaultMaxSurge))
	}
	return out
}

func setInt32(p *int32, def int32) {
	if *p == 0 {
		*p = def
	}
}

func setDuration(p **metav1.Duration, def time.Duration) {
	if *p == nil {
		*p = &metav1.Duration{Duration: def}
	}
}
