package main

import (
	"archive/tar"
	"bytes"
	"debug/elf"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// nonRoot is the user the images run as, distroless's "nonroot".
const nonRoot = 65532

// caBundle is where the CA certificates are read from on the build machine
// and written to in the image.
const caBundle = "/etc/ssl/certs/ca-certificates.crt"

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "ociimage:", err)
		os.Exit(1)
	}
}

func run(args []string, out io.Writer) error {
	if len(args) == 0 {
		return errors.New("usage: ociimage build|verify [flags]")
	}
	fs := flag.NewFlagSet("ociimage "+args[0], flag.ContinueOnError)
	binary := fs.String("binary", "", "static binary to put in the image (build)")
	entrypoint := fs.String("entrypoint", "", "path of the binary in the image, e.g. /manager")
	tag := fs.String("tag", "", "image name and tag (build)")
	archive := fs.String("out", "", "image archive to write (build)")
	fs.StringVar(archive, "archive", "", "image archive to read (verify)")
	arch := fs.String("arch", "amd64", "architecture of the binary (build)")
	version := fs.String("version", "dev", "the image's org.opencontainers.image.version label (build)")
	source := fs.String("source", "https://github.com/tenire/loop-operator", "the image's org.opencontainers.image.source label: where its binary's source is (build)")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	switch args[0] {
	case "build":
		if *binary == "" || *entrypoint == "" || *tag == "" || *archive == "" {
			return errors.New("build needs --binary, --entrypoint, --tag and --out")
		}
		start := time.Now()
		if err := build(*binary, *entrypoint, *tag, *archive, *arch, *version, *source); err != nil {
			return err
		}
		fmt.Fprintf(out, "built %s (%s) into %s in %s\n", *tag, *entrypoint, *archive, time.Since(start).Round(time.Millisecond))
		return nil
	case "verify":
		if *archive == "" || *entrypoint == "" {
			return errors.New("verify needs --archive and --entrypoint")
		}
		summary, err := verify(*archive, *entrypoint)
		if err != nil {
			return fmt.Errorf("%s: %w", *archive, err)
		}
		fmt.Fprintf(out, "%s: %s\n", *archive, summary)
		return nil
	}
	return fmt.Errorf("unknown command %q: want build or verify", args[0])
}

// file is one file of a layer, or a folder when dir is set.
type file struct {
	path string
	mode int64
	data []byte
	dir  bool
	uid  int // owner (and group), root by default
}

// layer makes a reproducible layer (fixed times, root-owned) of files.
func layer(files ...file) (v1.Layer, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dirs := map[string]bool{}
	for _, f := range files {
		// Parent folders first, as a tar extractor expects.
		parts := strings.Split(strings.TrimPrefix(filepath.Dir(f.path), "/"), "/")
		for i := range parts {
			dir := strings.Join(parts[:i+1], "/")
			if dir == "" || dirs[dir] {
				continue
			}
			dirs[dir] = true
			if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: dir + "/", Mode: 0o755, ModTime: time.Unix(0, 0)}); err != nil {
				return nil, err
			}
		}
		name := strings.TrimPrefix(f.path, "/")
		if f.dir {
			dirs[name] = true
			if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: name + "/", Mode: f.mode, Uid: f.uid, Gid: f.uid, ModTime: time.Unix(0, 0)}); err != nil {
				return nil, err
			}
			continue
		}
		hdr := &tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: f.mode, Uid: f.uid, Gid: f.uid, Size: int64(len(f.data)), ModTime: time.Unix(0, 0)}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, err
		}
		if _, err := tw.Write(f.data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	data := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil })
}

