package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/tenire/loop-operator/internal/testenv"
)

// TestTheGuidesProgramBuildsFromAnEmptyFolder follows section 1 of
// docs/writing-workers.md in an empty folder: a new module, the main.go
// the guide shows (read from the guide itself, so that the two cannot
// drift apart), the project's module (from this checkout, as `go get`
// would bring it from a release), and builds and vets it.
func TestTheGuidesProgramBuildsFromAnEmptyFolder(t *testing.T) {
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	guide, err := os.ReadFile(filepath.Join(root, "docs", "writing-workers.md"))
	if err != nil {
		t.Fatal(err)
	}
	section, _, _ := strings.Cut(string(guide[strings.Index(string(guide), "## 1. The handler"):]), "\n## 2.")
	blocks := regexp.MustCompile("(?s)```go\n(.*?)```").FindAllStringSubmatch(section, -1)
	if len(blocks) != 1 {
		t.Fatalf("section 1 of the guide has %d Go blocks, want exactly one (its main.go)", len(blocks))
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(blocks[0][1]), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"mod", "init", "example.com/upper"},
		{"mod", "edit", "-require", "github.com/tenire/loop-operator@v0.0.0", "-replace", "github.com/tenire/loop-operator=" + root},
		{"mod", "tidy"},
		{"build", "-o", filepath.Join(dir, "upper"), "."},
		{"vet", "."},
	} {
		cmd := exec.CommandContext(t.Context(), "go", args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "GOWORK=off")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go %s in the new module: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	// The program is the guide's: it refuses to start without a queue
	// and says what is missing, rather than running with defaults.
	out, err := exec.CommandContext(t.Context(), filepath.Join(dir, "upper")).CombinedOutput()
	if err == nil {
		t.Fatalf("the guide's worker started without any settings; output:\n%s", out)
	}
	t.Logf("the guide's worker without settings: %s", strings.TrimSpace(string(out)))
}
