//go:build e2e

package e2e

import (
	"crypto/rand"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Scenario 11: kubectl refuses invalid LoopDeployments with the schema's
// messages.
func TestKubectlRejectsInvalidLoopDeployments(t *testing.T) {
	var b [3]byte
	_, _ = rand.Read(b[:])
	ns := "e2e-invalid-" + hex.EncodeToString(b[:])
	if out, err := kubectl(t, "create", "namespace", ns); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	t.Cleanup(func() {
		ctx, cancel := CleanupContext(time.Minute)
		defer cancel()
		if out, err := kubectlContext(ctx, "delete", "namespace", ns, "--wait=false"); err != nil {
			t.Errorf("kubectl delete namespace %s: %v\n%s", ns, err, out)
		}
	})
	base := `apiVersion: loops.tenire.io/v1alpha1
kind: LoopDeployment
metadata:
  name: bad
  namespace: ` + ns + `
spec:
  template:
    spec:
      containers:
      - name: worker
        image: ` + WorkerImage + `
  queue:
    nats:
      url: nats://127.0.0.1:4222
`
	cases := []struct {
		name, extra, want string
	}{
		{"negative replicas", "  replicas: -2\n", "spec.replicas in body should be greater than or equal to 0"},
		{"min workers above max workers", "  loop:\n    pool: {minWorkers: 9, maxWorkers: 3}\n", "pool.minWorkers must not be greater than pool.maxWorkers"},
		{"a drain budget of 0%", "  drain: {maxConcurrent: 0%}\n", "drain.maxConcurrent must be a number of at least 1 or a percentage from 1% to 100%"},
		{"an unknown scheduling mode", "  loop:\n    scheduling: Fair\n", `Unsupported value: "Fair"`},
		{"duplicate priorities", "  loop:\n    priorities: [{name: a, weight: 1}, {name: a, weight: 2}]\n", `duplicate entries for key [name="a"]`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "ld.yaml")
			if err := os.WriteFile(file, []byte(base+tc.extra), 0o644); err != nil {
				t.Fatal(err)
			}
			out, err := kubectl(t, "apply", "--server-side", "-f", file)
			if err == nil {
				t.Fatalf("kubectl apply accepted it:\n%s", out)
			}
			if !strings.Contains(out, tc.want) {
				t.Fatalf("kubectl said\n%s\nwant %q", out, tc.want)
			}
		})
	}
}
