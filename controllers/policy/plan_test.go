package policy

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
)

// pods returns n ready, scheduled pods named prefix-0.., the first the
// oldest.
func pods(prefix string, n int, updated, ready bool) []Candidate {
	var out []Candidate
	for i := range n {
		out = append(out, Candidate{
			Name: fmt.Sprintf("%s-%d", prefix, i), Scheduled: true, Ready: ready, Updated: updated,
			Created: t0.Add(time.Duration(i) * time.Minute),
		})
	}
	return out
}

func TestPlanPods(t *testing.T) {
	tests := []struct {
		name       string
		in         PlanInput
		wantCreate int32
		wantDrain  []string
	}{
		{"missing pods are created",
			PlanInput{Replicas: 3, MaxConcurrent: 1, Pods: pods("new", 1, true, true)}, 2, nil},
		{"the right count of updated pods needs nothing",
			PlanInput{Replicas: 3, MaxConcurrent: 1, Pods: pods("new", 3, true, true)}, 0, nil},
		{"surplus pods are drained newest first",
			PlanInput{Replicas: 1, MaxConcurrent: 5, Pods: pods("new", 3, true, true)}, 0, []string{"new-2", "new-1"}},
		{"a scale-down drains no more pods than the free slots",
			PlanInput{Replicas: 0, MaxConcurrent: 2, Draining: 1, Pods: pods("new", 4, true, true)}, 0, []string{"new-3"}},
		{"a scale-down with every slot taken drains nothing",
			PlanInput{Replicas: 0, MaxConcurrent: 2, Draining: 2, Pods: pods("new", 4, true, true)}, 0, nil},
		{"a pod that is not ready is drained before ready ones",
			PlanInput{Replicas: 2, MaxConcurrent: 1, Pods: append(pods("new", 2, true, true), Candidate{Name: "sick", Scheduled: true, Updated: true})},
			0, []string{"sick"}},
		{"a draining pod's replacement is created while it drains",
			PlanInput{Replicas: 3, MaxConcurrent: 1, Draining: 1, Pods: pods("new", 2, true, true)}, 1, nil},
		{"a rolling update first surges new pods and keeps every old one while they start",
			PlanInput{Replicas: 4, MaxSurge: 1, MaxConcurrent: 2, Pods: pods("old", 4, false, true)}, 1, nil},
		{"a rolling update drains an old pod once a new one is ready",
			PlanInput{Replicas: 4, MaxSurge: 1, MaxConcurrent: 2, Pods: append(pods("old", 4, false, true), pods("new", 1, true, true)...)},
			0, []string{"old-3"}},
		{"a rolling update does not drain ready old pods for new ones that are not ready",
			PlanInput{Replicas: 4, MaxSurge: 2, MaxConcurrent: 2, Pods: append(pods("old", 4, false, true), pods("new", 2, true, false)...)},
			0, nil},
		{"a rolling update drains old pods that are not ready at once",
			PlanInput{Replicas: 2, MaxSurge: 1, MaxConcurrent: 2, Pods: append(pods("old", 1, false, true), pods("sick", 1, false, false)...)},
			1, []string{"sick-0"}},
		{"a rolling update never drains more than the free slots",
			PlanInput{Replicas: 2, MaxSurge: 2, MaxConcurrent: 1, Pods: append(pods("old", 2, false, true), pods("new", 2, true, true)...)},
			0, []string{"old-1"}},
		{"a rolling update without surge drains old pods first within maxConcurrent",
			PlanInput{Replicas: 4, MaxSurge: 0, MaxUnavailable: 1, MaxConcurrent: 1, Pods: pods("old", 4, false, true)}, 0, []string{"old-3"}},
		{"a rolling update without surge replaces a draining old pod",
			PlanInput{Replicas: 4, MaxSurge: 0, MaxUnavailable: 1, MaxConcurrent: 1, Draining: 1, Pods: pods("old", 3, false, true)}, 1, nil},
		{"a rolling update without surge waits for the replacement before the next drain",
			PlanInput{Replicas: 4, MaxSurge: 0, MaxUnavailable: 1, MaxConcurrent: 1, Pods: append(pods("old", 3, false, true), pods("new", 1, true, false)...)}, 0, nil},
		{"a rolling update with maxUnavailable drains a ready old pod before its replacement is ready",
			PlanInput{Replicas: 4, MaxSurge: 1, MaxUnavailable: 1, MaxConcurrent: 2, Pods: pods("old", 4, false, true)}, 1, []string{"old-3"}},
		{"a rolling update with maxUnavailable keeps replicas minus it ready, whatever the free slots",
			PlanInput{Replicas: 4, MaxSurge: 1, MaxUnavailable: 1, MaxConcurrent: 3, Pods: append(pods("old", 4, false, true), pods("new", 1, true, false)...)},
			0, []string{"old-3"}},
		{"a rolling update with maxUnavailable still drains no more than the free slots",
			PlanInput{Replicas: 4, MaxSurge: 1, MaxUnavailable: 3, MaxConcurrent: 2, Draining: 1, Pods: pods("old", 4, false, true)}, 1, []string{"old-3"}},
		{"suspending drains old and new pods, old first",
			PlanInput{Replicas: 0, MaxSurge: 0, MaxUnavailable: 2, MaxConcurrent: 2, Pods: append(pods("new", 2, true, true), pods("old", 1, false, true)...)},
			0, []string{"old-0", "new-1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := PlanPods(tt.in)
			if got.Create != tt.wantCreate || !slices.Equal(got.Drain, tt.wantDrain) || len(got.Delete) > 0 {
				t.Errorf("plan = create %d, drain %v, delete %v; want create %d, drain %v, delete none",
					got.Create, got.Drain, got.Delete, tt.wantCreate, tt.wantDrain)
			}
		})
	}
}

