package policy

import (
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	loopsv1alpha1 "github.com/tenire/loop-operator/api/v1alpha1"
)

func TestAutoscale(t *testing.T) {
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	ago := func(d time.Duration) time.Time { return now.Add(-d) }
	spec := func(mut func(*loopsv1alpha1.AutoscalingSpec)) loopsv1alpha1.AutoscalingSpec {
		s := loopsv1alpha1.AutoscalingSpec{MaxReplicas: 8, TargetBacklogPerReplica: ptr.To[int32](100)}
		if mut != nil {
			mut(&s)
		}
		return loopsv1alpha1.AutoscalingWithDefaults(s)
	}
	minZero := func(s *loopsv1alpha1.AutoscalingSpec) { s.MinReplicas = ptr.To[int32](0) }
	demand := func(pending, inFlight int64) *Demand { return &Demand{Pending: pending, InFlight: inFlight} }
	tests := []struct {
		name string
		in   AutoscaleInput
		want int32
		held bool
	}{
		{
			name: "a queue that cannot be read holds the current count and never scales down on missing data",
			in:   AutoscaleInput{Spec: spec(nil), Current: 6, MaxWorkers: 16},
			want: 6, held: true,
		},
		{
			name: "a backlog of 1000 at 100 per replica scales one pod up by the larger of 100% and 4 pods per 15s",
			in:   AutoscaleInput{Spec: spec(nil), Current: 1, MaxWorkers: 16, Demand: demand(1000, 0)},
			want: 5,
		},
		{
			name: "scale-ups earlier in the period count against the rate policy",
			in: AutoscaleInput{Spec: spec(nil), Current: 5, MaxWorkers: 16, Demand: demand(1000, 0),
				Events: []ScaleEvent{{At: ago(5 * time.Second), From: 1, To: 5}}},
			want: 5,
		},
		{
			name: "once the period has passed the next step doubles",
			in: AutoscaleInput{Spec: spec(nil), Current: 5, MaxWorkers: 16, Demand: demand(1000, 0),
				Events: []ScaleEvent{{At: ago(20 * time.Second), From: 1, To: 5}}},
			want: 8,
		},
		{
			name: "tasks in flight count as demand, so pods are not removed under work they pulled",
			in: AutoscaleInput{Spec: spec(nil), Current: 4, MaxWorkers: 16, Demand: demand(0, 400),
				Recommendations: []Recommendation{{At: ago(10 * time.Minute), Replicas: 4}}},
			want: 4,
		},
		{
			name: "the count never exceeds maxReplicas",
			in:   AutoscaleInput{Spec: spec(nil), Current: 8, MaxWorkers: 16, Demand: demand(1_000_000, 0)},
			want: 8,
		},
		{
			name: "a recommendation within 10% of the current count keeps it",
			in: AutoscaleInput{Spec: spec(func(s *loopsv1alpha1.AutoscalingSpec) { s.MaxReplicas = 20 }),
				Current: 10, MaxWorkers: 16, Demand: demand(1050, 0)},
			want: 10,
		},
		{
			name: "a scale-down waits for the highest recommendation of the last 300s",
			in: AutoscaleInput{Spec: spec(nil), Current: 8, MaxWorkers: 16, Demand: demand(150, 0),
				Recommendations: []Recommendation{{At: ago(time.Minute), Replicas: 8}}},
			want: 8,
		},
		{
			name: "a scale-down goes ahead once the window holds no higher recommendation",
			in: AutoscaleInput{Spec: spec(nil), Current: 8, MaxWorkers: 16, Demand: demand(150, 0),
				Recommendations: []Recommendation{{At: ago(6 * time.Minute), Replicas: 8}}},
			want: 2,
		},
		{
			name: "a scale-down policy of one pod per minute removes one pod",
			in: AutoscaleInput{Spec: spec(func(s *loopsv1alpha1.AutoscalingSpec) {
				s.Behavior = &loopsv1alpha1.AutoscalingBehavior{ScaleDown: &loopsv1alpha1.ScalingRules{
					StabilizationWindowSeconds: ptr.To[int32](0),
					Policies:                   []loopsv1alpha1.ScalingPolicy{{Type: loopsv1alpha1.PodsScalingPolicy, Value: 1, PeriodSeconds: 60}},
				}}
			}), Current: 5, MaxWorkers: 16, Demand: demand(0, 0)},
			want: 4,
		},
		{
			name: "a disabled scale-down keeps the count",
			in: AutoscaleInput{Spec: spec(func(s *loopsv1alpha1.AutoscalingSpec) {
				s.Behavior = &loopsv1alpha1.AutoscalingBehavior{ScaleDown: &loopsv1alpha1.ScalingRules{
					StabilizationWindowSeconds: ptr.To[int32](0), SelectPolicy: ptr.To(loopsv1alpha1.SelectDisabled),
				}}
			}), Current: 5, MaxWorkers: 16, Demand: demand(0, 0)},
			want: 5,
		},
		{
			name: "an empty queue brings the loop down to minReplicas, not below",
			in:   AutoscaleInput{Spec: spec(nil), Current: 3, MaxWorkers: 16, Demand: demand(0, 0)},
			want: 1,
		},
		{
			name: "with minReplicas 0 an empty queue keeps one pod until scaleToZeroAfter has passed",
			in:   AutoscaleInput{Spec: spec(minZero), Current: 1, MaxWorkers: 16, Demand: demand(0, 0), LastActive: ago(time.Minute)},
			want: 1,
		},
		{
			name: "with minReplicas 0 a queue empty for scaleToZeroAfter goes to zero",
			in:   AutoscaleInput{Spec: spec(minZero), Current: 1, MaxWorkers: 16, Demand: demand(0, 0), LastActive: ago(6 * time.Minute)},
			want: 0,
		},
		{
			name: "one pending task brings a loop at zero back to one pod at once",
			in: AutoscaleInput{Spec: spec(minZero), Current: 0, MaxWorkers: 16, Demand: demand(1, 0),
				Recommendations: []Recommendation{{At: ago(time.Second), Replicas: 0}}},
			want: 1,
		},
		{
			name: "a loop at zero with an empty queue stays at zero",
			in:   AutoscaleInput{Spec: spec(minZero), Current: 0, MaxWorkers: 16, Demand: demand(0, 0), LastActive: ago(time.Hour)},
			want: 0,
		},
		{
			name: "the in-flight target sizes the loop by its pool: 40 in flight at half of 16 workers is 5 pods",
			in: AutoscaleInput{Spec: spec(func(s *loopsv1alpha1.AutoscalingSpec) {
				s.TargetBacklogPerReplica, s.TargetInFlightUtilization = nil, ptr.To[int32](50)
			}), Current: 1, MaxWorkers: 16, Demand: demand(0, 40)},
			want: 5,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Autoscale(tt.in, now)
			if got.Replicas != tt.want || got.Held != tt.held {
				t.Errorf("Autoscale = %d (held %v, %q), want %d (held %v)", got.Replicas, got.Held, got.Reason, tt.want, tt.held)
			}
		})
	}
}

