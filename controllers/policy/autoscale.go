package policy

import (
	"fmt"
	"math"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	loopsv1alpha1 "github.com/tenire/loop-operator/api/v1alpha1"
)

// Tolerance is the relative change of the recommendation below which the
// autoscaler keeps the current count, as an HPA does.
const Tolerance = 0.1

// Demand is the work a loop's queue holds at one instant.
type Demand struct {
	// Pending counts the tasks not yet delivered.
	Pending int64
	// InFlight counts the tasks delivered and not yet acknowledged,
	// delayed retries included: a task that a pod pulled is still work
	// (scaling on pending alone removes pods under work they hold).
	InFlight int64
}

// Total is pending plus in flight.
func (d Demand) Total() int64 { return d.Pending + d.InFlight }

// Recommendation is one past recommendation of the autoscaler.
type Recommendation struct {
	At       time.Time
	Replicas int32
}

// ScaleEvent is one past change of replicas by the autoscaler.
type ScaleEvent struct {
	At       time.Time
	From, To int32
}

// AutoscaleInput is what one autoscaling decision looks at.
type AutoscaleInput struct {
	// Spec is spec.autoscaling with its defaults applied.
	Spec loopsv1alpha1.AutoscalingSpec
	// Current is the replica count now (spec.replicas).
	Current int32
	// MaxWorkers is pool.maxWorkers, a pod's capacity.
	MaxWorkers int32
	// Demand is the queue's backlog; nil when the queue cannot be read.
	Demand *Demand
	// LastActive is when the queue last held a task.
	LastActive time.Time
	// Recommendations are the earlier recommendations still within the
	// longer stabilization window, oldest first.
	Recommendations []Recommendation
	// Events are the earlier changes still within the longest policy
	// period, oldest first.
	Events []ScaleEvent
}

// AutoscaleDecision is the outcome of one decision.
type AutoscaleDecision struct {
	// Replicas is the count to set; Current when nothing changes.
	Replicas int32
	// Recommendation is what the targets alone ask for, within min and
	// max: the caller keeps it for later stabilization.
	Recommendation int32
	// Held is true when the queue could not be read and the count was
	// kept.
	Held bool
	// Reason says why, as a sentence for an event.
	Reason string
}

// Autoscale decides the replica count of an autoscaled loop at now, in the
// manner of a HorizontalPodAutoscaler (autoscaling/v2) with the queue's
// backlog as its metric:
//
//   - without a reading of the queue it holds the current count: it never
//     scales down on missing data;
//   - the recommendation is ceil(demand / targetBacklogPerReplica) and
//     ceil(inFlight / (maxWorkers * targetInFlightUtilization%)), the larger
//     of those set, kept at the current count within a 10% tolerance,
//     within [minReplicas, maxReplicas];
//   - an empty queue goes to minReplicas, or to zero with minReplicas 0
//     once it has been empty for scaleToZeroAfter; one pending task brings
//     a loop at zero back to one pod at once;
//   - stabilization: up to the lowest recommendation of the scale-up
//     window, down to the highest of the scale-down window;
//   - rate policies: the change over each policy's period stays within its
//     value, the policies combined by selectPolicy.
func Autoscale(in AutoscaleInput, now time.Time) AutoscaleDecision {
	spec := in.Spec
	minR, maxR := *spec.MinReplicas, spec.MaxReplicas
	if in.Demand == nil {
		return AutoscaleDecision{Replicas: in.Current, Recommendation: in.Current, Held: true,
			Reason: fmt.Sprintf("the queue cannot be read; holding %d replicas", in.Current)}
	}
	d := *in.Demand
	rec, raw, why := recommend(in, now)
	rec = min(max(rec, minR), maxR)
	if in.Current > 0 && rec > 0 && raw > 0 && math.Abs(raw/float64(in.Current)-1) <= Tolerance {
		rec, why = in.Current, why+fmt.Sprintf(", within %.0f%% of %d", Tolerance*100, in.Current)
	}

	b := spec.Behavior
	desired := in.Current
	up := stabilized(in.Recommendations, rec, now, window(b.ScaleUp), minInt32)
	down := stabilized(in.Recommendations, rec, now, window(b.ScaleDown), maxInt32)
	if desired < up {
		desired = up
	}
	if desired > down {
		desired = down
	}
	if in.Current == 0 && d.Total() > 0 && desired == 0 {
		desired = max(1, minR) // one pending task wakes a loop at zero
	}
	switch {
	case desired > in.Current:
		desired = min(desired, upLimit(b.ScaleUp, in.Current, in.Events, now))
	case desired < in.Current:
		desired = max(desired, downLimit(b.ScaleDown, in.Current, in.Events, now))
	}
	desired = min(max(desired, minR), maxR)
	if desired != in.Current {
		why = fmt.Sprintf("%s: %d → %d", why, in.Current, desired)
	}
	return AutoscaleDecision{Replicas: desired, Recommendation: rec, Reason: why}
}