// idle marks the pods idle: their workers announced no task in flight.
func idle(ps []Candidate) []Candidate {
	for i := range ps {
		ps[i].Idle, ps[i].InFlight = true, 0
	}
	return ps
}

// loaded marks the pods as holding n tasks each.
func loaded(ps []Candidate, n int) []Candidate {
	for i := range ps {
		ps[i].InFlight = n
	}
	return ps
}

func TestPlanPodsDeletesPodsThatHoldNoTask(t *testing.T) {
	unscheduled := Candidate{Name: "pending", Updated: true, Created: t0.Add(time.Hour), InFlight: -1}
	tests := []struct {
		name       string
		in         PlanInput
		wantDrain  []string
		wantDelete []string
	}{
		{"a scale-down deletes every idle surplus pod at once, beyond the drain slots",
			PlanInput{Replicas: 1, MaxConcurrent: 1, Pods: idle(pods("new", 4, true, true))}, nil, []string{"new-3", "new-2", "new-1"}},
		{"a scale-down deletes the idle pods and drains the busy ones within the free slots",
			PlanInput{Replicas: 0, MaxConcurrent: 1, Pods: append(loaded(pods("busy", 2, true, true), 3), idle(pods("idle", 2, true, true))...)},
			[]string{"busy-1"}, []string{"idle-1", "idle-0"}},
		{"idle pods go first, so a scale-down by one drains nothing while one is idle",
			PlanInput{Replicas: 2, MaxConcurrent: 1, Pods: append(loaded(pods("busy", 2, true, true), 1), idle(pods("idle", 1, true, true))...)},
			nil, []string{"idle-0"}},
		{"a scale-down with every slot taken still deletes idle pods",
			PlanInput{Replicas: 0, MaxConcurrent: 1, Draining: 1, Pods: append(loaded(pods("busy", 1, true, true), 2), idle(pods("idle", 1, true, true))...)},
			nil, []string{"idle-0"}},
		{"a pod nobody heard from is drained, not deleted",
			PlanInput{Replicas: 0, MaxConcurrent: 2, Pods: loaded(pods("quiet", 2, true, true), -1)}, []string{"quiet-1", "quiet-0"}, nil},
		{"a pod that announced tasks in flight is drained even with none running now",
			PlanInput{Replicas: 0, MaxConcurrent: 1, Pods: loaded(pods("held", 1, true, true), 1)}, []string{"held-0"}, nil},
		{"an unscheduled surplus pod is deleted, not drained, and takes no slot",
			PlanInput{Replicas: 1, MaxConcurrent: 1, Pods: append(loaded(pods("busy", 2, true, true), 1), unscheduled)},
			[]string{"busy-1"}, []string{"pending"}},
		{"a rolling update deletes an idle old pod instead of draining it, within the slots",
			PlanInput{Replicas: 2, MaxSurge: 1, MaxConcurrent: 1, Pods: append(idle(pods("old", 2, false, true)), pods("new", 1, true, true)...)},
			nil, []string{"old-1"}},
		{"a rolling update with no free slot deletes no idle pod either",
			PlanInput{Replicas: 2, MaxSurge: 1, MaxConcurrent: 1, Draining: 1, Pods: append(idle(pods("old", 2, false, true)), pods("new", 1, true, true)...)},
			nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := PlanPods(tt.in)
			if got.Create != 0 || !slices.Equal(got.Drain, tt.wantDrain) || !slices.Equal(got.Delete, tt.wantDelete) {
				t.Errorf("plan = create %d, drain %v, delete %v; want create 0, drain %v, delete %v",
					got.Create, got.Drain, got.Delete, tt.wantDrain, tt.wantDelete)
			}
		})
	}
}

