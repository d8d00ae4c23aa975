package controllers

import (
	"errors"
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	loopsv1alpha1 "github.com/tenire/loop-operator/api/v1alpha1"
	"github.com/tenire/loop-operator/api/v1alpha1/contract"
	"github.com/tenire/loop-operator/controllers/stream"
)

// statusPod is a pod for status tests: rev is its revision, and flags
// among "ready", "draining", "terminating", "failed", "scheduled" (on a
// node; its worker announced nothing, so it may hold tasks).
func statusPod(i int, rev string, flags ...string) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{
		Name:              fmt.Sprintf("p%d", i),
		Labels:            map[string]string{loopsv1alpha1.LabelRevision: rev},
		CreationTimestamp: metav1.NewTime(time.Date(2026, 11, 27, 6, i, 0, 0, time.UTC)),
	}}
	for _, f := range flags {
		switch f {
		case "ready":
			p.Status.Conditions = append(p.Status.Conditions, corev1.PodCondition{Type: corev1.PodReady, Status: corev1.ConditionTrue})
		case "draining":
			p.Annotations = map[string]string{contract.AnnotationDrainRequested: "x", contract.AnnotationDrainDeadline: "y"}
		case "terminating":
			p.DeletionTimestamp = &metav1.Time{Time: time.Now()}
		case "failed":
			p.Status.Phase = corev1.PodFailed
		case "scheduled":
			p.Spec.NodeName = "node-1"
		}
	}
	return p
}

