//go:build e2e && !kind

package e2e

import (
	"encoding/json"
	"os"
	"testing"
)

// writeBenchResult writes v as JSON to the file the environment variable
// outVar names, when it names one: how make bench (hack/bench) collects the
// operator and drain benchmarks' rounds.
func writeBenchResult(t *testing.T, outVar string, v any) {
	t.Helper()
	out := os.Getenv(outVar)
	if out == "" {
		return
	}
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(out, append(b, '\n'), 0o644); err != nil {
		t.Fatalf("writing %s: %v", out, err)
	}
	t.Logf("wrote %s", out)
}
