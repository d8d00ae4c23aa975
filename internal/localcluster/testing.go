package localcluster

import (
	"os"
	"testing"

	"github.com/go-logr/logr/testr"
)

// KeepEnv names the variable that, when set to a non-empty value, keeps the run folder of every test
// cluster, not only of failed tests.
const KeepEnv = "LOCALCLUSTER_KEEP"

// StartForTest starts a cluster for one test (logging through t unless
// opts.Log is set) and stops it when the test ends, keeping the run folder
// when the test failed or KeepEnv is set.
func StartForTest(t testing.TB, opts Options) *Cluster {
	t.Helper()
	if opts.Log.GetSink() == nil {
		opts.Log = testr.NewWithInterface(t, testr.Options{LogTimestamp: true})
	}
	c, err := Start(t.Context(), opts)
	if err != nil {
		t.Fatalf("starting the local cluster: %v", err)
	}
	t.Cleanup(func() {
		keep := t.Failed() || os.Getenv(KeepEnv) != ""
		if err := c.Stop(keep); err != nil {
			t.Errorf("stopping the local cluster: %v", err)
		}
		if keep {
			t.Logf("local cluster run folder kept: %s", c.RunDir)
		}
	})
	return c
}
