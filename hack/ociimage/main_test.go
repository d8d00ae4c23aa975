package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestAStaticBinaryBecomesAnImageThatVerifies(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "hello")
	build := exec.CommandContext(t.Context(), "go", "build", "-o", bin, "./testdata/hello")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	archive := filepath.Join(dir, "images", "hello.tar")
	var out bytes.Buffer
	if err := run([]string{"build", "--binary", bin, "--entrypoint", "/hello", "--tag", "example.com/hello:test", "--out", archive, "--version", "v1.2.3",
		"--source", "https://example.com/hello"}, &out); err != nil {
		t.Fatalf("build: %v", err)
	}
	out.Reset()
	if err := run([]string{"verify", "--archive", archive, "--entrypoint", "/hello"}, &out); err != nil {
		t.Fatalf("verify: %v", err)
	}
	for _, want := range []string{"entrypoint /hello (static ELF", "user 65532:65532", "2 layers", "linux/amd64", "version v1.2.3", "source https://example.com/hello"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("verify printed %q, want %q in it", out.String(), want)
		}
	}
	// The wrong entrypoint is caught.
	if err := run([]string{"verify", "--archive", archive, "--entrypoint", "/manager"}, &out); err == nil || !strings.Contains(err.Error(), `want ["/manager"]`) {
		t.Errorf("verify with the wrong entrypoint: %v", err)
	}
}

func TestBinariesThatCannotRunOnAnEmptyBaseAreRefused(t *testing.T) {
	dir := t.TempDir()
	text := filepath.Join(dir, "script.sh")
	if err := os.WriteFile(text, []byte("#!/bin/sh\necho hi\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	dynamic, err := exec.LookPath("ls") // Debian's ls is dynamically linked
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, binary, want string
	}{
		{"a script is refused", text, "not an ELF binary"},
		{"a dynamically linked binary is refused", dynamic, "dynamically linked"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := run([]string{"build", "--binary", tc.binary, "--entrypoint", "/x", "--tag", "example.com/x:test", "--out", filepath.Join(dir, "x.tar")}, &bytes.Buffer{})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("build: %v, want an error containing %q", err, tc.want)
			}
		})
	}
}
