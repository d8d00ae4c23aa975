package policy

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	loopsv1alpha1 "github.com/tenire/loop-operator/api/v1alpha1"
)

func baseSpec() loopsv1alpha1.LoopDeploymentSpec {
	return loopsv1alpha1.LoopDeploymentSpec{
		Replicas: ptr.To[int32](3),
		Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "worker", Image: "ghcr.io/tenire/loop-worker:v1"}}}},
		Queue:    loopsv1alpha1.QueueSpec{NATS: loopsv1alpha1.NATSQueueSpec{URL: "nats://nats.nats:4222"}},
	}
}

func TestRevision(t *testing.T) {
	tests := []struct {
		name   string
		change func(*loopsv1alpha1.LoopDeploymentSpec)
		same   bool
	}{
		{"an identical spec has the same revision", func(*loopsv1alpha1.LoopDeploymentSpec) {}, true},
		{"a different replica count keeps the revision", func(s *loopsv1alpha1.LoopDeploymentSpec) { s.Replicas = ptr.To[int32](7) }, true},
		{"suspending keeps the revision", func(s *loopsv1alpha1.LoopDeploymentSpec) { s.Suspend = true }, true},
		{"a different drain budget keeps the revision", func(s *loopsv1alpha1.LoopDeploymentSpec) {
			s.Drain.MaxConcurrent = ptr.To(intstr.FromInt32(4))
		}, true},
		{"a different surge keeps the revision", func(s *loopsv1alpha1.LoopDeploymentSpec) {
			s.UpdateStrategy.MaxSurge = ptr.To(intstr.FromInt32(0))
		}, true},
		{"spelling out the defaults keeps the revision", func(s *loopsv1alpha1.LoopDeploymentSpec) {
			s.Drain.Timeout = &metav1.Duration{Duration: loopsv1alpha1.DefaultDrainTimeout}
			s.Loop.Priorities = []loopsv1alpha1.PriorityClass{{Name: "default", Weight: 1}}
			s.Queue.NATS.AckWait = &metav1.Duration{Duration: 30 * time.Second}
			s.Queue.NATS.ResultRetention = &metav1.Duration{Duration: time.Hour}
		}, true},
		{"a new image changes the revision", func(s *loopsv1alpha1.LoopDeploymentSpec) {
			s.Template.Spec.Containers[0].Image = "ghcr.io/tenire/loop-worker:v2"
		}, false},
		{"a new template label changes the revision", func(s *loopsv1alpha1.LoopDeploymentSpec) {
			s.Template.Labels = map[string]string{"team": "a"}
		}, false},
		{"a different pool size changes the revision", func(s *loopsv1alpha1.LoopDeploymentSpec) { s.Loop.Pool.MaxWorkers = 4 }, false},
		{"a different queue url changes the revision", func(s *loopsv1alpha1.LoopDeploymentSpec) { s.Queue.NATS.URL = "nats://other:4222" }, false},
		{"a different drain timeout changes the revision", func(s *loopsv1alpha1.LoopDeploymentSpec) {
			s.Drain.Timeout = &metav1.Duration{Duration: time.Minute}
		}, false},
	}
	base, err := Revision(baseSpec())
	if err != nil {
		t.Fatal(err)
	}
	if len(base) != RevisionLength {
		t.Fatalf("revision %q has length %d, want %d", base, len(base), RevisionLength)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := baseSpec()
			tt.change(&spec)
			got, err := Revision(spec)
			if err != nil {
				t.Fatal(err)
			}
			if (got == base) != tt.same {
				t.Errorf("revision %q, base %q, want same=%v", got, base, tt.same)
			}
		})
	}
}
