package controllers

import (
	"encoding/json"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	loopsv1alpha1 "github.com/tenire/loop-operator/api/v1alpha1"
	"github.com/tenire/loop-operator/api/v1alpha1/contract"
	"github.com/tenire/loop-operator/internal/testenv"
)

func testLD(mutate func(*loopsv1alpha1.LoopDeployment)) *loopsv1alpha1.LoopDeployment {
	ld := &loopsv1alpha1.LoopDeployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "orders", UID: "uid-1"},
		Spec: loopsv1alpha1.LoopDeploymentSpec{
			Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "worker", Image: "w:1"}}}},
			Queue:    loopsv1alpha1.QueueSpec{NATS: loopsv1alpha1.NATSQueueSpec{URL: "nats://nats:4222"}},
			Drain:    loopsv1alpha1.DrainSpec{Timeout: &metav1.Duration{Duration: 2 * time.Minute}},
		},
	}
	if mutate != nil {
		mutate(ld)
	}
	return ld
}

func buildPod(t *testing.T, ld *loopsv1alpha1.LoopDeployment) (*corev1.Pod, *corev1.Container) {
	t.Helper()
	pod, err := newPod(ld, loopsv1alpha1.WithDefaults(ld.Spec), "abc", testenv.Scheme)
	if err != nil {
		t.Fatal(err)
	}
	return pod, &pod.Spec.Containers[workerContainerIndex(pod.Spec.Containers)]
}

func envOf(c *corev1.Container, name string) (corev1.EnvVar, int) {
	var found corev1.EnvVar
	n := 0
	for _, e := range c.Env {
		if e.Name == name {
			found = e
			n++
		}
	}
	return found, n
}

