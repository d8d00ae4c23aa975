package loopclient_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tenire/loop-operator/internal/testenv"
	"github.com/tenire/loop-operator/loopclient"
	"github.com/tenire/loop-operator/worker/loop"
)

// nodeProducer returns the folder of examples/node-producer, its
// dependencies installed; it skips the test when node or the dependencies
// are missing, except under CI (CI=true), where it fails: .ci/run installs
// both.
func nodeProducer(t *testing.T) string {
	t.Helper()
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(root, "examples", "node-producer")
	missing := ""
	if _, err := exec.LookPath("node"); err != nil {
		missing = "node is not installed"
	} else if _, err := os.Stat(filepath.Join(dir, "node_modules", "nats")); err != nil {
		missing = "its dependencies are not installed (npm ci --prefix examples/node-producer)"
	}
	if missing != "" {
		t.Fatalf("the Node.js producer cannot run: %s (make test installs them with make node-deps)", missing)
	}
	return dir
}

// The Node.js example follows docs/wire-format.md: the task it publishes
// runs on a Go loop with the kind, id, priority and payload it gave, and it
// reads the result record the loop kept, then sees a resubmission as a
// duplicate.
func TestTheNodeProducerSubmitsATaskThatALoopRunsAndPrintsItsResult(t *testing.T) {
	dir := nodeProducer(t)
	_, _, srv := provisioned(t)
	var (
		mu  sync.Mutex
		ran []loop.Task
	)
	runLoop(t, srv.URL, map[string]loop.Handler{"upper": func(_ context.Context, task *loop.Task) error {
		mu.Lock()
		defer mu.Unlock()
		ran = append(ran, *task)
		return nil
	}})
	node := func(args ...string) (string, error) {
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "node", append([]string{"producer.js"}, args...)...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "NATS_URL="+srv.URL, "LOOP_STREAM="+shopMail.Stream, "LOOP_SUBJECT_PREFIX="+shopMail.SubjectPrefix)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	out, err := node("--kind", "upper", "--priority", "low", "--id", "from node.js 1", "--payload", `{"text":"hi"}`, "--timeout", "30s")
	if err != nil {
		t.Fatalf("node producer.js: %v\n%s", err, out)
	}
	t.Logf("node producer.js:\n%s", out)
	mu.Lock()
	if len(ran) != 1 || ran[0].ID != "from node.js 1" || ran[0].Kind != "upper" || ran[0].Priority != "low" || string(ran[0].Payload) != `{"text":"hi"}` {
		t.Errorf("the loop ran %+v, want the one task the producer submitted", ran)
	}
	mu.Unlock()
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "submitted from node.js 1 as sequence 1") || !strings.HasPrefix(lines[1], "result ") {
		t.Fatalf("output %q: want the submission and the result", out)
	}
	var res struct {
		ID, Kind, Priority, Worker string
		Attempts                   int
	}
	if err := json.Unmarshal([]byte(strings.TrimPrefix(lines[1], "result ")), &res); err != nil {
		t.Fatal(err)
	}
	if res.ID != "from node.js 1" || res.Kind != "upper" || res.Priority != "low" || res.Worker != "pod-a" || res.Attempts != 1 {
		t.Errorf("printed result %+v", res)
	}

	// The same id again, within the duplicate window: dropped, and the
	// result printed is the first run's.
	out, err = node("--kind", "upper", "--priority", "low", "--id", "from node.js 1", "--timeout", "30s")
	if err != nil || !strings.Contains(out, "as sequence 1 (duplicate: the queue already had it)") || !strings.Contains(out, "result ") {
		t.Errorf("resubmitting: %v\n%s", err, out)
	}
	// And Go reads what the Node producer submitted, as any producer's.
	c, err := loopclient.New(nil, shopMail)
	if err != nil || c.Names().ResultSubjectOf("from node.js 1") != shopMail.SubjectPrefix+".results.ZnJvbSBub2RlLmpzIDE" {
		t.Errorf("the Go client's result subject differs from the one the Node producer read")
	}
}

// A task that fails for good: the Node.js producer finds its dead letter,
// prints the handler's error and exits 1.
func TestTheNodeProducerReportsADeadLetteredTasksError(t *testing.T) {
	dir := nodeProducer(t)
	_, _, srv := provisioned(t)
	runLoop(t, srv.URL, map[string]loop.Handler{"fail": func(context.Context, *loop.Task) error {
		return fmt.Errorf("bad input: %w", loop.ErrPermanent)
	}})
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", "producer.js", "--kind", "fail", "--subject-prefix", shopMail.SubjectPrefix,
		"--stream", shopMail.Stream, "--nats-url", srv.URL, "--priority", "high")
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	ee, ok := errors.AsType[*exec.ExitError](err)
	if !ok || ee.ExitCode() != 1 || !strings.Contains(string(out), `"error":"bad input: permanent failure"`) {
		t.Errorf("node producer.js: %v\n%s\nwant exit code 1 and the handler's error", err, out)
	}
}
