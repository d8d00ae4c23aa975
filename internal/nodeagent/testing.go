package nodeagent

import (
	"path/filepath"
	"testing"

	"github.com/go-logr/logr/testr"
	"k8s.io/client-go/rest"
)

// StartForTest starts an agent for one test against cfg (logging through t
// unless opts.Log is set) and stops it when the test ends. When opts.RunDir
// is empty the agent writes to runDir/nodeagent: pass the cluster's RunDir so
// that the pods' logs are kept with the cluster's when a test fails (an
// empty runDir means a temporary folder of the test).
func StartForTest(t testing.TB, cfg *rest.Config, runDir string, opts Options) *Agent {
	t.Helper()
	opts.Config = cfg
	if opts.Log.GetSink() == nil {
		opts.Log = testr.NewWithInterface(t, testr.Options{LogTimestamp: true})
	}
	if opts.RunDir == "" {
		if runDir != "" {
			opts.RunDir = filepath.Join(runDir, "nodeagent")
		} else {
			opts.RunDir = t.TempDir()
		}
	}
	a, err := Start(t.Context(), opts)
	if err != nil {
		t.Fatalf("starting the node agent: %v", err)
	}
	t.Cleanup(a.Stop)
	return a
}
