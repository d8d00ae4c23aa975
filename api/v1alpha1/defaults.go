package v1alpha1

import (
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
)

// The defaults of the API. The CRD schema carries them as
// +kubebuilder:default markers, which the API server applies on write;
// TestCRDDefaultsAreTheGoDefaults checks that each marker of the generated
// CRD equals its constant here. WithDefaults applies them again so that
// objects built in memory (tests, older stored objects) hash and render
// the same, and the worker and the plugin read the same values.
const (
	// DefaultReplicas is spec.replicas when unset.
	DefaultReplicas int32 = 1
	// DefaultMinWorkers is loop.pool.minWorkers when unset.
	DefaultMinWorkers int32 = 1
	// DefaultMaxWorkers is loop.pool.maxWorkers when unset.
	DefaultMaxWorkers int32 = 16
	// DefaultIdleTimeout is loop.pool.idleTimeout when unset.
	DefaultIdleTimeout = 30 * time.Second
	// DefaultPriorityName is the single priority class of a loop that lists
	// none.
	DefaultPriorityName = "default"
	// DefaultPriorityWeight is a priority class's weight when unset.
	DefaultPriorityWeight int32 = 1
	// DefaultScheduling is loop.scheduling when unset.
	DefaultScheduling = SchedulingWeighted
	// DefaultTaskTimeout is loop.taskTimeout when unset.
	DefaultTaskTimeout = 10 * time.Minute
	// DefaultMaxAttempts is loop.retry.maxAttempts when unset.
	DefaultMaxAttempts int32 = 5
	// DefaultInitialBackoff is loop.retry.initialBackoff when unset.
	DefaultInitialBackoff = time.Second
	// DefaultMaxBackoff is loop.retry.maxBackoff when unset.
	DefaultMaxBackoff = 5 * time.Minute
	// DefaultFailureThreshold is loop.circuitBreaker.failureThreshold when
	// unset.
	DefaultFailureThreshold int32 = 5
	// DefaultBreakerCooldown is loop.circuitBreaker.cooldown when unset.
	DefaultBreakerCooldown = 30 * time.Second
	// DefaultAckWait is queue.nats.ackWait when unset.
	DefaultAckWait = 30 * time.Second
	// DefaultMaxAckPending is queue.nats.maxAckPending when unset.
	DefaultMaxAckPending int32 = 1000
	// DefaultDuplicateWindow is queue.nats.duplicateWindow when unset:
	// JetStream's own default.
	DefaultDuplicateWindow = 2 * time.Minute
	// DefaultResultRetention is queue.nats.resultRetention when unset.
	DefaultResultRetention = time.Hour
	// DefaultStreamReplicas is queue.nats.replicas when unset.
	DefaultStreamReplicas int32 = 1
	// DefaultDrainTimeout is drain.timeout when unset, and the timeout of a
	// drain whose request carries no readable deadline.
	DefaultDrainTimeout = 5 * time.Minute
	// DefaultMaxConcurrent is drain.maxConcurrent when unset.
	DefaultMaxConcurrent = "25%"
	// DefaultMaxSurge is updateStrategy.maxSurge when unset.
	DefaultMaxSurge = "25%"

	// DefaultDeletionPolicy is queue.nats.deletionPolicy when unset.
	DefaultDeletionPolicy = DeletionPolicyRetain
	// DefaultAutoscalingMinReplicas is autoscaling.minReplicas when unset.
	DefaultAutoscalingMinReplicas int32 = 1
	// DefaultScaleToZeroAfter is autoscaling.scaleToZeroAfter when unset.
	DefaultScaleToZeroAfter = 5 * time.Minute
	// DefaultScaleDownStabilization is the scale-down stabilization window
	// when unset; scaling up has none.
	DefaultScaleDownStabilization = 300 * time.Second

	// DefaultCredentialsKey is the key of the Secret named by
	// queue.nats.credentialsSecretRef that holds the NATS credentials.
	DefaultCredentialsKey = "nats.creds"
)