func TestComputeStatus(t *testing.T) {
	type want struct {
		replicas, ready, available, updated, draining int32
		available2, progressing, draining2, degraded  string
	}
	tests := []struct {
		name     string
		replicas int32
		suspend  bool
		pods     []*corev1.Pod
		edit     func(*scope)
		want     want
	}{
		{"ready pods of the current revision are available and complete", 2, false,
			[]*corev1.Pod{statusPod(0, "r1", "ready"), statusPod(1, "r1", "ready")}, nil,
			want{2, 2, 2, 2, 0, "True/MinimumReplicasAvailable", "False/Complete", "False/NoDrains", "False/AsExpected"}},
		{"a draining pod is ready but neither available nor updated", 2, false,
			[]*corev1.Pod{statusPod(0, "r1", "ready"), statusPod(1, "r1", "ready"), statusPod(2, "r1", "ready", "draining")}, nil,
			want{3, 3, 2, 2, 1, "True/MinimumReplicasAvailable", "True/ScalingDown", "True/DrainInProgress", "False/AsExpected"}},
		{"a terminating pod is no replica but still drains", 2, false,
			[]*corev1.Pod{statusPod(0, "r1", "ready"), statusPod(1, "r1", "ready"), statusPod(2, "r1", "scheduled", "terminating")}, nil,
			want{2, 2, 2, 2, 1, "True/MinimumReplicasAvailable", "True/ScalingDown", "True/DrainInProgress", "False/AsExpected"}},
		{"a terminating pod that holds nothing is not draining", 2, false,
			[]*corev1.Pod{statusPod(0, "r1", "ready"), statusPod(1, "r1", "ready"), statusPod(2, "r1", "scheduled", "terminating"), statusPod(3, "r1", "terminating")},
			func(s *scope) { s.loads = map[string]stream.WorkerLoad{"p2": {InFlight: 0}} },
			want{2, 2, 2, 2, 0, "True/MinimumReplicasAvailable", "False/Complete", "False/NoDrains", "False/AsExpected"}},
		{"a terminating pod whose worker ended idle stays empty after its announcement is stale", 2, false,
			[]*corev1.Pod{statusPod(0, "r1", "ready"), statusPod(1, "r1", "ready"), statusPod(2, "r1", "scheduled", "terminating")},
			func(s *scope) { s.loads = map[string]stream.WorkerLoad{"p2": {InFlight: 0, Stale: true}} },
			want{2, 2, 2, 2, 0, "True/MinimumReplicasAvailable", "False/Complete", "False/NoDrains", "False/AsExpected"}},
		{"a terminating pod whose last word was a task in flight drains, however old that word", 2, false,
			[]*corev1.Pod{statusPod(0, "r1", "ready"), statusPod(1, "r1", "ready"), statusPod(2, "r1", "scheduled", "terminating")},
			func(s *scope) { s.loads = map[string]stream.WorkerLoad{"p2": {InFlight: 1, Stale: true}} },
			want{2, 2, 2, 2, 1, "True/MinimumReplicasAvailable", "True/ScalingDown", "True/DrainInProgress", "False/AsExpected"}},
		{"a terminating pod asked to drain drains whatever it announced", 2, false,
			[]*corev1.Pod{statusPod(0, "r1", "ready"), statusPod(1, "r1", "ready"), statusPod(2, "r1", "scheduled", "draining", "terminating")},
			func(s *scope) { s.loads = map[string]stream.WorkerLoad{"p2": {InFlight: 0}} },
			want{2, 2, 2, 2, 1, "True/MinimumReplicasAvailable", "True/ScalingDown", "True/DrainInProgress", "False/AsExpected"}},
		{"a pod of another revision is a rolling update", 2, false,
			[]*corev1.Pod{statusPod(0, "r0", "ready"), statusPod(1, "r1", "ready")}, nil,
			want{2, 2, 2, 1, 0, "True/MinimumReplicasAvailable", "True/RollingUpdate", "False/NoDrains", "False/AsExpected"}},
		{"too few ready pods is unavailable", 4, false,
			[]*corev1.Pod{statusPod(0, "r1", "ready"), statusPod(1, "r1", "ready"), statusPod(2, "r1"), statusPod(3, "r1")}, nil,
			want{4, 2, 2, 4, 0, "False/MinimumReplicasUnavailable", "False/Complete", "False/NoDrains", "False/AsExpected"}},
		{"missing pods are a scale-up", 3, false,
			[]*corev1.Pod{statusPod(0, "r1", "ready")}, nil,
			want{1, 1, 1, 1, 0, "False/MinimumReplicasUnavailable", "True/ScalingUp", "False/NoDrains", "False/AsExpected"}},
		{"a suspended loop with no pods is scaled to zero and complete", 3, true, nil, nil,
			want{0, 0, 0, 0, 0, "False/ScaledToZero", "False/Complete", "False/NoDrains", "False/AsExpected"}},
		{"a failed pod is no replica and degrades", 1, false,
			[]*corev1.Pod{statusPod(0, "r1", "ready"), statusPod(1, "r1", "failed")}, func(s *scope) { s.failing = []string{"p1"} },
			want{1, 1, 1, 1, 0, "True/MinimumReplicasAvailable", "False/Complete", "False/NoDrains", "True/PodsFailing"}},
		{"a pod creation that failed degrades first", 1, false, nil, func(s *scope) {
			s.createErr = errors.New("quota exceeded")
			s.failing = []string{"p9"}
		}, want{0, 0, 0, 0, 0, "False/MinimumReplicasUnavailable", "True/ScalingUp", "False/NoDrains", "True/PodCreateFailed"}},
		{"a pod deleted by this reconcile is not counted", 1, false,
			[]*corev1.Pod{statusPod(0, "r1", "ready"), statusPod(1, "r1", "ready", "draining")}, func(s *scope) { s.gone["p1"] = true },
			want{1, 1, 1, 1, 0, "True/MinimumReplicasAvailable", "False/Complete", "False/NoDrains", "False/AsExpected"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ld := &loopsv1alpha1.LoopDeployment{ObjectMeta: metav1.ObjectMeta{Name: "orders", Generation: 3}}
			ld.Spec.Suspend = tt.suspend
			s := &scope{ld: ld, revision: "r1", replicas: tt.replicas, maxConcurrent: 1, pods: tt.pods, gone: map[string]bool{}}
			if tt.suspend {
				s.replicas = 0
			}
			if tt.edit != nil {
				tt.edit(s)
			}
			r := &LoopDeploymentReconciler{}
			r.computeStatus(s)
			st := ld.Status
			got := want{st.Replicas, st.ReadyReplicas, st.AvailableReplicas, st.UpdatedReplicas, st.DrainingReplicas,
				reasonOf(ld, loopsv1alpha1.ConditionAvailable), reasonOf(ld, loopsv1alpha1.ConditionProgressing),
				reasonOf(ld, loopsv1alpha1.ConditionDraining), reasonOf(ld, loopsv1alpha1.ConditionDegraded)}
			if got != tt.want {
				t.Errorf("status =\n %+v\nwant\n %+v", got, tt.want)
			}
			if st.ObservedGeneration != 3 || st.Selector != "loops.tenire.io/name=orders" || st.UpdateRevision != "r1" {
				t.Errorf("observedGeneration %d, selector %q, updateRevision %q", st.ObservedGeneration, st.Selector, st.UpdateRevision)
			}
		})
	}
}

