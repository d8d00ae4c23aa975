package settings

import (
	"encoding/json"

	loopsv1alpha1 "github.com/tenire/loop-operator/api/v1alpha1"
)

// JSON returns the settings as the operator writes them into LOOP_SETTINGS
// (controllers/pods.go marshals the same type with encoding/json).
// Test-only: FuzzParse checks that Parse and JSON round-trip.
func JSON(s loopsv1alpha1.WorkerSettings) (string, error) {
	b, err := json.Marshal(s)
	return string(b), err
}
