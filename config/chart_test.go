package config_test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/lint/support"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"github.com/tenire/loop-operator/internal/manifests"
)

// chartDir is the Helm chart, kept equal to config/default by
// TestChartRendersConfigDefault.
var chartDir = filepath.Join("..", "charts", "loop-operator")

// helmOnlyLabels are the labels the chart adds to config/'s (and
// config/'s managed-by: kustomize, which Helm sets to Helm).
var helmOnlyLabels = []string{"app.kubernetes.io/managed-by", "app.kubernetes.io/instance", "app.kubernetes.io/version", "helm.sh/chart"}

// clusterScoped kinds carry no namespace (kustomize sets one on the
// admission policy, which the API server ignores).
var clusterScoped = map[string]bool{
	"ClusterRole": true, "ClusterRoleBinding": true, "CustomResourceDefinition": true, "Namespace": true,
	"ValidatingAdmissionPolicy": true, "ValidatingAdmissionPolicyBinding": true,
}

// renderChart renders the chart as helm template does, into namespace
// tenire-system (the CRD of crds/ is not among the objects).
func renderChart(t *testing.T, vals map[string]any) []*unstructured.Unstructured {
	t.Helper()
	out, err := renderChartYAML(vals)
	if err != nil {
		t.Fatal(err)
	}
	objs, err := manifests.Objects(out)
	if err != nil {
		t.Fatalf("the chart's output is not YAML: %v\n%s", err, out)
	}
	return objs
}

func renderChartYAML(vals map[string]any) ([]byte, error) {
	ch, err := loader.Load(chartDir)
	if err != nil {
		return nil, err
	}
	install := action.NewInstall(&action.Configuration{})
	install.DryRun, install.ClientOnly, install.Replace = true, true, true
	install.ReleaseName, install.Namespace = "loop-operator", manifests.Namespace
	install.KubeVersion = &chartutil.KubeVersion{Version: "v1.37.2", Major: "1", Minor: "37"}
	rel, err := install.Run(ch, vals)
	if err != nil {
		return nil, fmt.Errorf("rendering the chart: %w", err)
	}
	return []byte(rel.Manifest), nil
}

// normalize drops what legitimately differs between the chart and config/.
func normalize(objs []*unstructured.Unstructured) map[string]*unstructured.Unstructured {
	m := map[string]*unstructured.Unstructured{}
	for _, o := range objs {
		o = o.DeepCopy()
		labels := o.GetLabels()
		for _, l := range helmOnlyLabels {
			delete(labels, l)
		}
		o.SetLabels(labels)
		if clusterScoped[o.GetKind()] {
			o.SetNamespace("")
		}
		// Round-trip through JSON so that numbers compare alike.
		b, _ := yaml.Marshal(o.Object)
		u := &unstructured.Unstructured{}
		_ = yaml.Unmarshal(b, &u.Object)
		m[o.GetKind()+"/"+o.GetName()] = u
	}
	return m
}

// TestChartRendersConfigDefault: with its default values, the chart renders
// the objects of config/default, less the Namespace (helm install
// --create-namespace) and the CRD (the chart's crds/, a copy of
// config/crd/bases that make manifests writes).
func TestChartRendersConfigDefault(t *testing.T) {
	k, err := manifests.Kustomize("default")
	if err != nil {
		t.Fatal(err)
	}
	kobjs, err := manifests.Objects(k)
	if err != nil {
		t.Fatal(err)
	}
	var want []*unstructured.Unstructured
	for _, o := range kobjs {
		if o.GetKind() != "Namespace" && o.GetKind() != "CustomResourceDefinition" {
			want = append(want, o)
		}
	}
	got, wantM := normalize(renderChart(t, nil)), normalize(want)
	var keys []string
	for key := range wantM {
		keys = append(keys, key)
	}
	for key := range got {
		if wantM[key] == nil {
			keys = append(keys, key)
		}
	}
	sort.Strings(keys)
	for _, key := range keys {
		g, w := got[key], wantM[key]
		switch {
		case g == nil:
			t.Errorf("%s is in config/default but not in the chart", key)
		case w == nil:
			t.Errorf("%s is in the chart but not in config/default", key)
		case !reflect.DeepEqual(g.Object, w.Object):
			gy, _ := yaml.Marshal(g.Object)
			wy, _ := yaml.Marshal(w.Object)
			t.Errorf("%s differs; the chart renders:\n%s\nconfig/default has:\n%s", key, gy, wy)
		}
	}

	crd, err := os.ReadFile(crdFile)
	if err != nil {
		t.Fatal(err)
	}
	chartCRD, err := os.ReadFile(filepath.Join(chartDir, "crds", filepath.Base(crdFile)))
	if err != nil || !bytes.Equal(crd, chartCRD) {
		t.Errorf("the chart's crds/ is not a copy of %s (run make manifests): %v", crdFile, err)
	}
}

