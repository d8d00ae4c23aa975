//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"os"
	"testing"
)

// env is the suite every scenario shares; scenarios run one at a time.
var env *Suite

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	//nolint:forbidigo // TestMain has no t.Context; the suite lives until m.Run returns.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s, err := StartSuite(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e: starting the suite:", err)
		if s != nil {
			s.Stop(true)
		}
		return 1
	}
	env = s
	code := m.Run()
	s.Stop(code != 0 || os.Getenv("E2E_KEEP") != "")
	return code
}
