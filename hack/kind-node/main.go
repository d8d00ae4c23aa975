// Command kind-node assembles a container image from local layers, without
// Docker and without pulling anything: the kind node image of
// hack/kind-node/build.sh and the images its containerd holds (the control
// plane's, etcd, CoreDNS, pause, the CNI's).
//
// Usage:
//
//	kind-node --tag NAME:TAG [--tag NAME:TAG]... --out image.tar [--layer-tar rootfs.tar]... [--layer-dir dir]...
//	         [--entrypoint /path]... [--cmd arg]... [--user 0] [--env K=V]... [--label K=V]...
//	         [--stop-signal SIG]
//	kind-node storage-manifest --kind-src DIR --provisioner-image IMAGE --helper-image IMAGE
//
// Layers are stacked in the order given: a --layer-tar is an existing tar
// (a root file system from mmdebstrap, used as it is), a --layer-dir a
// folder written into a layer with its modes and symbolic links, every
// file owned by root and dated at the epoch, so that the same folder makes
// the same layer. The result is a docker-archive (docker load, ctr images
// import) with every tag given, the image stored once.
//
// storage-manifest prints kind's default storage manifest (rancher's
// local-path-provisioner) from the kind module's source, with the images
// given in place of kind's (storage.go).
package main

import (
	"archive/tar"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "kindnode:", err)
		os.Exit(1)
	}
}

// layerFlag is one --layer-tar or --layer-dir, in command-line order.
type layerFlag struct {
	path string
	dir  bool
}

type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

func run(args []string, out io.Writer) error {
	if len(args) > 0 && args[0] == "storage-manifest" {
		return runStorageManifest(args[1:], out)
	}
	fs := flag.NewFlagSet("kindnode", flag.ContinueOnError)
	var tags listFlag
	fs.Var(&tags, "tag", "an image name and tag (repeatable: one image, several names)")
	archive := fs.String("out", "", "image archive to write")
	user := fs.String("user", "0", "user the image runs as")
	stop := fs.String("stop-signal", "", "the image's stop signal")
	arch := fs.String("arch", "amd64", "the image's architecture")
	var layers []layerFlag
	fs.Func("layer-tar", "a tar to use as a layer (repeatable, in order)", func(v string) error {
		layers = append(layers, layerFlag{path: v})
		return nil
	})
	fs.Func("layer-dir", "a folder to write into a layer (repeatable, in order)", func(v string) error {
		layers = append(layers, layerFlag{path: v, dir: true})
		return nil
	})
	var entrypoint, cmd, env, labels listFlag
	fs.Var(&entrypoint, "entrypoint", "an argument of the entrypoint (repeatable)")
	fs.Var(&cmd, "cmd", "an argument of the command (repeatable)")
	fs.Var(&env, "env", "an environment variable K=V (repeatable)")
	fs.Var(&labels, "label", "a label K=V (repeatable)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if len(tags) == 0 || *archive == "" || len(layers) == 0 {
		return errors.New("--tag, --out and at least one --layer-tar or --layer-dir are needed")
	}
	refs := make([]name.Reference, len(tags))
	for i, t := range tags {
		ref, err := name.NewTag(t)
		if err != nil {
			return fmt.Errorf("tag %q: %w", t, err)
		}
		refs[i] = ref
	}
	start := time.Now()
	tmpDir, err := os.MkdirTemp("", "kindnode-")
	if err != nil {
		return err
	}
	defer func() { _ = os.RemoveAll(tmpDir) }()
	img := empty.Image
	for _, l := range layers {
		var layer v1.Layer
		if l.dir {
			layer, err = dirLayer(l.path, tmpDir)
		} else {
			layer, err = tarball.LayerFromFile(l.path)
		}
		if err != nil {
			return fmt.Errorf("layer %s: %w", l.path, err)
		}
		if img, err = mutate.AppendLayers(img, layer); err != nil {
			return err
		}
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", *arch
	cf.Created = v1.Time{Time: time.Unix(0, 0)}
	if !slices.ContainsFunc(env, func(e string) bool { return strings.HasPrefix(e, "PATH=") }) {
		env = append(listFlag{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}, env...)
	}
	cf.Config = v1.Config{
		Entrypoint: entrypoint,
		Cmd:        cmd,
		User:       *user,
		WorkingDir: "/",
		Env:        env,
		StopSignal: *stop,
		Labels:     map[string]string{"org.opencontainers.image.source": "https://github.com/tenire/loop-operator"},
	}
	for _, l := range labels {
		k, v, ok := strings.Cut(l, "=")
		if !ok || k == "" {
			return fmt.Errorf("label %q: want K=V", l)
		}
		cf.Config.Labels[k] = v
	}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(*archive), 0o755); err != nil {
		return err
	}
	tmp := *archive + ".tmp"
	named := make(map[name.Reference]v1.Image, len(refs))
	for _, ref := range refs {
		named[ref] = img
	}
	if err := tarball.MultiRefWriteToFile(tmp, named); err != nil {
		_ = os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, *archive); err != nil {
		return err
	}
	fmt.Fprintf(out, "kind-node: %s (%d layers) into %s in %s\n", tags.String(), len(layers), *archive, time.Since(start).Round(time.Millisecond))
	return nil
}

// dirLayer writes the folder root into a layer, written to a temporary
// file (a node's layer holds hundreds of megabytes of binaries and image
// archives).
func dirLayer(root, tmpDir string) (v1.Layer, error) {
	f, err := os.CreateTemp(tmpDir, "layer-*.tar")
	if err != nil {
		return nil, err
	}
	defer func() { _ = f.Close() }()
	if err := writeDir(f, root); err != nil {
		_ = os.Remove(f.Name())
		return nil, err
	}
	if err := f.Close(); err != nil {
		return nil, err
	}
	// The file stays until the archive is written: the layer is read
	// twice (its digest, then the archive).
	return tarball.LayerFromFile(f.Name())
}

// unixMode is the permission bits of m with setuid, setgid and sticky.
func unixMode(m fs.FileMode) int64 {
	mode := int64(m.Perm())
	for bit, unix := range map[fs.FileMode]int64{fs.ModeSetuid: 0o4000, fs.ModeSetgid: 0o2000, fs.ModeSticky: 0o1000} {
		if m&bit != 0 {
			mode |= unix
		}
	}
	return mode
}

// writeDir writes the tree under root as a tar: folders, regular files and
// symbolic links, with their permission bits, owned by root, at the epoch.
func writeDir(w io.Writer, root string) error {
	tw := tar.NewWriter(w)
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, path)
		if err != nil || rel == "." {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		hdr := &tar.Header{Name: filepath.ToSlash(rel), Mode: unixMode(info.Mode()), ModTime: time.Unix(0, 0), Format: tar.FormatPAX}
		switch {
		case d.IsDir():
			hdr.Typeflag, hdr.Name = tar.TypeDir, hdr.Name+"/"
		case info.Mode()&fs.ModeSymlink != 0:
			if hdr.Linkname, err = os.Readlink(path); err != nil {
				return err
			}
			hdr.Typeflag = tar.TypeSymlink
		case info.Mode().IsRegular():
			hdr.Typeflag, hdr.Size = tar.TypeReg, info.Size()
		default:
			return fmt.Errorf("%s: not a folder, file or symbolic link", path)
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if hdr.Typeflag != tar.TypeReg {
			return nil
		}
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer func() { _ = f.Close() }()
		_, err = io.Copy(tw, f)
		return err
	})
	if err != nil {
		return err
	}
	return tw.Close()
}
