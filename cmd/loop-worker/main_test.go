package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"

	"github.com/tenire/loop-operator/internal/natstest"
	"github.com/tenire/loop-operator/internal/testenv"
	"github.com/tenire/loop-operator/worker/checkpoint"
	"github.com/tenire/loop-operator/worker/queue"
)

// binary is the loop-worker built once for the tests of this package.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "loop-worker-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "loop-worker")
	build := exec.Command("go", "build", "-o", binary, ".")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building loop-worker:", err)
		os.Exit(1)
	}
	code := m.Run()
	if code == 0 {
		// goleak.VerifyTestMain would exit before the binary is removed.
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// syncBuffer is a bytes.Buffer safe for the process's writer goroutine.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// proc is a running loop-worker.
type proc struct {
	cmd   *exec.Cmd
	logs  *syncBuffer
	admin string
	done  chan error
}

// startWorker runs the binary and waits until /readyz answers 200.
func startWorker(t *testing.T, env []string, args ...string) *proc {
	t.Helper()
	admin := fmt.Sprintf("127.0.0.1:%d", testenv.Port(t))
	p := &proc{logs: &syncBuffer{}, admin: admin, done: make(chan error, 1)}
	p.cmd = exec.Command(binary, append([]string{"--admin-addr", admin}, args...)...)
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stdout, p.cmd.Stderr = p.logs, p.logs
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		err := <-p.done
		p.done <- err
		if t.Failed() {
			t.Logf("worker logs:\n%s", p.logs.String())
		}
	})
	eventually(t, "the worker to be ready", func() bool {
		select {
		case err := <-p.done:
			p.done <- err
			t.Fatalf("the worker exited early (%v):\n%s", err, p.logs.String())
		default:
		}
		code, _ := get(t, "http://"+admin+"/readyz")
		return code == http.StatusOK
	})
	return p
}

// exit sends sig and returns the exit code.
func (p *proc) exit(t *testing.T, sig os.Signal, within time.Duration) int {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-p.done:
		p.done <- err
		if ee, ok := errors.AsType[*exec.ExitError](err); ok {
			return ee.ExitCode()
		}
		if err != nil {
			t.Fatal(err)
		}
		return 0
	case <-time.After(within):
		t.Fatalf("the worker did not exit within %s of %s", within, sig)
		return -1
	}
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.After(30 * time.Second)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-tick.C:
		case <-deadline:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func streamMsgs(t *testing.T, js jetstream.JetStream, name string) uint64 {
	t.Helper()
	s, err := js.Stream(t.Context(), name)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

var names = queue.NewNames("LOOP_e2e", "loops.e2e")

// startNATS runs a NATS server with JetStream in the test process and
// returns its URL and a JetStream client.
func startNATS(t *testing.T) (string, jetstream.JetStream) {
	t.Helper()
	srv := natstest.Start(t)
	_, js := srv.Connect()
	return srv.URL, js
}

func workerArgs(url string) []string {
	return []string{"--nats-url", url, "--stream", names.Stream, "--subject-prefix", names.SubjectPrefix, "--ensure-queue"}
}

func TestSIGTERMLetsInFlightTasksFinishAndExitsZero(t *testing.T) {
	url, js := startNATS(t)
	w := startWorker(t, []string{"DRAIN_TIMEOUT=20s"}, workerArgs(url)...)
	p := queue.NewProducer(js, names)
	for _, task := range []queue.Task{
		{ID: "count", Kind: "count", Payload: []byte(`{"to":20,"stepMs":50}`)},
		{ID: "sleep", Kind: "sleep", Payload: []byte(`{"ms":800}`)},
	} {
		if _, _, err := p.Submit(t.Context(), task); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "both tasks to be running", func() bool {
		_, body := get(t, "http://"+w.admin+"/status")
		return strings.Contains(body, `"running": 2`)
	})
	if code := w.exit(t, syscall.SIGTERM, 30*time.Second); code != 0 {
		t.Fatalf("exit code after SIGTERM = %d, want 0", code)
	}
	// The acks were flushed before the exit; the server applies them
	// asynchronously.
	eventually(t, "both finished tasks to leave the work queue", func() bool {
		return streamMsgs(t, js, names.Stream) == 0
	})
	logs := w.logs.String()
	if !strings.Contains(logs, `"msg":"drained"`) || !strings.Contains(logs, `"finished":2`) {
		t.Errorf("the logs do not report a drain with 2 finished tasks:\n%s", logs)
	}
}

func TestSIGTERMPastTheDeadlineHandsBackAndTheTaskResumes(t *testing.T) {
	url, js := startNATS(t)
	args := workerArgs(url)
	w := startWorker(t, []string{"DRAIN_TIMEOUT=300ms"}, args...)
	if _, _, err := queue.NewProducer(js, names).Submit(t.Context(), queue.Task{
		ID: "long-count", Kind: "count", Payload: []byte(`{"to":40,"stepMs":50}`),
	}); err != nil {
		t.Fatal(err)
	}
	store, err := checkpoint.Open(t.Context(), js, names.CheckpointBucket)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "a few checkpoints", func() bool {
		cp, _ := store.Load(t.Context(), "long-count")
		n, _ := strconv.Atoi(string(cp))
		return n >= 3
	})
	if code := w.exit(t, syscall.SIGTERM, 30*time.Second); code != 0 {
		t.Fatalf("exit code after SIGTERM = %d, want 0", code)
	}
	if !strings.Contains(w.logs.String(), `"handedBack":1`) {
		t.Errorf("the logs do not report the task handed back:\n%s", w.logs.String())
	}
	cp, err := store.Load(t.Context(), "long-count")
	if err != nil || cp == nil {
		t.Fatalf("checkpoint after the hand-back = %q, %v", cp, err)
	}
	if n := streamMsgs(t, js, names.Stream); n != 1 {
		t.Fatalf("the work queue holds %d tasks after the hand-back, want 1", n)
	}

	again := startWorker(t, nil, args...)
	eventually(t, "the handed-back task to finish on the next worker", func() bool {
		return streamMsgs(t, js, names.Stream) == 0
	})
	if !strings.Contains(again.logs.String(), `"msg":"count task resuming"`) {
		t.Errorf("the next worker did not resume from the checkpoint:\n%s", again.logs.String())
	}
	if code := again.exit(t, syscall.SIGTERM, 30*time.Second); code != 0 {
		t.Errorf("exit code = %d, want 0", code)
	}
}

