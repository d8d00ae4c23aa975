package policy

import (
	"slices"
	"testing"
	"time"
)

func busy(c Candidate, inFlight int) Candidate {
	c.InFlight = inFlight
	return c
}

func TestSortVictims(t *testing.T) {
	ready := func(name string, updated bool, age time.Duration) Candidate {
		return Candidate{Name: name, Scheduled: true, Ready: true, Updated: updated, Created: t0.Add(-age)}
	}
	tests := []struct {
		name string
		pods []Candidate
		want []string
	}{
		{"an unscheduled pod goes before a scheduled one that is not ready",
			[]Candidate{{Name: "unready", Scheduled: true}, {Name: "unscheduled"}},
			[]string{"unscheduled", "unready"}},
		{"a pod that is not ready goes before a ready one, even an outdated one",
			[]Candidate{ready("old", false, time.Hour), {Name: "unready", Scheduled: true, Updated: true}},
			[]string{"unready", "old"}},
		{"an outdated pod goes before an updated one, even an older updated one",
			[]Candidate{ready("updated", true, 2*time.Hour), ready("outdated", false, time.Minute)},
			[]string{"outdated", "updated"}},
		{"among equals the newest goes first",
			[]Candidate{ready("a", true, 3*time.Hour), ready("b", true, time.Minute), ready("c", true, time.Hour)},
			[]string{"b", "c", "a"}},
		{"among updated ready pods the idle one goes before busy ones, whatever their age",
			[]Candidate{busy(ready("busy", true, time.Hour), 7), busy(ready("idle", true, 3*time.Hour), 0), busy(ready("light", true, time.Minute), 1)},
			[]string{"idle", "light", "busy"}},
		{"a pod whose worker announced nothing recently goes after those that did",
			[]Candidate{busy(ready("silent", true, time.Minute), -1), busy(ready("busy", true, time.Hour), 9)},
			[]string{"busy", "silent"}},
		{"an outdated busy pod still goes before an updated idle one during a rollout",
			[]Candidate{busy(ready("new-idle", true, time.Minute), 0), busy(ready("old-busy", false, time.Minute), 5)},
			[]string{"old-busy", "new-idle"}},
		{"pods created in the same instant go by name",
			[]Candidate{ready("y", true, 0), ready("x", true, 0)},
			[]string{"x", "y"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pods := slices.Clone(tt.pods)
			SortVictims(pods)
			var got []string
			for _, p := range pods {
				got = append(got, p.Name)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("order = %v, want %v", got, tt.want)
			}
		})
	}
}