// recommend is what the targets ask for, before tolerance and bounds, and
// the same unrounded (0 for an empty queue), which the tolerance compares.
func recommend(in AutoscaleInput, now time.Time) (int32, float64, string) {
	d := *in.Demand
	spec := in.Spec
	if d.Total() == 0 {
		idle := now.Sub(in.LastActive)
		if *spec.MinReplicas == 0 && !in.LastActive.IsZero() && idle >= spec.ScaleToZeroAfter.Duration {
			return 0, 0, fmt.Sprintf("the queue has been empty for %s", idle.Round(time.Second))
		}
		return max(*spec.MinReplicas, 1), 0, "the queue is empty"
	}
	var raw float64
	why := fmt.Sprintf("%d tasks pending and %d in flight", d.Pending, d.InFlight)
	if t := spec.TargetBacklogPerReplica; t != nil {
		raw = max(raw, float64(d.Total())/float64(*t))
		why += fmt.Sprintf(", target %d per replica", *t)
	}
	if t := spec.TargetInFlightUtilization; t != nil && in.MaxWorkers > 0 {
		raw = max(raw, float64(d.InFlight)/(float64(in.MaxWorkers)*float64(*t)/100))
		why += fmt.Sprintf(", target %d%% of %d workers in flight", *t, in.MaxWorkers)
	}
	return int32(max(min(math.Ceil(raw), math.MaxInt32), 1)), raw, why
}

func window(r *loopsv1alpha1.ScalingRules) time.Duration {
	return time.Duration(*r.StabilizationWindowSeconds) * time.Second
}

// stabilized combines rec with the recommendations newer than now-w.
func stabilized(recs []Recommendation, rec int32, now time.Time, w time.Duration, pick func(a, b int32) int32) int32 {
	out := rec
	for _, r := range recs {
		if now.Sub(r.At) < w {
			out = pick(out, r.Replicas)
		}
	}
	return out
}

// upLimit is the most replicas the scale-up policies allow now; from
// zero, one pod is always allowed.
func upLimit(r *loopsv1alpha1.ScalingRules, current int32, events []ScaleEvent, now time.Time) int32 {
	return max(rateLimit(r, current, events, now, 1), current, min(current+1, 1))
}

// downLimit is the fewest replicas the scale-down policies allow now.
func downLimit(r *loopsv1alpha1.ScalingRules, current int32, events []ScaleEvent, now time.Time) int32 {
	return min(max(rateLimit(r, current, events, now, -1), 0), current)
}

// rateLimit is the count that r's policies allow in direction dir (+1 up,
// -1 down): each policy counts the changes in that direction within its
// period back from current to the count at its start, then allows value
// pods, or value percent of that start, of change; selectPolicy Max takes
// the policy that allows the most change, Min the least, Disabled none.
func rateLimit(r *loopsv1alpha1.ScalingRules, current int32, events []ScaleEvent, now time.Time, dir int32) int32 {
	if *r.SelectPolicy == loopsv1alpha1.SelectDisabled {
		return current
	}
	var limit int32
	for i, p := range r.Policies {
		start := current
		for _, e := range events {
			if moved := (e.To - e.From) * dir; moved > 0 && now.Sub(e.At) < time.Duration(p.PeriodSeconds)*time.Second {
				start -= moved * dir
			}
		}
		start = max(start, 0)
		var l int32
		switch {
		case p.Type == loopsv1alpha1.PodsScalingPolicy:
			l = start + dir*p.Value
		case dir > 0:
			l = int32(math.Ceil(float64(start) * (1 + float64(p.Value)/100)))
		default:
			l = int32(math.Floor(float64(start) * (1 - float64(p.Value)/100)))
		}
		more := l*dir > limit*dir // l allows more change than limit
		if i == 0 || more == (*r.SelectPolicy != loopsv1alpha1.SelectMin) {
			limit = l
		}
	}
	return limit
}