// WithDefaults returns a copy of spec with every unset field that has a
// documented default set to it. It never changes a field that is set.
func WithDefaults(spec LoopDeploymentSpec) LoopDeploymentSpec {
	out := *spec.DeepCopy()
	if out.Replicas == nil {
		out.Replicas = ptr.To(DefaultReplicas)
	}
	l := &out.Loop
	if l.Pool.MinWorkers == nil {
		l.Pool.MinWorkers = ptr.To(DefaultMinWorkers)
	}
	setInt32(&l.Pool.MaxWorkers, DefaultMaxWorkers)
	setDuration(&l.Pool.IdleTimeout, DefaultIdleTimeout)
	if len(l.Priorities) == 0 {
		l.Priorities = []PriorityClass{{Name: DefaultPriorityName, Weight: DefaultPriorityWeight}}
	}
	for i := range l.Priorities {
		setInt32(&l.Priorities[i].Weight, DefaultPriorityWeight)
	}
	if l.Scheduling == "" {
		l.Scheduling = DefaultScheduling
	}
	setDuration(&l.TaskTimeout, DefaultTaskTimeout)
	setInt32(&l.Retry.MaxAttempts, DefaultMaxAttempts)
	setDuration(&l.Retry.InitialBackoff, DefaultInitialBackoff)
	setDuration(&l.Retry.MaxBackoff, DefaultMaxBackoff)
	setInt32(&l.CircuitBreaker.FailureThreshold, DefaultFailureThreshold)
	setDuration(&l.CircuitBreaker.Cooldown, DefaultBreakerCooldown)

	q := &out.Queue.NATS
	setDuration(&q.AckWait, DefaultAckWait)
	setInt32(&q.MaxAckPending, DefaultMaxAckPending)
	setInt32(&q.Replicas, DefaultStreamReplicas)
	setDuration(&q.ResultRetention, DefaultResultRetention)
	setDuration(&q.DuplicateWindow, DefaultDuplicateWindow)
	if q.DeletionPolicy == "" {
		q.DeletionPolicy = DefaultDeletionPolicy
	}

	setDuration(&out.Drain.Timeout, DefaultDrainTimeout)
	if out.Drain.MaxConcurrent == nil {
		out.Drain.MaxConcurrent = ptr.To(intstr.FromString(DefaultMaxConcurrent))
	}
	if out.UpdateStrategy.MaxSurge == nil {
		out.UpdateStrategy.MaxSurge = ptr.To(intstr.FromString(DefaultMaxSurge))
	}
	if out.Autoscaling != nil {
		a := AutoscalingWithDefaults(*out.Autoscaling)
		out.Autoscaling = &a
	}
	return out
}

// AutoscalingWithDefaults returns a copy of a with every unset field set to
// its documented default: minReplicas 1, scaleToZeroAfter 5m, scale-up
// with no stabilization window by max(100%, 4 pods) per 15s, scale-down
// after a 300s window by 100% per 15s, selectPolicy Max both ways (the
// defaults of a HorizontalPodAutoscaler).
func AutoscalingWithDefaults(a AutoscalingSpec) AutoscalingSpec {
	out := *a.DeepCopy()
	if out.MinReplicas == nil {
		out.MinReplicas = ptr.To(DefaultAutoscalingMinReplicas)
	}
	setDuration(&out.ScaleToZeroAfter, DefaultScaleToZeroAfter)
	if out.Behavior == nil {
		out.Behavior = &AutoscalingBehavior{}
	}
	b := out.Behavior
	if b.ScaleUp == nil {
		b.ScaleUp = &ScalingRules{}
	}
	if b.ScaleDown == nil {
		b.ScaleDown = &ScalingRules{}
	}
	if b.ScaleUp.StabilizationWindowSeconds == nil {
		b.ScaleUp.StabilizationWindowSeconds = ptr.To[int32](0)
	}
	if b.ScaleDown.StabilizationWindowSeconds == nil {
		b.ScaleDown.StabilizationWindowSeconds = ptr.To(int32(DefaultScaleDownStabilization / time.Second))
	}
	for _, r := range []*ScalingRules{b.ScaleUp, b.ScaleDown} {
		if r.SelectPolicy == nil {
			r.SelectPolicy = ptr.To(SelectMax)
		}
	}
	if len(b.ScaleUp.Policies) == 0 {
		b.ScaleUp.Policies = []ScalingPolicy{
			{Type: PercentScalingPolicy, Value: 100, PeriodSeconds: 15},
			{Type: PodsScalingPolicy, Value: 4, PeriodSeconds: 15},
		}
	}
	if len(b.ScaleDown.Policies) == 0 {
		b.ScaleDown.Policies = []ScalingPolicy{{Type: PercentScalingPolicy, Value: 100, PeriodSeconds: 15}}
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