// TestABacklogHoveringAtTheThresholdDoesNotFlap runs the decision every 10s
// for 20 minutes over a backlog that swings around 500 tasks (4 to 6 pods'
// worth at 100 per replica) and counts the changes of the replica count.
func TestABacklogHoveringAtTheThresholdDoesNotFlap(t *testing.T) {
	spec := loopsv1alpha1.AutoscalingWithDefaults(loopsv1alpha1.AutoscalingSpec{MaxReplicas: 10, TargetBacklogPerReplica: ptr.To[int32](100)})
	start := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	current, changes, downs := int32(5), 0, 0
	var recs []Recommendation
	var events []ScaleEvent
	for i := range 120 {
		now := start.Add(time.Duration(i) * 10 * time.Second)
		pending := int64(420)
		if i%2 == 0 {
			pending = 580
		}
		d := Autoscale(AutoscaleInput{Spec: spec, Current: current, MaxWorkers: 16, Demand: &Demand{Pending: pending},
			Recommendations: recs, Events: events}, now)
		recs = append(recs, Recommendation{At: now, Replicas: d.Recommendation})
		if d.Replicas != current {
			changes++
			if d.Replicas < current {
				downs++
			}
			events = append(events, ScaleEvent{At: now, From: current, To: d.Replicas})
			current = d.Replicas
		}
	}
	// One step up to the highest need (6) is expected; a scale-down
	// would need 300s of lower recommendations, which never come.
	if changes > 1 || downs > 0 {
		t.Errorf("the count changed %d times (%d down) over 20 minutes of a hovering backlog, want at most one step up", changes, downs)
	}
}