func build(binaryPath, entrypoint, tag, archive, arch, version, source string) error {
	ref, err := name.NewTag(tag)
	if err != nil {
		return fmt.Errorf("tag %q: %w", tag, err)
	}
	bin, err := os.ReadFile(binaryPath)
	if err != nil {
		return err
	}
	if err := checkStatic(bytes.NewReader(bin)); err != nil {
		return fmt.Errorf("%s: %w (build it with CGO_ENABLED=0)", binaryPath, err)
	}
	id := strconv.Itoa(nonRoot)
	base := []file{
		{path: "/etc/passwd", mode: 0o644, data: []byte("root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:" + id + ":" + id + ":nonroot:/home/nonroot:/sbin/nologin\n")},
		{path: "/etc/group", mode: 0o644, data: []byte("root:x:0:\nnonroot:x:" + id + ":\n")},
		// A temporary folder for everyone (os.TempDir: the worker's
		// --standalone store, Go's own temporary files) and the user's home,
		// as distroless has them. A pod with a read-only root file system
		// mounts an emptyDir over /tmp instead.
		{path: "/tmp", mode: 0o1777, dir: true},
		{path: "/home/nonroot", mode: 0o700, dir: true, uid: nonRoot},
	}
	if certs, err := os.ReadFile(caBundle); err == nil {
		base = append(base, file{path: caBundle, mode: 0o644, data: certs})
	} else {
		return fmt.Errorf("the CA bundle for the image: %w (install Debian's ca-certificates)", err)
	}
	baseLayer, err := layer(base...)
	if err != nil {
		return err
	}
	binLayer, err := layer(file{path: entrypoint, mode: 0o755, data: bin})
	if err != nil {
		return err
	}
	img, err := mutate.AppendLayers(empty.Image, baseLayer, binLayer)
	if err != nil {
		return err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", arch
	cf.Created = v1.Time{Time: time.Unix(0, 0)}
	cf.Config = v1.Config{
		Entrypoint: []string{entrypoint},
		User:       id + ":" + id,
		WorkingDir: "/",
		Env:        []string{"PATH=/", "SSL_CERT_FILE=" + caBundle},
		Labels: map[string]string{
			"org.opencontainers.image.source":  source,
			"org.opencontainers.image.title":   filepath.Base(entrypoint),
			"org.opencontainers.image.version": version,
		},
	}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(archive), 0o755); err != nil {
		return err
	}
	tmp := archive + ".tmp"
	if err := tarball.WriteToFile(tmp, ref, img); err != nil {
		return err
	}
	return os.Rename(tmp, archive)
}

// checkStatic fails for a file that is not an executable ELF binary or
// that needs a dynamic loader.
func checkStatic(r io.ReaderAt) error {
	f, err := elf.NewFile(r)
	if err != nil {
		return fmt.Errorf("not an ELF binary: %w", err)
	}
	defer func() { _ = f.Close() }()
	if f.Type != elf.ET_EXEC && f.Type != elf.ET_DYN {
		return fmt.Errorf("ELF type %v is not an executable", f.Type)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return errors.New("dynamically linked (it names an ELF interpreter)")
		}
	}
	return nil
}

// verify reads an image archive back and checks its entrypoint and user.
func verify(archive, entrypoint string) (string, error) {
	img, err := tarball.ImageFromPath(archive, nil)
	if err != nil {
		return "", err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return "", err
	}
	if got := cf.Config.Entrypoint; len(got) != 1 || got[0] != entrypoint {
		return "", fmt.Errorf("entrypoint is %q, want [%q]", got, entrypoint)
	}
	uid, _, _ := strings.Cut(cf.Config.User, ":")
	if n, err := strconv.Atoi(uid); err != nil || n == 0 {
		return "", fmt.Errorf("user is %q, want a numeric non-root user", cf.Config.User)
	}
	rc := mutate.Extract(img)
	defer func() { _ = rc.Close() }()
	tr := tar.NewReader(rc)
	want := strings.TrimPrefix(entrypoint, "/")
	var (
		size   = -1
		tmpDir bool
	)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return "", err
		}
		switch strings.Trim(hdr.Name, "/") {
		case "tmp":
			// Everyone may write, nobody may remove another's files.
			tmpDir = hdr.Typeflag == tar.TypeDir && hdr.Mode&0o1777 == 0o1777
		case want:
			if hdr.Typeflag != tar.TypeReg || hdr.Mode&0o111 == 0 {
				return "", fmt.Errorf("%s is not an executable regular file (mode %o)", entrypoint, hdr.Mode)
			}
			data, err := io.ReadAll(tr)
			if err != nil {
				return "", err
			}
			if err := checkStatic(bytes.NewReader(data)); err != nil {
				return "", fmt.Errorf("%s: %w", entrypoint, err)
			}
			size = len(data)
		}
	}
	switch {
	case size < 0:
		return "", fmt.Errorf("the image has no file %s", entrypoint)
	case !tmpDir:
		return "", errors.New("the image has no /tmp folder with mode 1777 (os.TempDir fails in it)")
	}
	layers, _ := img.Layers()
	return fmt.Sprintf("entrypoint %s (static ELF, %d bytes), /tmp 1777, user %s, %d layers, %s/%s, version %s, source %s",
		entrypoint, size, cf.Config.User, len(layers), cf.OS, cf.Architecture, cf.Config.Labels["org.opencontainers.image.version"],
		cf.Config.Labels["org.opencontainers.image.source"]), nil
}
