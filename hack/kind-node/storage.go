package main

import (
	"errors"
	"flag"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// The default storage of a kind node: kind's own manifest for rancher's
// local-path-provisioner (a Deployment that provisions a hostPath folder on
// the node of the pod that first uses a claim, and a helper pod that makes
// and removes those folders), read from sigs.k8s.io/kind's node image
// builder at build time, with the two images it names replaced by the ones
// build.sh assembles here.
const (
	storageFile          = "pkg/build/nodeimage/const_storage.go"
	storageManifestConst = "defaultStorageManifest"
	provisionerImageName = "storageProvisionerImage"
	helperImageName      = "storageHelperImage"
)

// runStorageManifest is `kind-node storage-manifest`: it prints kind's
// default storage manifest with the images given.
func runStorageManifest(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("kindnode storage-manifest", flag.ContinueOnError)
	kindSrc := fs.String("kind-src", "", "the folder of the sigs.k8s.io/kind module")
	provisioner := fs.String("provisioner-image", "", "the local-path-provisioner image")
	helper := fs.String("helper-image", "", "the image of the helper pod (needs /bin/sh, mkdir and rm)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *kindSrc == "" || *provisioner == "" || *helper == "" {
		return errors.New("storage-manifest needs --kind-src, --provisioner-image and --helper-image")
	}
	manifest, err := storageManifest(filepath.Join(*kindSrc, storageFile), map[string]string{
		provisionerImageName: *provisioner,
		helperImageName:      *helper,
	})
	if err != nil {
		return err
	}
	_, err = io.WriteString(out, manifest)
	return err
}

// storageManifest evaluates the constant defaultStorageManifest of the Go
// file at path: a concatenation of string literals and of the names in
// images, each replaced by its value. Any other name, or a name of images
// the manifest does not use, is an error: a kind version that changes the
// manifest's shape must be looked at, not half-substituted.
func storageManifest(path string, images map[string]string) (string, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	f, err := parser.ParseFile(token.NewFileSet(), path, src, parser.SkipObjectResolution)
	if err != nil {
		return "", err
	}
	var expr ast.Expr
	ast.Inspect(f, func(n ast.Node) bool {
		if vs, ok := n.(*ast.ValueSpec); ok {
			for i, id := range vs.Names {
				if id.Name == storageManifestConst && i < len(vs.Values) {
					expr = vs.Values[i]
				}
			}
		}
		return expr == nil
	})
	if expr == nil {
		return "", fmt.Errorf("%s: no constant %s", path, storageManifestConst)
	}
	used := map[string]bool{}
	var b strings.Builder
	var eval func(ast.Expr) error
	eval = func(e ast.Expr) error {
		switch e := e.(type) {
		case *ast.BinaryExpr:
			if e.Op != token.ADD {
				return fmt.Errorf("%s: operator %s in %s", path, e.Op, storageManifestConst)
			}
			if err := eval(e.X); err != nil {
				return err
			}
			return eval(e.Y)
		case *ast.BasicLit:
			if e.Kind != token.STRING {
				return fmt.Errorf("%s: a %s literal in %s", path, e.Kind, storageManifestConst)
			}
			s, err := strconv.Unquote(e.Value)
			if err != nil {
				return err
			}
			b.WriteString(s)
			return nil
		case *ast.Ident:
			v, ok := images[e.Name]
			if !ok {
				return fmt.Errorf("%s: %s uses %s, which has no replacement", path, storageManifestConst, e.Name)
			}
			used[e.Name] = true
			b.WriteString(v)
			return nil
		case *ast.ParenExpr:
			return eval(e.X)
		}
		return fmt.Errorf("%s: %s is not a concatenation of strings (%T)", path, storageManifestConst, e)
	}
	if err := eval(expr); err != nil {
		return "", err
	}
	for name := range images {
		if !used[name] {
			return "", fmt.Errorf("%s: %s does not use %s", path, storageManifestConst, name)
		}
	}
	return b.String(), nil
}
