package contract

import (
	"reflect"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	loopsv1alpha1 "github.com/tenire/loop-operator/api/v1alpha1"
)

func TestQueueOf(t *testing.T) {
	ld := func(mutate func(*loopsv1alpha1.LoopDeployment)) *loopsv1alpha1.LoopDeployment {
		l := &loopsv1alpha1.LoopDeployment{ObjectMeta: metav1.ObjectMeta{Namespace: "team.a", Name: "orders"}}
		l.Spec.Queue.NATS.URL = "nats://nats:4222"
		if mutate != nil {
			mutate(l)
		}
		return l
	}
	tests := []struct {
		name string
		ld   *loopsv1alpha1.LoopDeployment
		want Queue
	}{
		{"an empty queue spec gets the API's defaults and the derived names", ld(nil), Queue{
			Stream: "LOOP_team_a_orders", SubjectPrefix: "loops.team_a.orders",
			Priorities: []string{loopsv1alpha1.DefaultPriorityName},
			AckWait:    loopsv1alpha1.DefaultAckWait, MaxAckPending: int(loopsv1alpha1.DefaultMaxAckPending),
			Replicas: int(loopsv1alpha1.DefaultStreamReplicas), ResultRetention: loopsv1alpha1.DefaultResultRetention,
			DuplicateWindow: loopsv1alpha1.DefaultDuplicateWindow,
		}},
		{"what the spec sets is kept, a zero retention too", ld(func(l *loopsv1alpha1.LoopDeployment) {
			n := &l.Spec.Queue.NATS
			n.Stream, n.AckWait, n.MaxAckPending, n.Replicas = "ORDERS", &metav1.Duration{Duration: time.Minute}, 10, 3
			n.ResultRetention = &metav1.Duration{}
			n.DuplicateWindow = &metav1.Duration{Duration: time.Hour}
			l.Spec.Loop.Priorities = []loopsv1alpha1.PriorityClass{{Name: "high", Weight: 3}, {Name: "low"}}
		}), Queue{
			Stream: "ORDERS", SubjectPrefix: "loops.team_a.orders", Priorities: []string{"high", "low"},
			AckWait: time.Minute, MaxAckPending: 10, Replicas: 3, DuplicateWindow: time.Hour,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := QueueOf(tt.ld); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("QueueOf = %+v\nwant       %+v", got, tt.want)
			}
		})
	}
}
