package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestKubectlFindsThePlugin builds the binary into a folder on PATH and
// asks kubectl itself, as a user would.
func TestKubectlFindsThePlugin(t *testing.T) {
	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		t.Fatalf("kubectl is needed on PATH for this test: %v", err)
	}
	dir := t.TempDir()
	build := exec.CommandContext(t.Context(), "go", "build", "-o", filepath.Join(dir, "kubectl-loops"), ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	env := append(os.Environ(), "PATH="+dir+string(os.PathListSeparator)+os.Getenv("PATH"))

	list := exec.CommandContext(t.Context(), kubectl, "plugin", "list")
	list.Env = env
	out, _ := list.CombinedOutput() // non-zero when other plugins on PATH have warnings
	if !strings.Contains(string(out), filepath.Join(dir, "kubectl-loops")) {
		t.Errorf("kubectl plugin list does not show the plugin:\n%s", out)
	}

	help := exec.CommandContext(t.Context(), kubectl, "loops", "--help")
	help.Env = env
	out, err = help.CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl loops --help: %v\n%s", err, out)
	}
	for _, want := range []string{"kubectl loops [command]", "submit", "status", "drain", "top", "dead-letters", "dashboard", "--context", "--namespace", "--nats-url"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("kubectl loops --help does not mention %q:\n%s", want, out)
		}
	}
}