func TestNewPod(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*loopsv1alpha1.LoopDeployment)
		check  func(t *testing.T, pod *corev1.Pod, w *corev1.Container)
	}{
		{"a bare template gets the labels, the owner and the contract's environment", nil, func(t *testing.T, pod *corev1.Pod, w *corev1.Container) {
			if pod.Labels[loopsv1alpha1.LabelName] != "orders" || pod.Labels[loopsv1alpha1.LabelRevision] != "abc" {
				t.Errorf("labels = %v", pod.Labels)
			}
			if ref := metav1.GetControllerOf(pod); ref == nil || ref.UID != "uid-1" || ref.Kind != "LoopDeployment" {
				t.Errorf("controller = %+v", ref)
			}
			if e, _ := envOf(w, loopsv1alpha1.EnvPodName); e.ValueFrom == nil || e.ValueFrom.FieldRef.FieldPath != "metadata.name" {
				t.Errorf("POD_NAME = %+v", e)
			}
			if e, _ := envOf(w, loopsv1alpha1.EnvPodNamespace); e.ValueFrom == nil || e.ValueFrom.FieldRef.FieldPath != "metadata.namespace" {
				t.Errorf("POD_NAMESPACE = %+v", e)
			}
			e, _ := envOf(w, loopsv1alpha1.EnvWorkerSettings)
			var s loopsv1alpha1.WorkerSettings
			if err := json.Unmarshal([]byte(e.Value), &s); err != nil {
				t.Fatal(err)
			}
			if s.Stream != "LOOP_shop_orders" || s.SubjectPrefix != "loops.shop.orders" || s.DrainTimeout.Duration != 2*time.Minute {
				t.Errorf("settings = %+v", s)
			}
			if len(s.Loop.Priorities) != 1 || s.NATSCredentialsFile != "" {
				t.Errorf("settings without defaults or with credentials: %+v", s)
			}
		}},
		{"a bare template gets the admin port, the readiness probe and the workers' service account", nil, func(t *testing.T, pod *corev1.Pod, w *corev1.Container) {
			if len(w.Ports) != 1 || w.Ports[0].Name != "admin" || w.Ports[0].ContainerPort != 8081 {
				t.Errorf("ports = %+v", w.Ports)
			}
			if w.ReadinessProbe == nil || w.ReadinessProbe.HTTPGet.Path != "/readyz" || w.ReadinessProbe.HTTPGet.Port.StrVal != "admin" ||
				w.ReadinessProbe.PeriodSeconds != 1 || w.ReadinessProbe.FailureThreshold != 3 {
				t.Errorf("readiness probe = %+v", w.ReadinessProbe)
			}
			if w.LivenessProbe == nil || w.LivenessProbe.HTTPGet.Path != "/healthz" {
				t.Errorf("liveness probe = %+v", w.LivenessProbe)
			}
			if pod.Spec.ServiceAccountName != WorkerServiceAccountName(pod.Labels[loopsv1alpha1.LabelName]) {
				t.Errorf("service account = %q", pod.Spec.ServiceAccountName)
			}
		}},
		{"the grace period is the drain timeout plus the margin", nil, func(t *testing.T, pod *corev1.Pod, _ *corev1.Container) {
			if got := *pod.Spec.TerminationGracePeriodSeconds; got != 150 {
				t.Errorf("grace = %d, want 150", got)
			}
		}},
		{"a longer grace period from the user is kept", func(ld *loopsv1alpha1.LoopDeployment) {
			ld.Spec.Template.Spec.TerminationGracePeriodSeconds = ptr.To[int64](600)
		}, func(t *testing.T, pod *corev1.Pod, _ *corev1.Container) {
			if got := *pod.Spec.TerminationGracePeriodSeconds; got != 600 {
				t.Errorf("grace = %d, want 600", got)
			}
		}},
		{"a shorter grace period from the user is raised to cover the drain", func(ld *loopsv1alpha1.LoopDeployment) {
			ld.Spec.Template.Spec.TerminationGracePeriodSeconds = ptr.To[int64](30)
		}, func(t *testing.T, pod *corev1.Pod, _ *corev1.Container) {
			if got := *pod.Spec.TerminationGracePeriodSeconds; got != 150 {
				t.Errorf("grace = %d, want 150", got)
			}
		}},
		{"the container named worker is the worker even when it is not first", func(ld *loopsv1alpha1.LoopDeployment) {
			ld.Spec.Template.Spec.Containers = []corev1.Container{{Name: "proxy", Image: "p"}, {Name: "worker", Image: "w"}}
		}, func(t *testing.T, pod *corev1.Pod, w *corev1.Container) {
			if w.Name != "worker" || len(pod.Spec.Containers[0].Env) != 0 {
				t.Errorf("the environment went to the wrong container")
			}
		}},
		{"the user's own POD_NAME and LOOP_SETTINGS give way to the contract's", func(ld *loopsv1alpha1.LoopDeployment) {
			ld.Spec.Template.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "POD_NAME", Value: "x"}, {Name: "LOOP_SETTINGS", Value: "{}"}, {Name: "KEEP", Value: "1"}}
		}, func(t *testing.T, _ *corev1.Pod, w *corev1.Container) {
			if e, n := envOf(w, "POD_NAME"); n != 1 || e.Value != "" {
				t.Errorf("POD_NAME = %+v (%d times)", e, n)
			}
			if _, n := envOf(w, "LOOP_SETTINGS"); n != 1 {
				t.Errorf("LOOP_SETTINGS %d times", n)
			}
			if _, n := envOf(w, "KEEP"); n != 1 {
				t.Error("the user's own variable was dropped")
			}
		}},
		{"an unnamed port 8081 becomes the admin port", func(ld *loopsv1alpha1.LoopDeployment) {
			ld.Spec.Template.Spec.Containers[0].Ports = []corev1.ContainerPort{{ContainerPort: 8081}}
		}, func(t *testing.T, _ *corev1.Pod, w *corev1.Container) {
			if len(w.Ports) != 1 || w.Ports[0].Name != "admin" {
				t.Errorf("ports = %+v", w.Ports)
			}
		}},
		{"a credentials secret is mounted and its file named in the settings", func(ld *loopsv1alpha1.LoopDeployment) {
			ld.Spec.Queue.NATS.CredentialsSecretRef = &corev1.LocalObjectReference{Name: "orders-nats"}
		}, func(t *testing.T, pod *corev1.Pod, w *corev1.Container) {
			if len(pod.Spec.Volumes) != 1 || pod.Spec.Volumes[0].Secret.SecretName != "orders-nats" {
				t.Errorf("volumes = %+v", pod.Spec.Volumes)
			}
			if len(w.VolumeMounts) != 1 || w.VolumeMounts[0].MountPath != CredentialsMountPath || !w.VolumeMounts[0].ReadOnly {
				t.Errorf("mounts = %+v", w.VolumeMounts)
			}
			e, _ := envOf(w, loopsv1alpha1.EnvWorkerSettings)
			var s loopsv1alpha1.WorkerSettings
			if err := json.Unmarshal([]byte(e.Value), &s); err != nil || s.NATSCredentialsFile != "/etc/tenire/nats/nats.creds" {
				t.Errorf("credentials file = %q (%v)", s.NATSCredentialsFile, err)
			}
		}},
		{"a drain request in the template never reaches a new pod", func(ld *loopsv1alpha1.LoopDeployment) {
			ld.Spec.Template.Annotations = map[string]string{contract.AnnotationDrainRequested: "2026-01-01T00:00:00Z", "keep": "1"}
		}, func(t *testing.T, pod *corev1.Pod, _ *corev1.Container) {
			if contract.DrainRequested(pod) || pod.Annotations["keep"] != "1" {
				t.Errorf("annotations = %v", pod.Annotations)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ld := testLD(tt.mutate)
			before := ld.DeepCopy()
			pod, w := buildPod(t, ld)
			tt.check(t, pod, w)
			if !equality.Semantic.DeepEqual(ld, before) {
				t.Error("newPod changed the LoopDeployment")
			}
		})
	}
}