// TestPlanPodsConverges runs the plan against a small simulation (created
// pods become ready at the next step, a drain takes one step) and checks
// that every rollout and scaling ends with the wanted pods and never has
// more draining than maxConcurrent or more serving than replicas+maxSurge.
func TestPlanPodsConverges(t *testing.T) {
	tests := []struct {
		name              string
		start, replicas   int
		startUpdated      bool
		surge, concurrent int32
		unavailable       *intstr.IntOrString // updateStrategy.maxUnavailable; nil for unset
	}{
		{"a rollout with surge converges", 5, 5, false, 2, 2, nil},
		{"a rollout without surge converges", 5, 5, false, 0, 1, nil},
		{"a rollout with a scale-up converges", 2, 6, false, 1, 1, nil},
		{"a rollout with a scale-down converges", 6, 2, false, 1, 3, nil},
		{"a scale-up from zero converges", 0, 4, true, 1, 1, nil},
		{"a scale-down to zero converges", 7, 0, true, 1, 2, nil},
		{"a rollout with surge and a Deployment's unavailability converges", 10, 10, false, 3, 3, ptr.To(intstr.FromString("25%"))},
		{"a rollout with unavailability beyond the drain slots converges", 6, 6, false, 1, 1, ptr.To(intstr.FromInt32(4))},
		{"a rollout without surge and with unavailability 0% converges", 4, 4, false, 0, 2, ptr.To(intstr.FromString("0%"))},
	}
	for _, tt := range tests {
		for _, idle := range []bool{false, true} {
			name := tt.name
			if idle {
				name += ", half the pods idle"
			}
			t.Run(name, func(t *testing.T) {
				serving := pods("p", tt.start, tt.startUpdated, true)
				for i := range serving {
					serving[i].Idle = idle && i%2 == 1
				}
				rolling := !tt.startUpdated
				draining := 0
				next := tt.start
				for step := range 100 {
					for i := range serving { // pods created last step are ready now
						serving[i].Ready = true
					}
					unavailable, err := MaxUnavailable(tt.unavailable, int32(tt.replicas), tt.surge, tt.concurrent)
					if err != nil {
						t.Fatal(err)
					}
					plan := PlanPods(PlanInput{Replicas: int32(tt.replicas), MaxSurge: tt.surge, MaxUnavailable: unavailable,
						MaxConcurrent: tt.concurrent, Draining: int32(draining), Pods: serving})
					if draining == 0 && plan.Create == 0 && len(plan.Drain) == 0 && len(plan.Delete) == 0 {
						updated := 0
						for _, c := range serving {
							if c.Updated {
								updated++
							}
						}
						if updated != tt.replicas || len(serving) != tt.replicas {
							t.Fatalf("step %d: stuck with %d serving, %d updated", step, len(serving), updated)
						}
						return
					}
					free := max(int(tt.concurrent)-draining, 0)
					if len(plan.Drain) > free {
						t.Fatalf("step %d: %d drains started with %d free slots", step, len(plan.Drain), free)
					}
					if rolling && len(plan.Drain)+len(plan.Delete) > free {
						t.Fatalf("step %d: a rollout removed %d pods with %d free slots", step, len(plan.Drain)+len(plan.Delete), free)
					}
					for _, name := range plan.Delete {
						i := slices.IndexFunc(serving, func(c Candidate) bool { return c.Name == name })
						if i < 0 || !serving[i].Idle {
							t.Fatalf("step %d: deleted %s, which is not an idle serving pod", step, name)
						}
					}
					// Removals of the last step finish now; the pods
					// removed in this one drain or terminate until the next.
					draining = 0
					readyBefore := len(serving) // every serving pod is ready at the start of a step
					for _, name := range slices.Concat(plan.Drain, plan.Delete) {
						serving = slices.DeleteFunc(serving, func(c Candidate) bool { return c.Name == name })
						draining++
					}
					if floor := min(readyBefore, tt.replicas-int(unavailable)); rolling && len(serving) < floor {
						t.Fatalf("step %d: a rollout left %d ready pods, below replicas-maxUnavailable (%d)", step, len(serving), floor)
					}
					for range plan.Create {
						serving = append(serving, Candidate{Name: fmt.Sprintf("p-%d", next), Scheduled: true, Updated: true,
							Created: t0.Add(time.Duration(next) * time.Minute), Idle: idle && next%2 == 1})
						next++
					}
					if plan.Create > 0 && len(serving) > max(tt.replicas, tt.start)+int(tt.surge) {
						t.Fatalf("step %d: %d serving, above replicas+surge", step, len(serving))
					}
				}
				t.Fatal("no convergence in 100 steps")
			})
		}
	}
}
