package policy

import (
	"errors"
	"fmt"

	"k8s.io/apimachinery/pkg/util/intstr"
)

// ErrInvalidBudget is returned for a budget that is neither a non-negative
// integer nor a percentage.
var ErrInvalidBudget = errors.New("invalid budget")

// MaxConcurrent returns how many pods may drain at once: v as a number, or
// v as a percentage of replicas rounded up, and never less than 1 so that a
// scale-down always makes progress (also with replicas 0).
func MaxConcurrent(v intstr.IntOrString, replicas int32) (int32, error) {
	n, err := scaled(v, replicas, true)
	if err != nil {
		return 0, fmt.Errorf("drain.maxConcurrent: %w", err)
	}
	return max(n, 1), nil
}

// MaxSurge returns how many pods may run above replicas during a rolling
// update: v as a number, or v as a percentage of replicas rounded up. It may
// be 0: then old pods are drained before their replacements are created.
func MaxSurge(v intstr.IntOrString, replicas int32) (int32, error) {
	n, err := scaled(v, replicas, true)
	if err != nil {
		return 0, fmt.Errorf("updateStrategy.maxSurge: %w", err)
	}
	return n, nil
}

// MaxUnavailable returns how many of replicas may be unavailable during a
// rolling update: v as a number, or v as a percentage of replicas rounded
// down, as a Deployment does. Unset (nil), it is 0 when surge is above 0
// (new pods are Ready before old ones go) and maxConcurrent when surge is 0
// (old pods go first, as many at once as may drain). Where surge and the
// result are both 0 it is 1, so that a rolling update progresses.
func MaxUnavailable(v *intstr.IntOrString, replicas, surge, maxConcurrent int32) (int32, error) {
	if v == nil {
		if surge > 0 {
			return 0, nil
		}
		return maxConcurrent, nil
	}
	n, err := scaled(*v, replicas, false)
	if err != nil {
		return 0, fmt.Errorf("updateStrategy.maxUnavailable: %w", err)
	}
	if n == 0 && surge == 0 {
		return 1, nil
	}
	return n, nil
}

// scaled resolves an int-or-percent against total, rounding a percentage
// up or down.
func scaled(v intstr.IntOrString, total int32, up bool) (int32, error) {
	n, err := intstr.GetScaledValueFromIntOrPercent(&v, int(total), up)
	if err != nil {
		return 0, fmt.Errorf("%w: %w", ErrInvalidBudget, err)
	}
	if n < 0 {
		return 0, fmt.Errorf("%w: %s is negative", ErrInvalidBudget, v.String())
	}
	return int32(min(n, int(^uint32(0)>>1))), nil
}
