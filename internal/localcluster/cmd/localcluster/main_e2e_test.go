//go:build e2e

package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/tenire/loop-operator/internal/testenv"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.IgnoreTopFunction("k8s.io/klog/v2.(*flushDaemon).run"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
	)
}

// TestUpDown runs the command as `make demo` would: up --detach, use the
// printed kubeconfig, then down --purge.
func TestUpDown(t *testing.T) {
	ctx := t.Context()
	bin := filepath.Join(t.TempDir(), "localcluster")
	if out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("building: %v\n%s", err, out)
	}
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Fatal(err)
	}
	const sleepArg = "313.25" // marks the process that runs beside the cluster
	dir := filepath.Join(t.TempDir(), "run")
	t.Cleanup(func() {
		// Whatever happened, nothing may be left running.
		if st, err := readState(dir); err == nil && alive(st.PID) {
			_ = exec.Command(bin, "down", "--dir", dir).Run()
		}
	})

	up := exec.CommandContext(ctx, bin, "up", "--detach", "--dir", dir, "--nodes", "1", "--crds", filepath.Join(root, "config", "crd", "bases"),
		"--process", "beside="+sleep+" "+sleepArg)
	var stderr strings.Builder
	up.Stderr = &stderr
	out, err := up.Output()
	if err != nil {
		t.Fatalf("up: %v\n%s\n%s", err, out, stderr.String())
	}
	if !strings.Contains(string(out), "export KUBECONFIG="+filepath.Join(dir, "kubeconfig")) || !strings.Contains(string(out), "export NATS_URL=nats://127.0.0.1:") {
		t.Errorf("up printed %q", out)
	}
	envOut, err := exec.CommandContext(ctx, bin, "env", "--dir", dir).Output()
	if err != nil || string(envOut) != string(out) {
		t.Errorf("env printed %q (%v), want %q", envOut, err, out)
	}
	st, err := readState(dir)
	if err != nil {
		t.Fatal(err)
	}

	cfg, err := clientcmd.BuildConfigFromFlags("", st.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		n, err := cs.CoreV1().Nodes().Get(ctx, "local-node-1", metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		for _, c := range n.Status.Conditions {
			if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		t.Fatalf("node local-node-1 ready: %v", err)
	}
	if _, err := cs.Discovery().ServerResourcesForGroupVersion("loops.tenire.io/v1alpha1"); err != nil {
		t.Errorf("the CRDs are not served: %v", err)
	}

	if !running(sleep, sleepArg) {
		t.Errorf("the --process program is not running")
	}
	if _, err := os.Stat(filepath.Join(dir, "logs", "beside.log")); err != nil {
		t.Errorf("the --process program's log: %v", err)
	}

	if out, err := exec.CommandContext(ctx, bin, "down", "--dir", dir, "--purge").CombinedOutput(); err != nil {
		t.Fatalf("down: %v\n%s", err, out)
	}
	if alive(st.PID) {
		t.Errorf("pid %d still runs after down", st.PID)
	}
	if running(sleep, sleepArg) {
		t.Errorf("the --process program still runs after down")
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("the run folder is still there after down --purge: %v", err)
	}
	// The control plane's processes went with it: the apiserver no longer
	// answers.
	if _, err := cs.Discovery().ServerVersion(); err == nil {
		t.Error("the apiserver still answers after down")
	}
}

// running reports whether a process runs bin with arg.
func running(bin, arg string) bool {
	dirs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, d := range dirs {
		b, err := os.ReadFile(d)
		if err == nil && string(b) == bin+"\x00"+arg+"\x00" {
			return true
		}
	}
	return false
}
