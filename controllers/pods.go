package controllers

import (
	"encoding/json"
	"fmt"
	"math"
	"path"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	loopsv1alpha1 "github.com/tenire/loop-operator/api/v1alpha1"
	"github.com/tenire/loop-operator/api/v1alpha1/contract"
)

const (
	// WorkerServiceAccountSuffix ends the name of the ServiceAccount (and
	// of its Role and RoleBinding) that the operator creates for each
	// LoopDeployment whose template names no service account:
	// <name>-loop-worker. The admission policy of config/admission
	// recognises workers' tokens by it.
	WorkerServiceAccountSuffix = "-loop-worker"

	// GracePeriodMargin is added to drain.timeout to make the pods'
	// terminationGracePeriodSeconds: time for the worker to report and exit
	// after a drain started by SIGTERM ran to its deadline.
	GracePeriodMargin = 30 * time.Second

	// CredentialsMountPath is where the NATS credentials Secret is mounted
	// in the worker container.
	CredentialsMountPath = "/etc/tenire/nats"

	credentialsVolumeName = "tenire-nats-credentials"
	readinessPath         = "/readyz"
	livenessPath          = "/healthz"
)

// WorkerServiceAccountName is the ServiceAccount, Role and RoleBinding of
// the workers of the LoopDeployment named ld.
func WorkerServiceAccountName(ld string) string { return ld + WorkerServiceAccountSuffix }

// selectorLabels are the labels that select the pods of ld.
func selectorLabels(ld *loopsv1alpha1.LoopDeployment) map[string]string {
	return map[string]string{loopsv1alpha1.LabelName: ld.Name}
}

// workerContainerIndex returns the index of the worker container: the one
// named "worker", else the first.
func workerContainerIndex(containers []corev1.Container) int {
	if i := slices.IndexFunc(containers, func(c corev1.Container) bool { return c.Name == loopsv1alpha1.WorkerContainerName }); i >= 0 {
		return i
	}
	return 0
}

// workerSettings returns what the worker of ld is told in LOOP_SETTINGS.
// spec has its defaults applied.
func workerSettings(ld *loopsv1alpha1.LoopDeployment, spec loopsv1alpha1.LoopDeploymentSpec) loopsv1alpha1.WorkerSettings {
	stream, prefix := contract.QueueNames(ld.Namespace, ld.Name, spec.Queue.NATS)
	s := loopsv1alpha1.WorkerSettings{
		Name:          ld.Name,
		Namespace:     ld.Namespace,
		Loop:          spec.Loop,
		Queue:         spec.Queue,
		Stream:        stream,
		SubjectPrefix: prefix,
		DrainTimeout:  *spec.Drain.Timeout,
	}
	if spec.Queue.NATS.CredentialsSecretRef != nil {
		s.NATSCredentialsFile = path.Join(CredentialsMountPath, loopsv1alpha1.DefaultCredentialsKey)
	}
	return s
}

// gracePeriodSeconds is drain.timeout plus GracePeriodMargin, rounded up.
func gracePeriodSeconds(drainTimeout time.Duration) int64 {
	return int64(math.Ceil((drainTimeout + GracePeriodMargin).Seconds()))
}

// newPod builds a worker pod of ld at revision. spec has its defaults
// applied. The pod has a generated name, the selector and revision labels,
// ld as its controller, and everything the drain contract needs injected
// into the template (see LoopDeploymentSpec.Template).
func newPod(ld *loopsv1alpha1.LoopDeployment, spec loopsv1alpha1.LoopDeploymentSpec, revision string, scheme *runtime.Scheme) (*corev1.Pod, error) {
	tmpl := spec.Template.DeepCopy()
	if len(tmpl.Spec.Containers) == 0 {
		return nil, fmt.Errorf("template of %s/%s has no containers", ld.Namespace, ld.Name)
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Namespace:    ld.Namespace,
			GenerateName: ld.Name + "-",
			Labels:       tmpl.Labels,
			Annotations:  tmpl.Annotations,
		},
		Spec: tmpl.Spec,
	}
	if pod.Labels == nil {
		pod.Labels = map[string]string{}
	}
	pod.Labels[loopsv1alpha1.LabelName] = ld.Name
	pod.Labels[loopsv1alpha1.LabelRevision] = revision
	// A drain request copied from a template would drain the pod at birth.
	delete(pod.Annotations, contract.AnnotationDrainRequested)
	delete(pod.Annotations, contract.AnnotationDrainDeadline)

	settings, err := json.Marshal(workerSettings(ld, spec))
	if err != nil {
		return nil, fmt.Errorf("encoding the worker settings: %w", err)
	}

	ps := &pod.Spec
	if ps.ServiceAccountName == "" {
		ps.ServiceAccountName = WorkerServiceAccountName(ld.Name)
	}
	if grace := gracePeriodSeconds(spec.Drain.Timeout.Duration); ps.TerminationGracePeriodSeconds == nil || *ps.TerminationGracePeriodSeconds < grace {
		ps.TerminationGracePeriodSeconds = ptr.To(grace)
	}
	restrictPod(ps)

	w := &ps.Containers[workerContainerIndex(ps.Containers)]
	w.Env = slices.DeleteFunc(w.Env, func(e corev1.EnvVar) bool {
		return e.Name == loopsv1alpha1.EnvPodName || e.Name == loopsv1alpha1.EnvPodNamespace || e.Name == loopsv1alpha1.EnvWorkerSettings
	})
	w.Env = append(w.Env,
		corev1.EnvVar{Name: loopsv1alpha1.EnvPodName, ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
		corev1.EnvVar{Name: loopsv1alpha1.EnvPodNamespace, ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.namespace"}}},
		corev1.EnvVar{Name: loopsv1alpha1.EnvWorkerSettings, Value: string(settings)},
	)
	ensureAdminPort(w)
	if w.ReadinessProbe == nil {
		// Every second, so that a new pod counts as Ready about a second
		// after its worker binds (a scale-up's reaction time is the poll
		// interval plus this); three failures in a row, so that a probe
		// slowed by a busy node does not flip it, and a draining worker is
		// still seen unready within about 3s.
		w.ReadinessProbe = &corev1.Probe{
			ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
				Path: readinessPath, Port: intstr.FromString(loopsv1alpha1.WorkerAdminPortName),
			}},
			PeriodSeconds:    1,
			FailureThreshold: 3,
		}
	}
	if w.LivenessProbe == nil {
		// /healthz answers 200 while the process serves, draining or not.
		w.LivenessProbe = &corev1.Probe{
			ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
				Path: livenessPath, Port: intstr.FromString(loopsv1alpha1.WorkerAdminPortName),
			}},
			InitialDelaySeconds: 10,
			PeriodSeconds:       10,
			FailureThreshold:    3,
		}
	}
	if ref := spec.Queue.NATS.CredentialsSecretRef; ref != nil {
		ps.Volumes = append(ps.Volumes, corev1.Volume{
			Name: credentialsVolumeName,
			VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{
				SecretName: ref.Name,
				Items:      []corev1.KeyToPath{{Key: loopsv1alpha1.DefaultCredentialsKey, Path: loopsv1alpha1.DefaultCredentialsKey}},
			}},
		})
		w.VolumeMounts = append(w.VolumeMounts, corev1.VolumeMount{Name: credentialsVolumeName, MountPath: CredentialsMountPath, ReadOnly: true})
	}

	if err := controllerutil.SetControllerReference(ld, pod, scheme); err != nil {
		return nil, fmt.Errorf("setting the owner of the pod: %w", err)
	}
	return pod, nil
}