func TestChartValues(t *testing.T) {
	rendered := renderChart(t, map[string]any{
		"image":           map[string]any{"repository": "example.com/op", "tag": "v9"},
		"replicaCount":    1,
		"leaderElection":  map[string]any{"enabled": false},
		"watchNamespaces": []any{"a", "b"},
		"loopSelector":    "shard in (a,b)",
		"metrics":         map[string]any{"secure": false},
		"resources":       map[string]any{"limits": map[string]any{"memory": "1Gi"}},
		"prometheus": map[string]any{
			"serviceMonitor": map[string]any{"enabled": true},
			"podMonitor":     map[string]any{"enabled": true},
		},
	})
	objs := normalize(rendered)
	d := objs["Deployment/"+manifests.ManagerDeployment]
	c, _, _ := unstructured.NestedSlice(d.Object, "spec", "template", "spec", "containers")
	manager := c[0].(map[string]any)
	args := fmt.Sprint(manager["args"])
	for _, want := range []string{"--leader-elect=false", "--metrics-secure=false", "--watch-namespaces=a,b", "--loop-selector=shard in (a,b)"} {
		if !strings.Contains(args, want) {
			t.Errorf("args %s lack %s", args, want)
		}
	}
	if manager["image"] != "example.com/op:v9" {
		t.Errorf("image %v", manager["image"])
	}
	if mem, _, _ := unstructured.NestedString(manager, "resources", "limits", "memory"); mem != "1Gi" {
		t.Errorf("memory limit %q", mem)
	}
	for _, key := range []string{"ServiceMonitor/loop-operator-controller-manager", "PodMonitor/loop-operator-workers"} {
		if objs[key] == nil {
			t.Errorf("%s is not rendered with its value on", key)
		}
	}

	// With watched namespaces the manager's rights are bound in each of
	// them, and nowhere else.
	bound := map[string]bool{}
	for _, o := range rendered {
		if o.GetName() != "loop-operator-manager-rolebinding" {
			continue
		}
		ref, _, _ := unstructured.NestedString(o.Object, "roleRef", "name")
		subjects, _, _ := unstructured.NestedSlice(o.Object, "subjects")
		if o.GetKind() != "RoleBinding" || ref != "loop-operator-manager-role" || len(subjects) != 1 ||
			subjects[0].(map[string]any)["namespace"] != manifests.Namespace {
			t.Errorf("with watchNamespaces: %s %s/%s binds %q to %v, want RoleBindings of loop-operator-manager-role to the operator's service account",
				o.GetKind(), o.GetNamespace(), o.GetName(), ref, subjects)
			continue
		}
		bound[o.GetNamespace()] = true
	}
	if len(bound) != 2 || !bound["a"] || !bound["b"] {
		t.Errorf("with watchNamespaces a and b the manager's role is bound in %v, want a and b", bound)
	}

	objs = normalize(renderChart(t, map[string]any{"metrics": map[string]any{"enabled": false}, "admissionPolicy": map[string]any{"enabled": false}}))
	for key := range objs {
		if strings.HasPrefix(key, "Service/") || strings.HasPrefix(key, "ValidatingAdmissionPolicy") {
			t.Errorf("%s is rendered with its value off", key)
		}
	}
}

// TestChartLints runs helm lint (strict: warnings fail) on the chart.
func TestChartLints(t *testing.T) {
	lint := action.NewLint()
	lint.Strict = true
	res := lint.Run([]string{chartDir}, nil)
	for _, m := range res.Messages {
		if m.Severity >= support.WarningSev {
			t.Errorf("helm lint: %s", m)
		} else {
			t.Logf("helm lint: %s", m)
		}
	}
	for _, err := range res.Errors {
		t.Errorf("helm lint: %v", err)
	}
}
