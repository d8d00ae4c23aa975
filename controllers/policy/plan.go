package policy

// PlanInput is what one reconcile knows when it decides how many pods to
// create and which ones to drain.
type PlanInput struct {
	// Replicas is the number of serving pods wanted: spec.replicas, or 0
	// when the loop is suspended or being deleted.
	Replicas int32
	// MaxSurge is how many pods may serve above Replicas during a rolling
	// update (see MaxSurge).
	MaxSurge int32
	// MaxUnavailable is how many of Replicas may be unavailable during a
	// rolling update (see MaxUnavailable): Ready outdated pods go only
	// while the Ready serving pods stay at least Replicas-MaxUnavailable.
	MaxUnavailable int32
	// MaxConcurrent is how many pods may drain at once (see MaxConcurrent).
	MaxConcurrent int32
	// Draining is how many pods drain now: asked to drain and not yet
	// gone, or terminating and perhaps holding tasks (a terminating pod
	// that holds none is left out). Each takes one of the MaxConcurrent
	// slots.
	Draining int32
	// Pods are the serving pods: not asked to drain, not terminating, not
	// failed.
	Pods []Candidate
}

// Plan is what one reconcile does.
type Plan struct {
	// Create is how many pods of the current revision to create.
	Create int32
	// Drain names the pods to ask to drain, first victim first.
	Drain []string
	// Delete names the pods to delete without asking them to drain, first
	// victim first: pods no node runs, and idle pods (Candidate.Idle),
	// whose SIGTERM drain hands back whatever they picked up since they
	// announced.
	Delete []string
}

// remove adds p to Delete when it holds no task, else to Drain.
func (plan *Plan) remove(p Candidate) {
	if p.HoldsNoTask() {
		plan.Delete = append(plan.Delete, p.Name)
		return
	}
	plan.Drain = append(plan.Drain, p.Name)
}

// PlanPods decides one step towards Replicas updated, serving pods.
//
// Without outdated pods it scales: it creates the missing pods, or removes
// the surplus in victim order (SortVictims): pods that hold no task (not
// scheduled, or idle) are deleted at once, as a ReplicaSet deletes its
// surplus, and take no drain slot; the others are drained within the free
// slots.
//
// With outdated pods it rolls: it creates updated pods while there are
// fewer than Replicas of them and fewer than Replicas+MaxSurge serving
// pods in all; it drains outdated pods that are not ready at once, and
// ready outdated pods only while the ready serving pods stay at least
// Replicas-MaxUnavailable; updated pods beyond Replicas are drained as in
// a scale-down. Unless updateStrategy.maxUnavailable says otherwise, that
// allowance is 0 when MaxSurge > 0 (new pods must be ready before old
// ones go) and MaxConcurrent when MaxSurge is 0 (old pods go first, their
// replacements start as they drain).
//
// A rolling update paces itself by the MaxConcurrent-Draining free slots,
// whichever way a pod goes: an idle or unscheduled outdated pod is deleted
// rather than drained, but it takes a slot like a drain in this plan (the
// caller leaves it out of Draining once it terminates). A scale-down's
// drains never take more than the free slots either. A draining pod no
// longer pulls tasks, so it is not a serving pod and its replacement may
// start while it drains.
func PlanPods(in PlanInput) Plan {
	var plan Plan
	free := max(in.MaxConcurrent-in.Draining, 0)
	pods := append([]Candidate(nil), in.Pods...)
	SortVictims(pods)

	serving := int32(len(pods))
	var updated, ready int32
	for _, p := range pods {
		if p.Updated {
			updated++
		}
		if p.Ready {
			ready++
		}
	}

	if updated == serving { // scaling only
		switch {
		case serving < in.Replicas:
			plan.Create = in.Replicas - serving
		case serving > in.Replicas:
			for _, p := range pods[:serving-in.Replicas] {
				if !p.HoldsNoTask() {
					if free == 0 {
						continue
					}
					free--
				}
				plan.remove(p)
			}
		}
		return plan
	}

	// Rolling update.
	plan.Create = max(min(in.Replicas-updated, in.Replicas+in.MaxSurge-serving), 0)
	spare := max(ready-max(in.Replicas-in.MaxUnavailable, 0), 0) // ready pods that may go
	for _, p := range pods {
		if free == 0 {
			break
		}
		if p.Updated {
			continue
		}
		if p.Ready {
			if spare == 0 {
				continue
			}
			spare--
		}
		plan.remove(p)
		free--
	}
	// Updated pods beyond Replicas (a scale-down during a rollout) go too.
	surplus := updated - in.Replicas
	for _, p := range pods {
		if free == 0 || surplus <= 0 {
			break
		}
		if p.Updated {
			plan.remove(p)
			free--
			surplus--
		}
	}
	return plan
}
