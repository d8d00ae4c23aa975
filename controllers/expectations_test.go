package controllers

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/tenire/loop-operator/api/v1alpha1/contract"
)

func TestExpectations(t *testing.T) {
	key := types.NamespacedName{Namespace: "shop", Name: "orders"}
	pod := func(name string, annotations map[string]string) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: annotations}}
	}
	asked := map[string]string{contract.AnnotationDrainRequested: "x", contract.AnnotationDrainDeadline: "y"}
	tests := []struct {
		name    string
		kind    expectKind
		cache   []*corev1.Pod
		elapsed time.Duration
		want    bool
	}{
		{"a created pod the cache does not list yet holds the reconcile", expectCreated, nil, time.Second, false},
		{"a created pod the cache lists is met", expectCreated, []*corev1.Pod{pod("a", nil)}, time.Second, true},
		{"a created pod the cache never lists stops holding after the timeout", expectCreated, nil, ExpectationTimeout, true},
		{"a drain request the cache does not show yet holds the reconcile", expectDrainRequested, []*corev1.Pod{pod("a", nil)}, time.Second, false},
		{"a drain request the cache shows is met", expectDrainRequested, []*corev1.Pod{pod("a", asked)}, time.Second, true},
		{"a drain request on a pod that is gone is met", expectDrainRequested, nil, time.Second, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := clocktesting.NewFakePassiveClock(time.Date(2026, 11, 27, 6, 0, 0, 0, time.UTC))
			e := newExpectations(clk)
			if ok, _ := e.met(key, nil); !ok {
				t.Fatal("nothing expected, yet not met")
			}
			e.expect(key, "a", tt.kind)
			clk.SetTime(clk.Now().Add(tt.elapsed))
			ok, retry := e.met(key, tt.cache)
			if ok != tt.want {
				t.Fatalf("met = %v, want %v", ok, tt.want)
			}
			if !ok && retry != ExpectationTimeout-tt.elapsed {
				t.Errorf("retry = %s, want the rest of the timeout", retry)
			}
			if ok {
				if again, _ := e.met(key, nil); !again {
					t.Error("a met expectation came back")
				}
			}
		})
	}
}
