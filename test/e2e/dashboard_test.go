//go:build e2e && !kind

package e2e

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/nats-io/nats.go/jetstream"
	"k8s.io/utils/ptr"

	loopsv1alpha1 "github.com/tenire/loop-operator/api/v1alpha1"
	"github.com/tenire/loop-operator/api/v1alpha1/contract"
)

// The dashboard in a real browser (headless Chromium, driven by chromedp)
// against the local control plane: it shows the overview, a LoopDeployment
// under load, drains a pod from its page (the page shows it draining, then
// drained or gone; it reports Drained, and no task is lost) and requeues a
// dead letter. Screenshots go to $E2E_SCREENSHOTS, or to a temporary
// directory the log names.
//
// Without Chromium the test skips, except in CI (CI set), where it fails:
// .ci/run installs it (Debian's chromium).
func TestTheDashboardDrainsAPodAndRequeuesADeadLetterInABrowser(t *testing.T) {
	browser := chromiumPath()
	if browser == "" {
		if os.Getenv("CI") == "" {
			t.Skip("no chromium on this machine (apt-get install chromium); CI installs it and runs this test")
		}
		t.Fatal("CI is set and chromium is missing: .ci/run installs it (apt-get install chromium)")
	}
	shots := os.Getenv("E2E_SCREENSHOTS")
	if shots == "" {
		shots = t.TempDir()
	} else if err := os.MkdirAll(shots, 0o755); err != nil {
		t.Fatal(err)
	}

	// Small pools (3 × 4 slots) keep the loop busy for about 40 s. The
	// tasks take 2-4 s so that a drain lasts as long as its longest task,
	// long enough for the page to show it even when updates are slow to
	// come (a drain of sub-second tasks is over between two updates).
	l := newLoop(t, "dash", 3, func(ld *loopsv1alpha1.LoopDeployment) {
		ld.Spec.Loop.Pool = loopsv1alpha1.PoolSpec{MinWorkers: ptr.To[int32](2), MaxWorkers: 4}
	})
	watch := l.watchPods(1)
	// The dashboard starts first, so that its charts see the load come.
	url := startDashboard(t, l.ns)
	l.submit("broken", "no-such-kind", `{"why": "<script>alert(1)</script>"}`)
	l.submitSleeps(160, 2000, 4000)

	alloc, cancelAlloc := chromedp.NewExecAllocator(t.Context(),
		chromedp.ExecPath(browser), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun, chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true), chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1400, 1000))
	defer cancelAlloc()
	ctx, cancelBrowser := chromedp.NewContext(alloc, chromedp.WithLogf(t.Logf))
	defer cancelBrowser()
	// The first run starts the browser, which lives as long as its
	// context: no timeout on this one.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("starting %s: %v", browser, err)
	}
	do := func(what string, timeout time.Duration, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		c, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		if err := chromedp.Do(c, steps...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	eval := func(what, expression string) string {
		t.Helper()
		c, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		v, err := chromedp.Run(c, chromedp.Evaluate[string](expression))
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		return v
	}
	poll := func(what string, timeout time.Duration, predicate string) string {
		t.Helper()
		c, cancel := context.WithTimeout(ctx, timeout+10*time.Second)
		defer cancel()
		v, err := chromedp.Run(c, chromedp.Poll[string](predicate, chromedp.WithPollingTimeout(timeout), chromedp.WithPollingInterval(20*time.Millisecond)))
		if err != nil {
			t.Fatalf("waiting for %s: %v (last seen: %s)", what, err, eval("reading the page", `document.body.innerText`))
		}
		return v
	}
	shot := func(name string) {
		t.Helper()
		c, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		png, err := chromedp.Run(c, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatalf("screenshot %s: %v", name, err)
		}
		path := filepath.Join(shots, name+".png")
		if err := os.WriteFile(path, png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot %s", path)
	}
	visible := func(sel string) chromedp.Action[chromedp.Void] { return chromedp.WaitVisible(chromedp.CSS(sel)) }
	click := func(sel string) chromedp.Action[chromedp.Void] { return chromedp.Click(chromedp.CSS(sel)) }

	// The overview lists the loop; its page shows the pods at work.
	row := fmt.Sprintf(`tr[data-loop="%s/dash"]`, l.ns)
	do("loading the overview", time.Minute, chromedp.Navigate(url), visible(row))
	shot("overview")
	do("opening the loop's page", time.Minute, click(row+" a"), visible(`tr[data-pod] button.drain`))
	poll("a worker's tasks in flight", time.Minute,
		`Array.from(document.querySelectorAll("tr[data-pod] td:nth-child(6)")).some(td => parseInt(td.textContent) > 0) ? "busy" : ""`)
	shot("loop-under-load")

	// Drain the first pod: a confirmation, then the pod goes draining and
	// drained, watched by a recorder of the states the live updates show.
	pod := eval("reading the first pod", `document.querySelector("tr[data-pod]").dataset.pod`)
	sel := fmt.Sprintf(`tr[data-pod=%q]`, pod)
	do("asking to drain "+pod, time.Minute, click(sel+" button.drain"), visible(`#confirm`))
	if question := eval("reading the question", `document.querySelector(".question").textContent`); !strings.Contains(question, "Drain pod "+pod) {
		t.Fatalf("the confirmation asks %q", question)
	}
	do("confirming", time.Minute, click(`#confirm`), visible(`.done`))
	eval("recording the pod's states", recorder(pod))
	do("waiting for "+pod+" draining", time.Minute, visible(sel+".state-draining"))
	shot("draining")
	// Drained lasts from the worker's report until the pod is gone, which
	// can be quicker than an update: the page must show the pod leave
	// draining (drained, or gone); the API says how it drained.
	seen := poll(pod+" drained or gone", 3*time.Minute,
		`window.seenStates.some(s => s === "drained" || s === "gone") ? window.seenStates.join(" → ") : ""`)
	t.Logf("pod %s went through %s on the page", pod, seen)
	shot("drained")
	eventually(t, time.Minute, pod+" reporting Drained", func() (bool, error) {
		_, ok := watch.drainedReason(pod)
		return ok, nil
	})
	if reason, _ := watch.drainedReason(pod); reason != contract.DrainedReasonCompleted {
		t.Errorf("pod %s drained with reason %q; want %s, its tasks finishing well within the deadline", pod, reason, contract.DrainedReasonCompleted)
	}
	l.waitAllAccounted(3 * time.Minute)
	watch.check(t)

	// The dead letter (a kind no handler knows, its payload markup shown
	// as text) goes back to the queue from the page.
	dead := `tr[data-task="broken"]`
	do("waiting for the dead letter", 2*time.Minute, visible(dead))
	if scripts := eval("counting scripts", `String(document.querySelectorAll("script").length)`); scripts != "1" {
		t.Errorf("the page holds %s script elements, want only the dashboard's own", scripts)
	}
	shot("dashboard")
	seq := l.deadSeq(t, "broken")
	do("requeueing the dead letter", time.Minute, click(dead+" button.requeue"), visible(`#confirm`), click(`#confirm`), visible(`.done`))
	if done := eval("reading the outcome", `document.querySelector(".done").textContent`); !strings.Contains(done, "dead letter broken (no-such-kind) requeued") {
		t.Errorf("after requeueing the page says %q", done)
	}
	shot("requeued")
	eventually(t, 2*time.Minute, "the requeued task run again and dead-lettered anew", func() (bool, error) {
		again, err := l.deadSeqOf("broken")
		return again > seq, err
	})
}

// recorder installs a recorder of the states the page shows for a pod,
// kept in window.seenStates across live updates.
func recorder(pod string) string {
	return fmt.Sprintf(`window.seenStates = window.seenStates || [];
if (!window.stateRecorder) { window.stateRecorder = setInterval(function () {
  var row = document.querySelector('tr[data-pod=%q]');
  var s = row ? row.className.replace("state-", "") : "gone";
  if (window.seenStates[window.seenStates.length - 1] !== s) { window.seenStates.push(s); }
}, 20); }
"recording"`, pod)
}

// deadSeq is the sequence of a task's dead letter; it fails the test when
// there is none.
func (l *loop) deadSeq(t *testing.T, id string) uint64 {
	t.Helper()
	seq, err := l.deadSeqOf(id)
	if err != nil || seq == 0 {
		t.Fatalf("no dead letter %s: %v", id, err)
	}
	return seq
}

// deadSeqOf is the sequence of a task's latest dead letter, 0 for none.
func (l *loop) deadSeqOf(id string) (uint64, error) {
	stream, err := l.js.Stream(l.t.Context(), l.names.DeadStream)
	if err != nil {
		return 0, err
	}
	m, err := stream.GetLastMsgForSubject(l.t.Context(), l.names.DeadSubjectOf(id))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	return m.Sequence, nil
}

func chromiumPath() string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// startDashboard builds kubectl-loops, runs `kubectl loops dashboard` on
// namespace with the suite's kubeconfig, as a user would, and returns the
// URL it prints. It stops when the test ends.
func startDashboard(t *testing.T, namespace string) string {
	t.Helper()
	bin := filepath.Join(env.BinDir, "kubectl-loops")
	build := exec.CommandContext(t.Context(), "go", "build", "-o", bin, "./cmd/kubectl-loops")
	build.Dir = env.Root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/kubectl-loops: %v\n%s", err, out)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cmd := exec.CommandContext(ctx, bin, "dashboard", "--kubeconfig", env.Kubeconfig, "-n", namespace, "--no-browser")
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = 10 * time.Second
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var logs strings.Builder
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		_ = cmd.Wait()
		t.Logf("the dashboard's log:\n%s", logs.String())
	})
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if url, ok := strings.CutPrefix(sc.Text(), "dashboard at "); ok {
				lines <- strings.Fields(url)[0]
			}
		}
		close(lines)
	}()
	select {
	case url, ok := <-lines:
		if !ok {
			t.Fatal("the dashboard ended before printing its URL")
		}
		return url
	case <-time.After(2 * time.Minute):
		t.Fatal("the dashboard printed no URL within 2 minutes")
	}
	return ""
}
