package policy

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clocktesting "k8s.io/utils/clock/testing"

	loopsv1alpha1 "github.com/tenire/loop-operator/api/v1alpha1"
)

var t0 = time.Date(2026, 11, 27, 6, 0, 0, 0, time.UTC)

func podWith(annotations map[string]string, conds ...corev1.PodCondition) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "p", Annotations: annotations},
		Status:     corev1.PodStatus{Conditions: conds},
	}
}

func asked(requested, deadline time.Time) map[string]string {
	return map[string]string{
		loopsv1alpha1.AnnotationDrainRequested: requested.Format(time.RFC3339),
		loopsv1alpha1.AnnotationDrainDeadline:  deadline.Format(time.RFC3339),
	}
}

func drained(status corev1.ConditionStatus, reason string) corev1.PodCondition {
	return corev1.PodCondition{Type: loopsv1alpha1.PodConditionDrained, Status: status, Reason: reason, Message: "finished 3, handed back 0"}
}

func TestDrainOf(t *testing.T) {
	const grace = 15 * time.Second
	tests := []struct {
		name string
		pod  *corev1.Pod
		now  time.Time
		want DrainPhase
	}{
		{"a pod without annotations is not draining", podWith(nil), t0, DrainNotRequested},
		{"a pod asked to drain before its deadline is in progress",
			podWith(asked(t0, t0.Add(time.Minute))), t0.Add(30 * time.Second), DrainInProgress},
		{"a pod past its deadline but within the grace is still in progress",
			podWith(asked(t0, t0.Add(time.Minute))), t0.Add(time.Minute + grace), DrainInProgress},
		{"a pod past its deadline and the grace has timed out",
			podWith(asked(t0, t0.Add(time.Minute))), t0.Add(time.Minute + grace + time.Second), DrainTimedOut},
		{"a pod that reports Drained is drained",
			podWith(asked(t0, t0.Add(time.Minute)), drained(corev1.ConditionTrue, loopsv1alpha1.DrainedReasonCompleted)), t0.Add(time.Second), DrainDrained},
		{"a pod that reports Drained after its deadline is drained, not timed out",
			podWith(asked(t0, t0.Add(time.Minute)), drained(corev1.ConditionTrue, loopsv1alpha1.DrainedReasonDeadlineExceeded)), t0.Add(time.Hour), DrainDrained},
		{"a Drained condition that is False does not count",
			podWith(asked(t0, t0.Add(time.Minute)), drained(corev1.ConditionFalse, "")), t0.Add(time.Second), DrainInProgress},
		{"a pod that reports Drained without being asked is drained",
			podWith(nil, drained(corev1.ConditionTrue, loopsv1alpha1.DrainedReasonCompleted)), t0, DrainDrained},
		{"a request without a deadline is invalid",
			podWith(map[string]string{loopsv1alpha1.AnnotationDrainRequested: t0.Format(time.RFC3339)}), t0, DrainInvalid},
		{"a deadline that is not an RFC 3339 time is invalid",
			podWith(map[string]string{loopsv1alpha1.AnnotationDrainRequested: t0.Format(time.RFC3339), loopsv1alpha1.AnnotationDrainDeadline: "in five minutes"}), t0, DrainInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := DrainOf(tt.pod, clocktesting.NewFakePassiveClock(tt.now), grace)
			if got.Phase != tt.want {
				t.Errorf("phase = %s, want %s (%+v)", got.Phase, tt.want, got)
			}
			if got.Phase == DrainInProgress && !got.GiveUpAt.Equal(t0.Add(time.Minute+grace)) {
				t.Errorf("give up at %s, want deadline plus grace", got.GiveUpAt)
			}
		})
	}
}

func TestDrainAnnotations(t *testing.T) {
	tests := []struct {
		name         string
		now          time.Time
		timeout      time.Duration
		wantDeadline time.Time
	}{
		{"a whole-second time gives the exact deadline", t0, 5 * time.Minute, t0.Add(5 * time.Minute)},
		{"a fractional time rounds the deadline up, never earlier than asked",
			t0.Add(300 * time.Millisecond), 2 * time.Second, t0.Add(3 * time.Second)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := DrainAnnotations(clocktesting.NewFakePassiveClock(tt.now), tt.timeout)
			if a[loopsv1alpha1.AnnotationDrainDeadline] != tt.wantDeadline.Format(time.RFC3339) {
				t.Errorf("deadline = %s, want %s", a[loopsv1alpha1.AnnotationDrainDeadline], tt.wantDeadline.Format(time.RFC3339))
			}
			requested, _ := readAnnotations(podWith(a))
			if !requested.Equal(tt.now) {
				t.Errorf("the request reads back as %s, want %s to the nanosecond", requested, tt.now)
			}
			d := DrainOf(podWith(a), clocktesting.NewFakePassiveClock(tt.now), 0)
			if d.Phase != DrainInProgress {
				t.Errorf("a fresh request reads back as %s", d.Phase)
			}
		})
	}
}
