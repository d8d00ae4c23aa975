package policy

import (
	"slices"
	"strings"
	"time"
)

// Candidate is a serving pod (not draining, not terminating, not failed) as
// the plan sees it.
type Candidate struct {
	// Name is the pod's name.
	Name string
	// Scheduled is true once the pod is bound to a node.
	Scheduled bool
	// Ready is the pod's Ready condition.
	Ready bool
	// Updated is true when the pod runs the spec's current revision.
	Updated bool
	// Created is the pod's creation time.
	Created time.Time
	// InFlight counts the tasks the pod's worker last announced it held;
	// -1 when unknown (no recent announcement).
	InFlight int
	// Idle is true when the pod's worker announced recently that it held
	// no task: such a pod is deleted rather than asked to drain, since the
	// SIGTERM that the deletion sends starts the same drain. False when
	// unknown, so that a pod nobody heard from is drained.
	Idle bool
}

// HoldsNoTask reports whether c can go without a drain: no node runs it,
// or its worker announced that it holds no task.
func (c Candidate) HoldsNoTask() bool { return !c.Scheduled || c.Idle }

// SortVictims orders pods from the first to go to the last: unscheduled
// pods, then scheduled pods that are not ready, then ready ones; within
// each of those, pods of an outdated revision before updated ones; then
// the pods with the fewest tasks in flight, as their workers announce
// them (idle pods first, so a scale-down hands back as little as it can;
// a pod that announced nothing recently comes after those that did); then
// the newest first (it has the least warm state); then by name, so the
// order is total and stable.
func SortVictims(pods []Candidate) {
	slices.SortStableFunc(pods, compareVictims)
}

func compareVictims(a, b Candidate) int {
	if c := rank(a) - rank(b); c != 0 {
		return c
	}
	if a.Updated != b.Updated {
		if !a.Updated {
			return -1
		}
		return 1
	}
	if c := inFlightRank(a) - inFlightRank(b); c != 0 {
		return c
	}
	if c := b.Created.Compare(a.Created); c != 0 {
		return c
	}
	return strings.Compare(a.Name, b.Name)
}

// rank is 0 for an unscheduled pod, 1 for a scheduled pod that is not
// ready and 2 for a ready one.
func rank(c Candidate) int {
	switch {
	case !c.Scheduled:
		return 0
	case !c.Ready:
		return 1
	default:
		return 2
	}
}

// inFlightRank orders by tasks in flight, unknown last.
func inFlightRank(c Candidate) int {
	if c.InFlight < 0 {
		return int(^uint(0) >> 1)
	}
	return c.InFlight
}