// AutoscaleHistory is how far back recommendations and events matter for
// spec: the longest stabilization window or policy period.
func AutoscaleHistory(spec loopsv1alpha1.AutoscalingSpec) time.Duration {
	var longest time.Duration
	for _, r := range []*loopsv1alpha1.ScalingRules{spec.Behavior.ScaleUp, spec.Behavior.ScaleDown} {
		longest = max(longest, window(r))
		for _, p := range r.Policies {
			longest = max(longest, time.Duration(p.PeriodSeconds)*time.Second)
		}
	}
	return longest
}

func minInt32(a, b int32) int32 { return min(a, b) }
func maxInt32(a, b int32) int32 { return max(a, b) }

// Bounds of status.queue writes: at most one write per QueueStatusMinPeriod
// for a figure that moved by more than a fifth, and one per
// QueueStatusMaxAge for any other change, besides the transitions that are
// always written at once (readiness, a stream or priority class appearing
// or going, the queue going empty or getting work, new dead letters). At
// a thousand LoopDeployments with a steadily changing backlog that is at
// most 2 writes per LoopDeployment per minute, 2,000 per minute in all;
// at a steady backlog, none.
const (
	QueueStatusMinPeriod = 30 * time.Second
	QueueStatusMaxAge    = 60 * time.Second
)

// QueueStatusDue reports whether status.queue should be rewritten from
// prev to next at now.
func QueueStatusDue(prev, next *loopsv1alpha1.QueueStatus, now time.Time) bool {
	if prev == nil || next == nil {
		return prev != next
	}
	if prev.Stream != next.Stream || prev.RetiringStream != next.RetiringStream ||
		prev.DeadLetters != next.DeadLetters || len(prev.Priorities) != len(next.Priorities) ||
		(prev.Pending+prev.InFlight == 0) != (next.Pending+next.InFlight == 0) {
		return true
	}
	for i := range prev.Priorities {
		if prev.Priorities[i].Name != next.Priorities[i].Name || prev.Priorities[i].Retiring != next.Priorities[i].Retiring {
			return true
		}
	}
	var age time.Duration
	if prev.ObservedTime != nil {
		age = now.Sub(prev.ObservedTime.Time)
	} else {
		return true
	}
	moved := func(a, b int64) bool {
		d := a - b
		if d < 0 {
			d = -d
		}
		return d >= 5 && 5*d > max(a, b)
	}
	if age >= QueueStatusMinPeriod && (moved(prev.Pending, next.Pending) || moved(prev.InFlight, next.InFlight)) {
		return true
	}
	same := prev.Pending == next.Pending && prev.InFlight == next.InFlight && prev.Redelivered == next.Redelivered &&
		timesEqual(prev.OldestTaskTime, next.OldestTaskTime)
	return age >= QueueStatusMaxAge && !same
}

// QueueStatusRecheck returns how long from now until QueueStatusDue(prev,
// next, ·) holds, next staying as it is: the reconciler comes back then,
// so that a figure held back by the minimum period is written when it is
// due even if nothing else makes the LoopDeployment reconcile. ok is false
// when it never will (the figures are the same) or holds already.
func QueueStatusRecheck(prev, next *loopsv1alpha1.QueueStatus, now time.Time) (after time.Duration, ok bool) {
	if prev == nil || next == nil || prev.ObservedTime == nil || QueueStatusDue(prev, next, now) {
		return 0, false
	}
	for _, at := range []time.Time{prev.ObservedTime.Add(QueueStatusMinPeriod), prev.ObservedTime.Add(QueueStatusMaxAge)} {
		if at.After(now) && QueueStatusDue(prev, next, at) {
			return at.Sub(now), true
		}
	}
	return 0, false
}

// timesEqual compares a and b at the precision a metav1.Time keeps in the
// API, a second: the oldest task time read back from the status equals
// the observation it was written from, or an unchanged backlog would be
// rewritten every QueueStatusMaxAge.
func timesEqual(a, b *metav1.Time) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Truncate(time.Second).Equal(b.Truncate(time.Second))
}