func TestRestrictPod(t *testing.T) {
	restricted := func() corev1.SecurityContext {
		return corev1.SecurityContext{
			ReadOnlyRootFilesystem:   ptr.To(true),
			AllowPrivilegeEscalation: ptr.To(false),
			Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		}
	}
	runtimeDefault := &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}
	tests := []struct {
		name          string
		pod           corev1.PodSecurityContext
		container     *corev1.SecurityContext
		wantPod       corev1.PodSecurityContext
		wantContainer func() corev1.SecurityContext
	}{
		{"a template without security contexts gets the whole restricted profile",
			corev1.PodSecurityContext{}, nil,
			corev1.PodSecurityContext{RunAsNonRoot: ptr.To(true), SeccompProfile: runtimeDefault}, restricted},
		{"a pod-level user is kept and gets the other pod fields",
			corev1.PodSecurityContext{RunAsUser: ptr.To[int64](1000)}, nil,
			corev1.PodSecurityContext{RunAsUser: ptr.To[int64](1000), RunAsNonRoot: ptr.To(true), SeccompProfile: runtimeDefault}, restricted},
		{"a pod that runs as root on purpose does not get runAsNonRoot",
			corev1.PodSecurityContext{RunAsUser: ptr.To[int64](0)}, nil,
			corev1.PodSecurityContext{RunAsUser: ptr.To[int64](0), SeccompProfile: runtimeDefault}, restricted},
		{"a container that runs as root on purpose keeps the pod from getting runAsNonRoot",
			corev1.PodSecurityContext{}, &corev1.SecurityContext{RunAsUser: ptr.To[int64](0)},
			corev1.PodSecurityContext{SeccompProfile: runtimeDefault}, func() corev1.SecurityContext {
				sc := restricted()
				sc.RunAsUser = ptr.To[int64](0)
				return sc
			}},
		{"the template's seccomp profile is kept",
			corev1.PodSecurityContext{SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeUnconfined}}, nil,
			corev1.PodSecurityContext{RunAsNonRoot: ptr.To(true), SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeUnconfined}}, restricted},
		{"a writable root filesystem set by the template is kept, the other container fields are added",
			corev1.PodSecurityContext{}, &corev1.SecurityContext{ReadOnlyRootFilesystem: ptr.To(false)},
			corev1.PodSecurityContext{RunAsNonRoot: ptr.To(true), SeccompProfile: runtimeDefault}, func() corev1.SecurityContext {
				sc := restricted()
				sc.ReadOnlyRootFilesystem = ptr.To(false)
				return sc
			}},
		{"capabilities the template adds are kept and the rest dropped",
			corev1.PodSecurityContext{}, &corev1.SecurityContext{Capabilities: &corev1.Capabilities{Add: []corev1.Capability{"NET_BIND_SERVICE"}}},
			corev1.PodSecurityContext{RunAsNonRoot: ptr.To(true), SeccompProfile: runtimeDefault}, func() corev1.SecurityContext {
				sc := restricted()
				sc.Capabilities.Add = []corev1.Capability{"NET_BIND_SERVICE"}
				return sc
			}},
		{"the template's own drops are kept",
			corev1.PodSecurityContext{}, &corev1.SecurityContext{Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"NET_RAW"}}},
			corev1.PodSecurityContext{RunAsNonRoot: ptr.To(true), SeccompProfile: runtimeDefault}, func() corev1.SecurityContext {
				sc := restricted()
				sc.Capabilities.Drop = []corev1.Capability{"NET_RAW"}
				return sc
			}},
		{"a privileged container does not get allowPrivilegeEscalation false, which the API server would reject",
			corev1.PodSecurityContext{}, &corev1.SecurityContext{Privileged: ptr.To(true)},
			corev1.PodSecurityContext{RunAsNonRoot: ptr.To(true), SeccompProfile: runtimeDefault}, func() corev1.SecurityContext {
				sc := restricted()
				sc.Privileged, sc.AllowPrivilegeEscalation = ptr.To(true), nil
				return sc
			}},
		{"an allowPrivilegeEscalation set by the template is kept",
			corev1.PodSecurityContext{}, &corev1.SecurityContext{AllowPrivilegeEscalation: ptr.To(true)},
			corev1.PodSecurityContext{RunAsNonRoot: ptr.To(true), SeccompProfile: runtimeDefault}, func() corev1.SecurityContext {
				sc := restricted()
				sc.AllowPrivilegeEscalation = ptr.To(true)
				return sc
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ps := corev1.PodSpec{
				SecurityContext: tt.pod.DeepCopy(),
				InitContainers:  []corev1.Container{{Name: "init", SecurityContext: tt.container.DeepCopy()}},
				Containers:      []corev1.Container{{Name: "worker", SecurityContext: tt.container.DeepCopy()}},
			}
			restrictPod(&ps)
			if !equality.Semantic.DeepEqual(*ps.SecurityContext, tt.wantPod) {
				t.Errorf("pod security context = %+v\nwant %+v", *ps.SecurityContext, tt.wantPod)
			}
			for _, c := range append(ps.InitContainers, ps.Containers...) {
				if want := tt.wantContainer(); !equality.Semantic.DeepEqual(*c.SecurityContext, want) {
					t.Errorf("container %s security context = %+v\nwant %+v", c.Name, *c.SecurityContext, want)
				}
			}
		})
	}
}
