package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/chart/loader"
	"sigs.k8s.io/yaml"
)

const sums = `1111111111111111111111111111111111111111111111111111111111111111  kubectl-loops_linux_amd64.tar.gz
2222222222222222222222222222222222222222222222222222222222222222  kubectl-loops_linux_arm64.tar.gz
3333333333333333333333333333333333333333333333333333333333333333  kubectl-loops_darwin_amd64.tar.gz
4444444444444444444444444444444444444444444444444444444444444444  kubectl-loops_darwin_arm64.tar.gz
5555555555555555555555555555555555555555555555555555555555555555  install.yaml
`

func TestKrewManifest(t *testing.T) {
	b, err := Krew("v1.2.3", strings.NewReader(sums))
	if err != nil {
		t.Fatal(err)
	}
	var m struct {
		Kind     string
		Metadata struct{ Name string }
		Spec     struct {
			Version   string
			Platforms []struct {
				Selector struct{ MatchLabels map[string]string } `json:"selector"`
				URI      string
				SHA256   string `json:"sha256"`
				Bin      string
			}
		}
	}
	if err := yaml.Unmarshal(b, &m); err != nil {
		t.Fatalf("the manifest is not YAML: %v\n%s", err, b)
	}
	if m.Kind != "Plugin" || m.Metadata.Name != "loops" || m.Spec.Version != "v1.2.3" || len(m.Spec.Platforms) != 4 {
		t.Fatalf("manifest:\n%s", b)
	}
	linux := m.Spec.Platforms[2]
	if linux.Selector.MatchLabels["os"] != "linux" || linux.Selector.MatchLabels["arch"] != "amd64" ||
		linux.SHA256 != strings.Repeat("1", 64) || linux.Bin != "kubectl-loops" ||
		linux.URI != "https://github.com/tenire/loop-operator/releases/download/v1.2.3/kubectl-loops_linux_amd64.tar.gz" {
		t.Errorf("linux/amd64: %+v", linux)
	}
}

func TestKrewManifestNeedsEveryPlatform(t *testing.T) {
	_, err := Krew("v1.2.3", strings.NewReader(strings.SplitN(sums, "\n", 2)[1]))
	if err == nil || !strings.Contains(err.Error(), "linux_amd64") {
		t.Fatalf("a missing archive: %v", err)
	}
}

func TestChartPackage(t *testing.T) {
	dir := t.TempDir()
	var out strings.Builder
	if err := run([]string{"chart", "-version", "v1.2.3", "-chart", filepath.Join("..", "..", "charts", "loop-operator"), "-out", dir}, &out); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "loop-operator-1.2.3.tgz")
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("%v (printed %q)", err, out.String())
	}
	ch, err := loader.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if ch.Metadata.Version != "1.2.3" || ch.Metadata.AppVersion != "v1.2.3" || len(ch.CRDObjects()) != 1 {
		t.Errorf("packaged chart: version %s, appVersion %s, %d CRDs", ch.Metadata.Version, ch.Metadata.AppVersion, len(ch.CRDObjects()))
	}
}
