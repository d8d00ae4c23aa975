//go:build e2e

package e2e

import (
	"testing"
	"time"
)

// Scenario 1: scale 5→1 while 5,000 tasks of 50-500 ms run. Pods are
// deleted only after they report Drained, never more than
// drain.maxConcurrent drain at once, and no task is lost.
func TestScaleDownUnderLoadLosesNothing(t *testing.T) {
	l := newLoop(t, "scale", 5, nil)
	watch := l.watchPods(2)

	l.submitSleeps(5000, 50, 500)
	l.waitFinished(1000)
	l.scale(1)
	l.waitAllAccounted(5 * time.Minute)
	l.waitReady(1)
	watch.check(t)
	watch.waitDeleted(t, 4, "scaling 5→1 deletes 4")
}
