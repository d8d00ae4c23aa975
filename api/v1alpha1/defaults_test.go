package v1alpha1_test

import (
	"fmt"
	"os"
	"sort"
	"strings"
	"testing"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	loopsv1alpha1 "github.com/tenire/loop-operator/api/v1alpha1"
)

// TestCRDDefaultsAreTheGoDefaults reads the generated CRD and checks that
// every +kubebuilder:default marker equals its Go constant, and that every
// constant has its marker. Left out: empty objects (they only make the API
// server descend into them) and the defaults of Kubernetes' own types (the
// pod template, LocalObjectReference's empty name).
func TestCRDDefaultsAreTheGoDefaults(t *testing.T) {
	want := map[string]any{
		"spec.replicas":                             loopsv1alpha1.DefaultReplicas,
		"spec.loop.pool.minWorkers":                 loopsv1alpha1.DefaultMinWorkers,
		"spec.loop.pool.maxWorkers":                 loopsv1alpha1.DefaultMaxWorkers,
		"spec.loop.pool.idleTimeout":                loopsv1alpha1.DefaultIdleTimeout,
		"spec.loop.priorities[].weight":             loopsv1alpha1.DefaultPriorityWeight,
		"spec.loop.scheduling":                      string(loopsv1alpha1.DefaultScheduling),
		"spec.loop.taskTimeout":                     loopsv1alpha1.DefaultTaskTimeout,
		"spec.loop.retry.maxAttempts":               loopsv1alpha1.DefaultMaxAttempts,
		"spec.loop.retry.initialBackoff":            loopsv1alpha1.DefaultInitialBackoff,
		"spec.loop.retry.maxBackoff":                loopsv1alpha1.DefaultMaxBackoff,
		"spec.loop.circuitBreaker.failureThreshold": loopsv1alpha1.DefaultFailureThreshold,
		"spec.loop.circuitBreaker.cooldown":         loopsv1alpha1.DefaultBreakerCooldown,
		"spec.queue.nats.ackWait":                   loopsv1alpha1.DefaultAckWait,
		"spec.queue.nats.maxAckPending":             loopsv1alpha1.DefaultMaxAckPending,
		"spec.queue.nats.resultRetention":           loopsv1alpha1.DefaultResultRetention,
		"spec.queue.nats.duplicateWindow":           loopsv1alpha1.DefaultDuplicateWindow,
		"spec.queue.nats.replicas":                  loopsv1alpha1.DefaultStreamReplicas,
		"spec.drain.timeout":                        loopsv1alpha1.DefaultDrainTimeout,
		"spec.drain.maxConcurrent":                  loopsv1alpha1.DefaultMaxConcurrent,
		"spec.updateStrategy.maxSurge":              loopsv1alpha1.DefaultMaxSurge,
		"spec.queue.nats.deletionPolicy":            string(loopsv1alpha1.DefaultDeletionPolicy),
		"spec.autoscaling.minReplicas":              loopsv1alpha1.DefaultAutoscalingMinReplicas,
		"spec.autoscaling.scaleToZeroAfter":         loopsv1alpha1.DefaultScaleToZeroAfter,
	}
	data, err := os.ReadFile("../../config/crd/bases/loops.tenire.io_loopdeployments.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var crd apiextensionsv1.CustomResourceDefinition
	if err := yaml.UnmarshalStrict(data, &crd); err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	var walk func(path string, s *apiextensionsv1.JSONSchemaProps)
	walk = func(path string, s *apiextensionsv1.JSONSchemaProps) {
		if path == "spec.template" {
			return
		}
		if s.Default != nil && string(s.Default.Raw) != "{}" && string(s.Default.Raw) != `""` {
			got[path] = string(s.Default.Raw)
		}
		for name, p := range s.Properties {
			walk(strings.TrimPrefix(path+"."+name, "."), &p)
		}
		if s.Items != nil && s.Items.Schema != nil {
			walk(path+"[]", s.Items.Schema)
		}
	}
	for _, v := range crd.Spec.Versions {
		if v.Name == loopsv1alpha1.GroupVersion.Version {
			walk("", v.Schema.OpenAPIV3Schema)
		}
	}
	for path, w := range want {
		raw, ok := got[path]
		if !ok {
			t.Errorf("%s: the CRD has no default, Go has %v", path, w)
			continue
		}
		var v any
		if err := yaml.Unmarshal([]byte(raw), &v); err != nil {
			t.Errorf("%s: default %s: %v", path, raw, err)
			continue
		}
		if !sameDefault(v, w) {
			t.Errorf("%s: the CRD's default is %s, Go's is %v", path, raw, w)
		}
	}
	var extra []string
	for path := range got {
		if _, ok := want[path]; !ok {
			extra = append(extra, path)
		}
	}
	sort.Strings(extra)
	if len(extra) > 0 {
		t.Errorf("defaults in the CRD without a Go constant checked here: %v", extra)
	}
}

func sameDefault(crd, goValue any) bool {
	switch w := goValue.(type) {
	case time.Duration:
		s, ok := crd.(string)
		d, err := time.ParseDuration(s)
		return ok && err == nil && d == w
	case int32:
		f, ok := crd.(float64)
		return ok && f == float64(w)
	default:
		return fmt.Sprint(crd) == fmt.Sprint(w)
	}
}

func TestWithDefaultsKeepsWhatIsSet(t *testing.T) {
	var spec loopsv1alpha1.LoopDeploymentSpec
	spec.Loop.Pool.MinWorkers = ptr.To[int32](0)
	spec.UpdateStrategy.MaxSurge = ptr.To(intstr.FromInt32(0))
	got := loopsv1alpha1.WithDefaults(spec)
	if *got.Loop.Pool.MinWorkers != 0 || got.UpdateStrategy.MaxSurge.IntValue() != 0 {
		t.Errorf("explicit zeros were replaced: minWorkers %d, maxSurge %s", *got.Loop.Pool.MinWorkers, got.UpdateStrategy.MaxSurge.String())
	}
	if got.Loop.Pool.MaxWorkers != loopsv1alpha1.DefaultMaxWorkers || got.Drain.Timeout.Duration != loopsv1alpha1.DefaultDrainTimeout ||
		got.Drain.MaxConcurrent.String() != loopsv1alpha1.DefaultMaxConcurrent {
		t.Errorf("defaults not applied: %+v", got)
	}
	if spec.Loop.Pool.MaxWorkers != 0 {
		t.Error("WithDefaults changed its argument")
	}
}
