package main

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

func writeFile(t *testing.T, path, data string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(data), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil { // past the umask
		t.Fatal(err)
	}
}

func TestAnImageIsItsLayersInOrderWithItsConfig(t *testing.T) {
	dir := t.TempDir()
	// A base layer as an existing tar, as mmdebstrap writes one.
	var base bytes.Buffer
	tw := tar.NewWriter(&base)
	for _, f := range []struct{ name, data string }{{"etc/os-release", "base"}, {"usr/bin/tool", "old"}} {
		if err := tw.WriteHeader(&tar.Header{Name: f.name, Mode: 0o644, Size: int64(len(f.data)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(f.data)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	baseTar := filepath.Join(dir, "rootfs.tar")
	if err := os.WriteFile(baseTar, base.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	// An upper layer from a folder: a binary, a link, a sticky folder.
	upper := filepath.Join(dir, "upper")
	writeFile(t, filepath.Join(upper, "usr/bin/tool"), "new", 0o755)
	writeFile(t, filepath.Join(upper, "etc/conf"), "x=1", 0o600)
	if err := os.Symlink("/usr/bin/tool", filepath.Join(upper, "usr/bin/alias")); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(upper, "tmp"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(upper, "tmp"), 0o1777|os.ModeSticky); err != nil {
		t.Fatal(err)
	}

	out := filepath.Join(dir, "out", "image.tar")
	var log bytes.Buffer
	err := run([]string{"--tag", "registry.example/node:v1", "--tag", "registry.example/tools:v2", "--out", out,
		"--layer-tar", baseTar, "--layer-dir", upper,
		"--entrypoint", "/usr/local/bin/entrypoint", "--entrypoint", "/sbin/init",
		"--env", "container=docker", "--stop-signal", "SIGRTMIN+3", "--label", "recipe=abc"}, &log)
	if err != nil {
		t.Fatal(err)
	}
	node, err := name.NewTag("registry.example/node:v1")
	if err != nil {
		t.Fatal(err)
	}
	img, err := tarball.ImageFromPath(out, &node)
	if err != nil {
		t.Fatal(err)
	}
	tools, err := name.NewTag("registry.example/tools:v2")
	if err != nil {
		t.Fatal(err)
	}
	same, err := tarball.ImageFromPath(out, &tools)
	if err != nil {
		t.Fatalf("the second tag: %v", err)
	}
	if d1, _ := img.Digest(); func() bool { d2, _ := same.Digest(); return d1 != d2 }() {
		t.Error("the two tags name different images, want one image under both")
	}
	if n := layerFiles(t, out); n != 2 {
		t.Errorf("the archive holds %d layer files, want 2: the image's layers once for both tags", n)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(cf.Config.Entrypoint, []string{"/usr/local/bin/entrypoint", "/sbin/init"}) || cf.Config.User != "0" || cf.Config.StopSignal != "SIGRTMIN+3" {
		t.Errorf("config = %+v", cf.Config)
	}
	if cf.Config.Labels["recipe"] != "abc" {
		t.Errorf("labels = %v, want recipe=abc", cf.Config.Labels)
	}
	if !slices.Contains(cf.Config.Env, "container=docker") || !slices.ContainsFunc(cf.Config.Env, func(e string) bool { return e == "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" }) {
		t.Errorf("env = %q, want container=docker and a PATH", cf.Config.Env)
	}
	if layers, _ := img.Layers(); len(layers) != 2 {
		t.Errorf("%d layers, want 2", len(layers))
	}

	type entry struct {
		data     string
		mode     int64
		link     string
		uid, gid int
	}
	got := map[string]entry{}
	rc := mutate.Extract(img) // the flattened file system, upper layers winning
	defer func() { _ = rc.Close() }()
	tr := tar.NewReader(rc)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(tr)
		if !hdr.ModTime.IsZero() && hdr.ModTime.Unix() != 0 {
			t.Errorf("%s dated %v, want the epoch", hdr.Name, hdr.ModTime)
		}
		got[strings.TrimSuffix(hdr.Name, "/")] = entry{string(data), hdr.Mode, hdr.Linkname, hdr.Uid, hdr.Gid}
	}
	for name, want := range map[string]entry{
		"etc/os-release": {data: "base", mode: 0o644},
		"usr/bin/tool":   {data: "new", mode: 0o755},
		"etc/conf":       {data: "x=1", mode: 0o600},
		"usr/bin/alias":  {link: "/usr/bin/tool", mode: 0o777},
		"tmp":            {mode: 0o1777},
	} {
		if g, ok := got[name]; !ok || g != want {
			t.Errorf("%s = %+v (present %v), want %+v", name, g, ok, want)
		}
	}
}

// layerFiles counts the compressed layers in a docker archive.
func layerFiles(t *testing.T, archive string) int {
	t.Helper()
	f, err := os.Open(archive)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	n := 0
	tr := tar.NewReader(f)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return n
		}
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasSuffix(hdr.Name, ".tar.gz") {
			n++
		}
	}
}

func TestBadArgumentsSayWhatIsMissing(t *testing.T) {
	for _, args := range [][]string{
		{"--out", "x.tar", "--layer-dir", "."},
		{"--tag", "a:b", "--layer-dir", "."},
		{"--tag", "a:b", "--out", "x.tar"},
		{"--tag", "UPPER CASE", "--out", "x.tar", "--layer-dir", "."},
		{"--tag", "a:b", "--out", "x.tar", "--layer-dir", ".", "--label", "novalue"},
	} {
		if err := run(args, io.Discard); err == nil {
			t.Errorf("run(%q) succeeded", args)
		}
	}
	if err := run([]string{"--tag", "a:b", "--out", filepath.Join(t.TempDir(), "x.tar"), "--layer-tar", "no-such.tar"}, io.Discard); err == nil {
		t.Error("a missing layer tar gave no error")
	}
}