func TestStandaloneRunsASubmittedTaskAndDrainsOnCtrlC(t *testing.T) {
	port := testenv.Port(t)
	w := startWorker(t, nil, "--standalone", "--standalone-port", strconv.Itoa(port), "--standalone-dir", t.TempDir())
	url := fmt.Sprintf("nats://127.0.0.1:%d", port)
	submit := exec.Command(binary, "submit", "--nats-url", url, "--kind", "sleep", "--payload", `{"ms":10}`, "--id", "s1")
	if out, err := submit.CombinedOutput(); err != nil {
		t.Fatalf("submit: %v\n%s", err, out)
	}
	eventually(t, "the sleep task to succeed", func() bool {
		_, body := get(t, "http://"+w.admin+"/status")
		return strings.Contains(body, `"succeeded": 1`)
	})
	if code := w.exit(t, os.Interrupt, 30*time.Second); code != 0 {
		t.Errorf("exit code after Ctrl-C = %d, want 0", code)
	}
}

func TestBadSettingsFailWithAClearMessage(t *testing.T) {
	tests := []struct {
		name string
		env  []string
		args []string
		want string
	}{
		{"no queue at all says how to configure one", nil, nil, "no queue configured"},
		{"a bad DRAIN_TIMEOUT names the variable", []string{"DRAIN_TIMEOUT=soon"}, []string{"--standalone"}, `DRAIN_TIMEOUT="soon"`},
		{"a misspelt settings field is named", []string{`LOOP_SETTINGS={"nameX":"x"}`}, nil, `unknown field "nameX"`},
		{"a bad scheduling mode lists the choices", []string{`LOOP_SETTINGS={"name":"a","namespace":"b","queue":{"nats":{"url":"nats://x"}},"loop":{"scheduling":"Fair"}}`}, nil, "want Weighted or Strict"},
		{"an unknown flag is refused", nil, []string{"--nope"}, "flag provided but not defined: -nope"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, binary, tt.args...)
			cmd.Env = append(os.Environ(), tt.env...)
			out, err := cmd.CombinedOutput()
			ee, ok := errors.AsType[*exec.ExitError](err)
			if !ok || ee.ExitCode() != 2 || !strings.Contains(string(out), tt.want) {
				t.Errorf("exit %v with output\n%s\nwant exit code 2 and %q", err, out, tt.want)
			}
		})
	}
}

func TestVersion(t *testing.T) {
	var out bytes.Buffer
	old := stdout
	stdout = &out
	t.Cleanup(func() { stdout = old })
	if err := run(t.Context(), []string{"--version"}, func(string) string { return "" }, io.Discard); err != nil {
		t.Fatal(err)
	}
	if got := out.String(); got != "loop-worker dev\n" {
		t.Errorf("--version printed %q, want %q", got, "loop-worker dev\n")
	}
}
