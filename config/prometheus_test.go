package config_test

import (
	"path/filepath"
	"reflect"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	loopsv1alpha1 "github.com/tenire/loop-operator/api/v1alpha1"
	"github.com/tenire/loop-operator/internal/manifests"
)

// TestPrometheusMonitors builds config/default with the component
// config/prometheus (the Prometheus Operator's CRDs are not installed
// anywhere here, so the monitors are checked as rendered): the
// ServiceMonitor selects the manager's metrics Service and names its port,
// the PodMonitor selects the worker pods by the label the operator puts on
// them and names their admin port. The chart renders the same monitors.
func TestPrometheusMonitors(t *testing.T) {
	b, err := manifests.Kustomize(filepath.Join("testdata", "with-prometheus"))
	if err != nil {
		t.Fatal(err)
	}
	objs, err := manifests.Objects(b)
	if err != nil {
		t.Fatal(err)
	}
	byKind := map[string]*unstructured.Unstructured{}
	for _, o := range objs {
		byKind[o.GetKind()] = o
	}
	sm, pm, svc := byKind["ServiceMonitor"], byKind["PodMonitor"], byKind["Service"]
	if sm == nil || pm == nil || svc == nil {
		t.Fatalf("want a ServiceMonitor, a PodMonitor and the metrics Service, got %v", keys(byKind))
	}
	for _, o := range []*unstructured.Unstructured{sm, pm} {
		if o.GetAPIVersion() != "monitoring.coreos.com/v1" || o.GetNamespace() != manifests.Namespace {
			t.Errorf("%s: apiVersion %s, namespace %s", o.GetKind(), o.GetAPIVersion(), o.GetNamespace())
		}
	}

	sel, _, _ := unstructured.NestedStringMap(sm.Object, "spec", "selector", "matchLabels")
	svcLabels := svc.GetLabels()
	for k, v := range sel {
		if svcLabels[k] != v {
			t.Errorf("the ServiceMonitor selects %s=%s, the Service has %q", k, v, svcLabels[k])
		}
	}
	eps, _, _ := unstructured.NestedSlice(sm.Object, "spec", "endpoints")
	ports, _, _ := unstructured.NestedSlice(svc.Object, "spec", "ports")
	if len(eps) != 1 || len(ports) != 1 || eps[0].(map[string]any)["port"] != ports[0].(map[string]any)["name"] {
		t.Errorf("the ServiceMonitor's endpoints %v do not name the Service's port %v", eps, ports)
	}

	exprs, _, _ := unstructured.NestedSlice(pm.Object, "spec", "selector", "matchExpressions")
	if len(exprs) != 1 || exprs[0].(map[string]any)["key"] != loopsv1alpha1.LabelName || exprs[0].(map[string]any)["operator"] != "Exists" {
		t.Errorf("the PodMonitor selects %v, want pods with the label %s", exprs, loopsv1alpha1.LabelName)
	}
	peps, _, _ := unstructured.NestedSlice(pm.Object, "spec", "podMetricsEndpoints")
	if len(peps) != 1 || peps[0].(map[string]any)["port"] != loopsv1alpha1.WorkerAdminPortName || peps[0].(map[string]any)["path"] != "/metrics" {
		t.Errorf("the PodMonitor scrapes %v, want port %q path /metrics", peps, loopsv1alpha1.WorkerAdminPortName)
	}

	chart := normalize(renderChart(t, map[string]any{"prometheus": map[string]any{
		"serviceMonitor": map[string]any{"enabled": true},
		"podMonitor":     map[string]any{"enabled": true},
	}}))
	for _, o := range normalize([]*unstructured.Unstructured{sm, pm}) {
		c := chart[o.GetKind()+"/"+o.GetName()]
		if c == nil {
			t.Errorf("the chart renders no %s %s", o.GetKind(), o.GetName())
			continue
		}
		if !reflect.DeepEqual(c.Object["spec"], o.Object["spec"]) {
			t.Errorf("%s: the chart's spec %v differs from config/prometheus's %v", o.GetKind(), c.Object["spec"], o.Object["spec"])
		}
	}
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
