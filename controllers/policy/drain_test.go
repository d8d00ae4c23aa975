package policy

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/tenire/loop-operator/api/v1alpha1/contract"
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
		contract.AnnotationDrainRequested: requested.Format(time.RFC3339),
		contract.AnnotationDrainDeadline:  deadline.Format(time.RFC3339),
	}
}

func terminating(p *corev1.Pod) *corev1.Pod {
	p.DeletionTimestamp = &metav1.Time{Time: t0}
	return p
}

func drained(status corev1.ConditionStatus, reason string) corev1.PodCondition {
	return corev1.PodCondition{Type: contract.PodConditionDrained, Status: status, Reason: reason, Message: "finished 3, handed back 0"}
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
			podWith(asked(t0, t0.Add(time.Minute)), drained(corev1.ConditionTrue, contract.DrainedReasonCompleted)), t0.Add(time.Second), DrainDrained},
		{"a pod that reports Drained after its deadline is drained, not timed out",
			podWith(asked(t0, t0.Add(time.Minute)), drained(corev1.ConditionTrue, contract.DrainedReasonDeadlineExceeded)), t0.Add(time.Hour), DrainDrained},
		{"a Drained condition that is False does not count",
			podWith(asked(t0, t0.Add(time.Minute)), drained(corev1.ConditionFalse, "")), t0.Add(time.Second), DrainInProgress},
		{"a pod that reports Drained without being asked is ignored",
			podWith(nil, drained(corev1.ConditionTrue, contract.DrainedReasonCompleted)), t0, DrainUnrequested},
		{"a terminating pod that reports Drained without being asked is drained",
			terminating(podWith(nil, drained(corev1.ConditionTrue, contract.DrainedReasonCompleted))), t0, DrainDrained},
		{"a pod with an unreadable request that reports Drained is drained",
			podWith(map[string]string{contract.AnnotationDrainDeadline: "soon"}, drained(corev1.ConditionTrue, contract.DrainedReasonCompleted)), t0, DrainDrained},
		{"a pod with other annotations that reports Drained is ignored",
			podWith(map[string]string{"example.com/drain": "yes"}, drained(corev1.ConditionTrue, contract.DrainedReasonCompleted)), t0, DrainUnrequested},
		{"a fresh request as the operator writes it is in progress",
			podWith(contract.DrainAnnotations(t0.Add(300*time.Millisecond), time.Minute-time.Second)), t0.Add(time.Second), DrainInProgress},
		{"a request without a deadline is invalid",
			podWith(map[string]string{contract.AnnotationDrainRequested: t0.Format(time.RFC3339)}), t0, DrainInvalid},
		{"a deadline that is not an RFC 3339 time is invalid",
			podWith(map[string]string{contract.AnnotationDrainRequested: t0.Format(time.RFC3339), contract.AnnotationDrainDeadline: "in five minutes"}), t0, DrainInvalid},
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