func reasonOf(ld *loopsv1alpha1.LoopDeployment, t string) string {
	c := meta.FindStatusCondition(ld.Status.Conditions, t)
	if c == nil {
		return ""
	}
	return string(c.Status) + "/" + c.Reason
}

func TestDegradedDrainTimedOutStaysUntilAWorkerReports(t *testing.T) {
	ld := &loopsv1alpha1.LoopDeployment{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "orders", Generation: 1}}
	r := &LoopDeploymentReconciler{}
	key := types.NamespacedName{Namespace: "shop", Name: "orders"}
	pass := func(edit func(*scope)) string {
		// Each pass starts from a stale copy: the cache has not shown the
		// previous status.
		s := &scope{ld: ld.DeepCopy(), key: key, revision: "r1", replicas: 1, maxConcurrent: 1, gone: map[string]bool{}}
		s.ld.Status = loopsv1alpha1.LoopDeploymentStatus{}
		if edit != nil {
			edit(s)
		}
		r.computeStatus(s)
		return reasonOf(s.ld, loopsv1alpha1.ConditionDegraded)
	}
	steps := []struct {
		name string
		edit func(*scope)
		want string
	}{
		{"a drain times out", func(s *scope) { s.timedOut = []string{"p1"} }, "True/DrainTimedOut"},
		{"nothing happens", nil, "True/DrainTimedOut"},
		{"a worker reports Drained", func(s *scope) { s.reportedDrain = true }, "False/AsExpected"},
		{"nothing happens again", nil, "False/AsExpected"},
		{"another drain times out", func(s *scope) { s.timedOut = []string{"p2"} }, "True/DrainTimedOut"},
		{"the spec changes", func(s *scope) { s.ld.Generation = 2 }, "False/AsExpected"},
	}
	for _, st := range steps {
		if got := pass(st.edit); got != st.want {
			t.Fatalf("after %q: Degraded = %s, want %s", st.name, got, st.want)
		}
	}
}

func TestCrashLooping(t *testing.T) {
	waiting := func(reason string) *corev1.Pod {
		return &corev1.Pod{Status: corev1.PodStatus{ContainerStatuses: []corev1.ContainerStatus{
			{Name: "worker", State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason}}},
		}}}
	}
	tests := []struct {
		name string
		pod  *corev1.Pod
		want bool
	}{
		{"a container in CrashLoopBackOff is failing", waiting("CrashLoopBackOff"), true},
		{"an image that cannot be pulled is failing", waiting("ImagePullBackOff"), true},
		{"a container still being created is not failing", waiting("ContainerCreating"), false},
		{"a running pod is not failing", &corev1.Pod{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := crashLooping(tt.pod); got != tt.want {
				t.Errorf("crashLooping = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestNameListKeepsMessagesShort(t *testing.T) {
	for _, tt := range []struct {
		n    int
		want string
	}{
		{0, ""},
		{2, "p0, p1"},
		{10, "p0, p1, p2, p3, p4, p5, p6, p7, p8, p9"},
		{200, "p0, p1, p2, p3, p4, p5, p6, p7, p8, p9 and 190 more"},
	} {
		names := make([]string, tt.n)
		for i := range names {
			names[i] = fmt.Sprintf("p%d", i)
		}
		if got := nameList(names); got != tt.want {
			t.Errorf("nameList(%d names) = %q, want %q", tt.n, got, tt.want)
		}
	}
}

// TestAServingPodIsIdleOnlyByAFreshAnnouncement: the plan deletes a
// serving pod without a drain only on an announcement within
// announcementTTL; a stale one (a hung worker, or one cut off from NATS)
// is as good as none, and the pod is drained.
func TestAServingPodIsIdleOnlyByAFreshAnnouncement(t *testing.T) {
	s := &scope{revision: "r1", loads: map[string]stream.WorkerLoad{"p0": {InFlight: 0, Stale: true}, "p1": {InFlight: 0}}}
	if c := s.candidate(statusPod(0, "r1", "scheduled", "ready")); c.Idle || c.InFlight != -1 || c.HoldsNoTask() {
		t.Errorf("a pod whose worker's last announcement is stale: %+v, want not idle, in flight unknown", c)
	}
	if c := s.candidate(statusPod(1, "r1", "scheduled", "ready")); !c.Idle || c.InFlight != 0 || !c.HoldsNoTask() {
		t.Errorf("a pod whose worker just announced nothing in flight: %+v, want idle", c)
	}
}
