// Command installer writes config/default, built with kustomize, as one
// file for `kubectl apply -f`, with the operator's image set
// (make build-installer, make release).
//
//	go run ./hack/installer -image ghcr.io/tenire/loop-operator:v0.1.0 -out dist/install.yaml
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/tenire/loop-operator/internal/manifests"
)

func main() {
	image := flag.String("image", "ghcr.io/tenire/loop-operator:latest", "the operator's image")
	out := flag.String("out", "dist/install.yaml", "the file to write")
	root := flag.String("root", ".", "the repository's root")
	flag.Parse()
	b, err := manifests.Installer(*root, *image)
	if err == nil {
		err = os.MkdirAll(filepath.Dir(*out), 0o755)
	}
	if err == nil {
		header := "# The Tenire loop operator: CRD, RBAC, admission policy and manager (kustomize build config/default).\n# kubectl apply -f install.yaml\n"
		err = os.WriteFile(*out, append([]byte(header), b...), 0o644)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "installer:", err)
		os.Exit(1)
	}
	fmt.Println("wrote", *out, "with image", *image)
}