// restrictPod gives the pod the restricted Pod Security Standard field by
// field: each field the template leaves unset gets the restricted value,
// each field it sets is kept. The pod gets runAsNonRoot (unless the
// template runs a container as root on purpose: runAsUser 0 or
// runAsNonRoot false) and seccomp RuntimeDefault; each container, init
// containers too, gets readOnlyRootFilesystem, allowPrivilegeEscalation
// false (unless it is privileged or adds CAP_SYS_ADMIN, which the API
// server would reject with it), drop ALL capabilities (unless it lists its
// own drops) and, when the pod's seccomp profile came from the template,
// nothing more. Which user runs is left to the template.
func restrictPod(ps *corev1.PodSpec) {
	if ps.SecurityContext == nil {
		ps.SecurityContext = &corev1.PodSecurityContext{}
	}
	psc := ps.SecurityContext
	containers := make([]*corev1.Container, 0, len(ps.InitContainers)+len(ps.Containers))
	for i := range ps.InitContainers {
		containers = append(containers, &ps.InitContainers[i])
	}
	for i := range ps.Containers {
		containers = append(containers, &ps.Containers[i])
	}
	root := ptr.Deref(psc.RunAsUser, 1) == 0
	for _, c := range containers {
		if sc := c.SecurityContext; sc != nil && (ptr.Deref(sc.RunAsUser, 1) == 0 || (sc.RunAsNonRoot != nil && !*sc.RunAsNonRoot)) {
			root = true
		}
	}
	if psc.RunAsNonRoot == nil && !root {
		psc.RunAsNonRoot = ptr.To(true)
	}
	if psc.SeccompProfile == nil {
		psc.SeccompProfile = &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}
	}
	for _, c := range containers {
		restrictContainer(c)
	}
}

// restrictContainer sets the container fields of the restricted profile
// that c leaves unset (see restrictPod).
func restrictContainer(c *corev1.Container) {
	if c.SecurityContext == nil {
		c.SecurityContext = &corev1.SecurityContext{}
	}
	sc := c.SecurityContext
	if sc.ReadOnlyRootFilesystem == nil {
		sc.ReadOnlyRootFilesystem = ptr.To(true)
	}
	sysAdmin := sc.Capabilities != nil && slices.Contains(sc.Capabilities.Add, "SYS_ADMIN")
	if sc.AllowPrivilegeEscalation == nil && !ptr.Deref(sc.Privileged, false) && !sysAdmin {
		sc.AllowPrivilegeEscalation = ptr.To(false)
	}
	if sc.Capabilities == nil {
		sc.Capabilities = &corev1.Capabilities{}
	}
	if sc.Capabilities.Drop == nil {
		sc.Capabilities.Drop = []corev1.Capability{"ALL"}
	}
}

// ensureAdminPort makes sure the worker container declares the admin port:
// a port already named "admin" is kept, an unnamed port 8081 gets the
// name, otherwise port 8081 is added.
func ensureAdminPort(w *corev1.Container) {
	for i := range w.Ports {
		if w.Ports[i].Name == loopsv1alpha1.WorkerAdminPortName {
			return
		}
	}
	for i := range w.Ports {
		if w.Ports[i].ContainerPort == loopsv1alpha1.WorkerAdminPort && w.Ports[i].Name == "" {
			w.Ports[i].Name = loopsv1alpha1.WorkerAdminPortName
			return
		}
	}
	w.Ports = append(w.Ports, corev1.ContainerPort{
		Name: loopsv1alpha1.WorkerAdminPortName, ContainerPort: loopsv1alpha1.WorkerAdminPort, Protocol: corev1.ProtocolTCP,
	})
}
