package podwatch_test

import (
	"fmt"
	"time"

	"github.com/tenire/loop-operator/api/v1alpha1/contract"
	"github.com/tenire/loop-operator/worker/podwatch"
)

// ExampleDrainDeadline reads the operator's drain annotations.
func ExampleDrainDeadline() {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	deadline, requested := podwatch.DrainDeadline(map[string]string{
		contract.AnnotationDrainRequested: "2026-01-01T12:00:00Z",
		contract.AnnotationDrainDeadline:  "2026-01-01T12:05:00Z",
	}, now, time.Minute)
	fmt.Println(requested, deadline.Format(time.RFC3339))
	// Output: true 2026-01-01T12:05:00Z
}
