package settings

import (
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	loopsv1alpha1 "github.com/tenire/loop-operator/api/v1alpha1"
	"github.com/tenire/loop-operator/api/v1alpha1/contract"
	"github.com/tenire/loop-operator/worker/loop"
	"github.com/tenire/loop-operator/worker/pool"
	"github.com/tenire/loop-operator/worker/queue"
)

// ErrInvalid is wrapped by the errors of Parse and Config for settings
// they reject.
var ErrInvalid = errors.New("invalid worker settings")

// Parse reads WorkerSettings from JSON or YAML, rejecting unknown fields
// so that a typo is an error, not a silent default.
func Parse(data []byte) (loopsv1alpha1.WorkerSettings, error) {
	var s loopsv1alpha1.WorkerSettings
	if err := yaml.UnmarshalStrict(data, &s); err != nil {
		return s, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return s, nil
}

// FromEnvironment parses the LOOP_SETTINGS variable. It returns false when
// the variable is not set.
func FromEnvironment(getenv func(string) string) (loopsv1alpha1.WorkerSettings, bool, error) {
	v := getenv(loopsv1alpha1.EnvWorkerSettings)
	if v == "" {
		return loopsv1alpha1.WorkerSettings{}, false, nil
	}
	s, err := Parse([]byte(v))
	if err != nil {
		return s, true, fmt.Errorf("%s: %w", loopsv1alpha1.EnvWorkerSettings, err)
	}
	return s, true, nil
}

// Config maps settings onto a loop configuration. Fields the settings
// leave zero keep loop's defaults. Stream and subject prefix come from the
// settings' resolved names, or are derived from namespace and name like
// the operator does.
func Config(s loopsv1alpha1.WorkerSettings) (loop.Config, error) {
	var errs []error
	nonNeg := func(field string, v int32) int {
		if v < 0 {
			errs = append(errs, fmt.Errorf("%s %d must not be negative", field, v))
		}
		return int(v)
	}
	stream, prefix := s.Stream, s.SubjectPrefix
	if stream == "" || prefix == "" {
		if s.Name == "" || s.Namespace == "" {
			errs = append(errs, errors.New("stream and subjectPrefix, or name and namespace, are required"))
		}
		dStream, dPrefix := contract.QueueNames(s.Namespace, s.Name, s.Queue.NATS)
		if stream == "" {
			stream = dStream
		}
		if prefix == "" {
			prefix = dPrefix
		}
	}
	c := loop.Config{
		Name:          s.Namespace + "/" + s.Name,
		NATSURL:       s.Queue.NATS.URL,
		Stream:        stream,
		SubjectPrefix: prefix,
		MaxWorkers:    nonNeg("loop.pool.maxWorkers", s.Loop.Pool.MaxWorkers),
		IdleTimeout:   dur(s.Loop.Pool.IdleTimeout),
		TaskTimeout:   dur(s.Loop.TaskTimeout),
		Retry: queue.RetryPolicy{
			MaxAttempts:    nonNeg("loop.retry.maxAttempts", s.Loop.Retry.MaxAttempts),
			InitialBackoff: dur(s.Loop.Retry.InitialBackoff),
			MaxBackoff:     dur(s.Loop.Retry.MaxBackoff),
		},
		BreakerThreshold: nonNeg("loop.circuitBreaker.failureThreshold", s.Loop.CircuitBreaker.FailureThreshold),
		BreakerCooldown:  dur(s.Loop.CircuitBreaker.Cooldown),
		AckWait:          dur(s.Queue.NATS.AckWait),
		MaxAckPending:    nonNeg("queue.nats.maxAckPending", s.Queue.NATS.MaxAckPending),
		Replicas:         nonNeg("queue.nats.replicas", s.Queue.NATS.Replicas),
		DrainTimeout:     s.DrainTimeout.Duration,
		ResultRetention:  dur(s.Queue.NATS.ResultRetention),
	}
	if s.Name == "" && s.Namespace == "" {
		c.Name = ""
	}
	if s.Loop.Pool.MinWorkers != nil {
		c.MinWorkers = nonNeg("loop.pool.minWorkers", *s.Loop.Pool.MinWorkers)
	}
	// Unset: sized to the tasks (loop.Config's 0); 0: off.
	if s.Loop.Pool.Prefetch != nil {
		if c.Prefetch = nonNeg("loop.pool.prefetch", *s.Loop.Pool.Prefetch); c.Prefetch == 0 {
			c.Prefetch = loop.PrefetchOff
		}
	}
	switch s.Loop.Scheduling {
	case "", loopsv1alpha1.SchedulingWeighted:
		c.Scheduling = pool.Weighted
	case loopsv1alpha1.SchedulingStrict:
		c.Scheduling = pool.Strict
	default:
		errs = append(errs, fmt.Errorf("loop.scheduling %q: want Weighted or Strict", s.Loop.Scheduling))
	}
	for _, p := range s.Loop.Priorities {
		c.Priorities = append(c.Priorities, pool.Class{Name: p.Name, Weight: nonNeg("loop.priorities["+p.Name+"].weight", p.Weight)})
	}
	if len(s.Loop.KindLimits) > 0 {
		c.KindLimits = make(map[string]int, len(s.Loop.KindLimits))
		for kind, n := range s.Loop.KindLimits {
			if n < 1 {
				errs = append(errs, fmt.Errorf("loop.kindLimits[%s] %d must be at least 1", kind, n))
			}
			c.KindLimits[kind] = int(n)
		}
	}
	for field, d := range map[string]time.Duration{
		"loop.pool.idleTimeout": c.IdleTimeout, "loop.taskTimeout": c.TaskTimeout,
		"loop.retry.initialBackoff": c.Retry.InitialBackoff, "loop.retry.maxBackoff": c.Retry.MaxBackoff,
		"loop.circuitBreaker.cooldown": c.BreakerCooldown, "queue.nats.ackWait": c.AckWait, "drainTimeout": c.DrainTimeout,
		"queue.nats.resultRetention": c.ResultRetention,
	} {
		if d < 0 {
			errs = append(errs, fmt.Errorf("%s %s must not be negative", field, d))
		}
	}
	if s.NATSCredentialsFile != "" {
		c.NATSOptions = append(c.NATSOptions, nats.UserCredentials(s.NATSCredentialsFile))
	}
	if err := errors.Join(errs...); err != nil {
		return loop.Config{}, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return c, nil
}

func dur(d *metav1.Duration) time.Duration {
	if d == nil {
		return 0
	}
	return d.Duration
}
