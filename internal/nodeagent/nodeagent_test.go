package nodeagent

import (
	"fmt"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/tenire/loop-operator/api/v1alpha1/contract"
)

func TestExpand(t *testing.T) {
	vars := map[string]string{"A": "x", "B": "y"}
	lookup := func(k string) (string, bool) { v, ok := vars[k]; return v, ok }
	for in, want := range map[string]string{
		"":                  "",
		"plain":             "plain",
		"$(A)":              "x",
		"$(A)-$(B)":         "x-y",
		"$$(A)":             "$(A)",
		"$(MISSING)":        "$(MISSING)",
		"$(A":               "$(A",
		"cost $5":           "cost $5",
		"--name=$(A)$":      "--name=x$",
		"$$$(B)":            "$y",
		"a$(A)b$(MISSING)c": "axb$(MISSING)c",
	} {
		if got := expand(in, lookup); got != want {
			t.Errorf("expand(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestImageMap(t *testing.T) {
	m, err := ParseImageMap(" loop-worker=/bin/lw, manager=/bin/m ,")
	if err != nil {
		t.Fatal(err)
	}
	if bin, ok := m.Resolve("ghcr.io/tenire/loop-worker:v1"); !ok || bin != "/bin/lw" {
		t.Errorf("resolve loop-worker: %q %v", bin, ok)
	}
	if _, ok := m.Resolve("nginx"); ok {
		t.Error("nginx resolved")
	}
	if m.String() != "loop-worker=/bin/lw,manager=/bin/m" {
		t.Errorf("String() = %q", m.String())
	}
	if _, err := ParseImageMap("nobinary"); err == nil {
		t.Error("a rule without = was accepted")
	}
}

func TestCommandLine(t *testing.T) {
	c := &corev1.Container{Command: []string{"/loop-worker", "--n=$(N)"}, Args: []string{"--x", "$$(N)"}}
	got := commandLine(c, func(k string) (string, bool) { return "3", k == "N" })
	if want := []string{"--n=3", "--x", "$(N)"}; !slices.Equal(got, want) {
		t.Errorf("commandLine = %q, want %q", got, want)
	}
}

func TestProbeTarget(t *testing.T) {
	withAdmin := &podRunner{container: corev1.Container{Ports: []corev1.ContainerPort{{Name: "admin", ContainerPort: 8081}, {Name: "metrics", ContainerPort: 8080}}}}
	noAdmin := &podRunner{container: corev1.Container{}}
	probe := func(p intstr.IntOrString) *corev1.Probe {
		return &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Port: p}}}
	}
	for _, tc := range []struct {
		r    *podRunner
		port intstr.IntOrString
		want int
	}{
		{withAdmin, intstr.FromString("admin"), 40000},
		{withAdmin, intstr.FromInt32(8081), 40000},
		{withAdmin, intstr.FromString("metrics"), 8080},
		{withAdmin, intstr.FromInt32(9999), 9999},
		{noAdmin, intstr.FromInt32(8081), 40000},
	} {
		got := tc.r.probeTarget(probe(tc.port), 40000)
		if got.err != nil || got.port != tc.want {
			t.Errorf("port %v: got %+v, want %d", tc.port.String(), got, tc.want)
		}
	}
	if got := withAdmin.probeTarget(probe(intstr.FromString("nope")), 40000); got.err == nil {
		t.Error("an unknown port name was accepted")
	}
}

// TestFillStatusKeepsForeignConditions checks that the agent owns only the
// kubelet's conditions: the worker's Drained condition and readiness gates
// survive, and Ready waits for the gates.
func TestFillStatusKeepsForeignConditions(t *testing.T) {
	a := &Agent{opts: Options{}}
	r := newPodRunner(a, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns", UID: "u"}})
	r.container = corev1.Container{Name: "worker", Image: "loop-worker"}
	r.phase = corev1.PodRunning
	r.ready = true
	r.everStarted = true
	r.state = corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}
	drained := corev1.PodCondition{Type: contract.PodConditionDrained, Status: corev1.ConditionTrue, Reason: contract.DrainedReasonCompleted}
	pod := &corev1.Pod{
		Spec: corev1.PodSpec{
			Containers:     []corev1.Container{{Name: "sidecar", Image: "x"}, r.container},
			ReadinessGates: []corev1.PodReadinessGate{{ConditionType: "example.com/Gate"}},
		},
		Status: corev1.PodStatus{Conditions: []corev1.PodCondition{drained,
			{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, Reason: "bySched"}}},
	}
	r.fillStatus(pod)
	cond := func(t corev1.PodConditionType) corev1.PodCondition {
		c, _ := findCondition(pod.Status.Conditions, t)
		return c
	}
	if c := cond(contract.PodConditionDrained); c != drained {
		t.Errorf("Drained changed: %+v", c)
	}
	if c := cond(corev1.PodScheduled); c.Reason != "bySched" {
		t.Errorf("PodScheduled was rewritten: %+v", c)
	}
	if c := cond(corev1.ContainersReady); c.Status != corev1.ConditionTrue {
		t.Errorf("ContainersReady: %+v", c)
	}
	if c := cond(corev1.PodReady); c.Status != corev1.ConditionFalse || c.Reason != "ReadinessGatesNotReady" {
		t.Errorf("Ready with an unmet gate: %+v", c)
	}
	pod.Status.Conditions = append(pod.Status.Conditions, corev1.PodCondition{Type: "example.com/Gate", Status: corev1.ConditionTrue})
	r.fillStatus(pod)
	if c := cond(corev1.PodReady); c.Status != corev1.ConditionTrue {
		t.Errorf("Ready with the gate met: %+v", c)
	}
	if n := len(pod.Status.ContainerStatuses); n != 2 || pod.Status.ContainerStatuses[1].Name != "worker" || !pod.Status.ContainerStatuses[1].Ready {
		t.Errorf("container statuses: %+v", pod.Status.ContainerStatuses)
	}
	if pod.Status.PodIP != localIP || pod.Status.Phase != corev1.PodRunning {
		t.Errorf("pod IP %q phase %s", pod.Status.PodIP, pod.Status.Phase)
	}
	if got := fmt.Sprint(len(pod.Status.Conditions)); got != "7" {
		t.Errorf("%s conditions: %+v", got, pod.Status.Conditions)
	}
}
