package testenv

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	loopsv1alpha1 "github.com/tenire/loop-operator/api/v1alpha1"
)

// Scheme holds the built-in Kubernetes types and the project's API.
var Scheme = runtime.NewScheme()

func init() {
	if err := clientgoscheme.AddToScheme(Scheme); err != nil {
		panic(err)
	}
	if err := loopsv1alpha1.AddToScheme(Scheme); err != nil {
		panic(err)
	}
}

var assets = sync.OnceValues(findAssets)

// RepoRoot returns the root of the repository (the folder of go.mod).
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod above the working directory")
		}
		dir = parent
	}
}

// Assets returns the folder that holds kube-apiserver and etcd.
func Assets() (string, error) { return assets() }

func findAssets() (string, error) {
	dir := os.Getenv("KUBEBUILDER_ASSETS")
	if dir == "" {
		root, err := RepoRoot()
		if err != nil {
			return "", err
		}
		var out, errOut bytes.Buffer
		cmd := exec.Command("bash", filepath.Join(root, "hack", "kube-bins.sh"), "--print-dir")
		cmd.Stdout, cmd.Stderr = &out, &errOut
		if err := cmd.Run(); err != nil {
			return "", fmt.Errorf("hack/kube-bins.sh --print-dir: %w: %s", err, errOut.String())
		}
		dir = strings.TrimSpace(out.String())
	}
	for _, bin := range []string{"kube-apiserver", "etcd"} {
		if _, err := os.Stat(filepath.Join(dir, bin)); err != nil {
			return "", fmt.Errorf("the control plane is not built in %s (%w): run `make kube-bins` first", dir, err)
		}
	}
	return dir, nil
}

// CRDPath returns the folder of the generated CRDs.
func CRDPath() (string, error) {
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	return filepath.Join(root, "config", "crd", "bases"), nil
}

// New returns an environment with the project's CRDs, not yet started.
// Callers that need more (webhooks, a longer timeout) change it before Start.
func New() (*envtest.Environment, error) {
	dir, err := Assets()
	if err != nil {
		return nil, err
	}
	crds, err := CRDPath()
	if err != nil {
		return nil, err
	}
	return &envtest.Environment{
		BinaryAssetsDirectory: dir,
		CRDDirectoryPaths:     []string{crds},
		ErrorIfCRDPathMissing: true,
		Scheme:                Scheme,
	}, nil
}

// Start starts a real apiserver and etcd with the project's CRDs for one
// test and stops them when the test ends.
func Start(t testing.TB) *rest.Config {
	t.Helper()
	env, err := New()
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	cfg, err := env.Start()
	if err != nil {
		// Start may fail after etcd and the apiserver are up (a CRD the
		// apiserver refuses, say): stop them, or they outlive the test.
		if stopErr := env.Stop(); stopErr != nil {
			t.Logf("testenv: stopping the control plane after a failed start: %v", stopErr)
		}
		t.Fatalf("testenv: starting the control plane: %v", err)
	}
	t.Cleanup(func() {
		if err := env.Stop(); err != nil {
			t.Errorf("testenv: stopping the control plane: %v", err)
		}
	})
	return cfg
}