func TestQueueStatusRecheck(t *testing.T) {
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	status := func(pending int64, age time.Duration) *loopsv1alpha1.QueueStatus {
		return &loopsv1alpha1.QueueStatus{Stream: "S", Pending: pending, ObservedTime: &metav1.Time{Time: now.Add(-age)},
			Priorities: []loopsv1alpha1.PriorityQueueStatus{{Name: "a"}}}
	}
	tests := []struct {
		name       string
		prev, next *loopsv1alpha1.QueueStatus
		after      time.Duration
		ok         bool
	}{
		{"a backlog that moved by more than a fifth comes back when the minimum period ends", status(6, 10*time.Second), status(35, 0), 20 * time.Second, true},
		{"a small drift comes back when the status is a minute old", status(100, 10*time.Second), status(97, 0), 50 * time.Second, true},
		{"the same figures never come back", status(100, 10*time.Second), status(100, 0), 0, false},
		{"figures due now need no coming back", status(6, time.Minute), status(35, 0), 0, false},
		{"no status yet needs no coming back", nil, status(35, 0), 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			after, ok := QueueStatusRecheck(tt.prev, tt.next, now)
			if after != tt.after || ok != tt.ok {
				t.Errorf("QueueStatusRecheck = %s, %v; want %s, %v", after, ok, tt.after, tt.ok)
			}
		})
	}
}

func TestQueueStatusDue(t *testing.T) {
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	status := func(pending, inFlight int64, age time.Duration, prios ...string) *loopsv1alpha1.QueueStatus {
		q := &loopsv1alpha1.QueueStatus{Stream: "S", Pending: pending, InFlight: inFlight, ObservedTime: &metav1.Time{Time: now.Add(-age)}}
		for _, p := range prios {
			q.Priorities = append(q.Priorities, loopsv1alpha1.PriorityQueueStatus{Name: p})
		}
		return q
	}
	tests := []struct {
		name       string
		prev, next *loopsv1alpha1.QueueStatus
		want       bool
	}{
		{"the first figures are written", nil, status(0, 0, 0, "a"), true},
		{"an unchanged backlog is never rewritten, however old", status(500, 8, time.Hour, "a"), status(500, 8, 0, "a"), false},
		{"a queue getting its first task is written at once", status(0, 0, time.Second, "a"), status(1, 0, 0, "a"), true},
		{"a queue going empty is written at once", status(3, 1, time.Second, "a"), status(0, 0, 0, "a"), true},
		{"a priority class appearing is written at once", status(5, 0, time.Second, "a"), status(5, 0, 0, "a", "b"), true},
		{"a backlog that moved by half waits 30s since the last write", status(1000, 0, 10*time.Second, "a"), status(500, 0, 0, "a"), false},
		{"a backlog that moved by half is written after 30s", status(1000, 0, 31*time.Second, "a"), status(500, 0, 0, "a"), true},
		{"a small drift waits a minute", status(1000, 0, 45*time.Second, "a"), status(990, 0, 0, "a"), false},
		{"a small drift is written after a minute", status(1000, 0, 61*time.Second, "a"), status(990, 0, 0, "a"), true},
		{"an unchanged oldest task read back at the API's second precision is not a change", func() *loopsv1alpha1.QueueStatus {
			q := status(500, 8, time.Hour, "a")
			q.OldestTaskTime = &metav1.Time{Time: now.Add(-10 * time.Minute).Truncate(time.Second)} // as read from the API server
			return q
		}(), func() *loopsv1alpha1.QueueStatus {
			q := status(500, 8, 0, "a")
			q.OldestTaskTime = &metav1.Time{Time: now.Add(-10*time.Minute + 123456789*time.Nanosecond)} // as JetStream reports it
			return q
		}(), false},
		{"new dead letters are written at once", status(5, 0, time.Second, "a"), func() *loopsv1alpha1.QueueStatus {
			q := status(5, 0, 0, "a")
			q.DeadLetters = 1
			return q
		}(), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := QueueStatusDue(tt.prev, tt.next, now); got != tt.want {
				t.Errorf("QueueStatusDue = %v, want %v", got, tt.want)
			}
		})
	}
}
