//go:build e2e

package nodeagent_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/tenire/loop-operator/api/v1alpha1/contract"
	"github.com/tenire/loop-operator/internal/localcluster"
	"github.com/tenire/loop-operator/internal/nodeagent"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.IgnoreTopFunction("k8s.io/klog/v2.(*flushDaemon).run"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
	)
}

// buildHelper builds the test program that the pods run.
func buildHelper(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "podhelper")
	cmd := exec.CommandContext(t.Context(), "go", "build", "-o", bin, "./testdata/podhelper")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building the pod helper: %v\n%s", err, out)
	}
	return bin
}

// poll waits until cond returns true, failing the test with the last
// description on timeout.
func poll(t *testing.T, timeout time.Duration, what string, cond func(ctx context.Context) (bool, string)) {
	t.Helper()
	last := ""
	err := wait.PollUntilContextTimeout(t.Context(), 200*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		ok, desc := cond(ctx)
		last = desc
		return ok, nil
	})
	if err != nil {
		t.Fatalf("waiting for %s: %v; last: %s", what, err, last)
	}
}

// waitLong bounds each wait: generous, because the machine is shared.
const waitLong = 2 * time.Minute

type env struct {
	cluster *localcluster.Cluster
	agent   *nodeagent.Agent
	cs      kubernetes.Interface
	ns      string
}

func podSpec(name, image string, extraEnv ...corev1.EnvVar) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"app": "helper"}},
		Spec: corev1.PodSpec{
			ServiceAccountName:            "helper",
			TerminationGracePeriodSeconds: ptr.To[int64](10),
			Containers: []corev1.Container{{
				Name:    "worker",
				Image:   image,
				Command: []string{"/podhelper", "--name=$(POD_NAME)"},
				Args:    []string{"--literal=$$(POD_NAME)"},
				Ports:   []corev1.ContainerPort{{Name: "admin", ContainerPort: 8081}},
				Env: append([]corev1.EnvVar{
					{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
					{Name: "POD_NAMESPACE", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.namespace"}}},
					{Name: "POD_IP", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "status.podIP"}}},
					{Name: "NODE_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "spec.nodeName"}}},
				}, extraEnv...),
				ReadinessProbe: &corev1.Probe{
					ProbeHandler:     corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/readyz", Port: intstr.FromString("admin")}},
					PeriodSeconds:    1,
					FailureThreshold: 2,
				},
				// Lenient, so that a loaded machine does not restart
				// healthy processes and upset the restart counts below.
				LivenessProbe: &corev1.Probe{
					ProbeHandler:     corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromInt32(8081)}},
					PeriodSeconds:    1,
					TimeoutSeconds:   5,
					FailureThreshold: 3,
				},
			}},
		},
	}
}

func (e *env) waitPod(t *testing.T, name, what string, timeout time.Duration, cond func(p *corev1.Pod) bool) *corev1.Pod {
	t.Helper()
	var pod *corev1.Pod
	poll(t, timeout, "pod "+name+" "+what, func(ctx context.Context) (bool, string) {
		p, err := e.cs.CoreV1().Pods(e.ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		pod = p
		return cond(p), fmt.Sprintf("phase=%s conditions=%v statuses=%v", p.Status.Phase, p.Status.Conditions, p.Status.ContainerStatuses)
	})
	return pod
}

func (e *env) waitGone(t *testing.T, name string, uid types.UID, timeout time.Duration) {
	t.Helper()
	poll(t, timeout, "pod "+name+" to disappear", func(ctx context.Context) (bool, string) {
		p, err := e.cs.CoreV1().Pods(e.ns).Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return true, ""
		}
		if err != nil {
			return false, err.Error()
		}
		return p.UID != uid, fmt.Sprintf("phase=%s deletionTimestamp=%v", p.Status.Phase, p.DeletionTimestamp)
	})
}

func isReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func TestNodeAgent(t *testing.T) {
	helper := buildHelper(t)
	c := localcluster.StartForTest(t, localcluster.Options{})
	cs, err := kubernetes.NewForConfig(c.Config)
	if err != nil {
		t.Fatal(err)
	}
	agent := nodeagent.StartForTest(t, c.Config, c.RunDir, nodeagent.Options{
		Nodes:          []string{"node-a", "node-b"},
		Images:         nodeagent.ImageMap{{Match: "podhelper", Binary: helper}},
		RenewInterval:  2 * time.Second,
		StatusInterval: 3 * time.Second,
	})
	if got, want := agent.RunDir(), filepath.Join(c.RunDir, "nodeagent"); got != want {
		t.Errorf("agent run folder %s, want %s", got, want)
	}
	ctx := t.Context()

	ns, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "na-"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	e := &env{cluster: c, agent: agent, cs: cs, ns: ns.Name}
	// The pods' service account may read pods, and nothing else.
	if _, err := cs.CoreV1().ServiceAccounts(e.ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "helper"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.RbacV1().Roles(e.ns).Create(ctx, &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "pod-reader"},
		Rules: []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get"}}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.RbacV1().RoleBindings(e.ns).Create(ctx, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "helper"},
		RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "pod-reader"},
		Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Name: "helper", Namespace: e.ns}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitForServiceAccount(ctx, e.ns, "default"); err != nil {
		t.Fatal(err)
	}

	t.Run("nodes register and stay ready", func(t *testing.T) {
		wctx, cancel := context.WithTimeout(ctx, waitLong)
		defer cancel()
		if err := agent.WaitReady(wctx); err != nil {
			t.Fatal(err)
		}
		for _, name := range agent.Nodes() {
			var renew time.Time
			poll(t, waitLong, "node "+name+" ready and untainted", func(ctx context.Context) (bool, string) {
				n, err := cs.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
				if err != nil {
					return false, err.Error()
				}
				ready := false
				for _, c := range n.Status.Conditions {
					if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
						ready = true
					}
				}
				// The node lifecycle controller removes the not-ready taint
				// that admission adds to new nodes once it sees them ready.
				return ready && len(n.Spec.Taints) == 0, fmt.Sprintf("conditions=%v taints=%v", n.Status.Conditions, n.Spec.Taints)
			})
			poll(t, waitLong, "node "+name+" lease renewed", func(ctx context.Context) (bool, string) {
				l, err := cs.CoordinationV1().Leases(corev1.NamespaceNodeLease).Get(ctx, name, metav1.GetOptions{})
				if err != nil || l.Spec.RenewTime == nil {
					return false, fmt.Sprint(err)
				}
				if renew.IsZero() {
					renew = l.Spec.RenewTime.Time
					return false, "first renewal seen"
				}
				return l.Spec.RenewTime.After(renew), l.Spec.RenewTime.String()
			})
		}
	})

	t.Run("pod runs, becomes ready and uses its own token", func(t *testing.T) {
		if _, err := cs.CoreV1().Pods(e.ns).Create(ctx, podSpec("p1", "registry.example/podhelper:dev"), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		pod := e.waitPod(t, "p1", "running and ready", waitLong, func(p *corev1.Pod) bool {
			return p.Status.Phase == corev1.PodRunning && isReady(p)
		})
		if pod.Status.PodIP != "127.0.0.1" || pod.Status.HostIP != "127.0.0.1" {
			t.Errorf("pod IP %q host IP %q", pod.Status.PodIP, pod.Status.HostIP)
		}
		st := pod.Status.ContainerStatuses
		if len(st) != 1 || !st[0].Ready || st[0].State.Running == nil || st[0].RestartCount != 0 {
			t.Errorf("container statuses: %+v", st)
		}
		for _, want := range []corev1.PodConditionType{corev1.PodScheduled, corev1.PodInitialized, corev1.ContainersReady, corev1.PodReady} {
			found := false
			for _, c := range pod.Status.Conditions {
				found = found || (c.Type == want && c.Status == corev1.ConditionTrue)
			}
			if !found {
				t.Errorf("condition %s is not True: %v", want, pod.Status.Conditions)
			}
		}
		info, ok := agent.Process(e.ns, "p1")
		if !ok || info.PID == 0 || info.AdminAddr == "" {
			t.Fatalf("process info: %+v %v", info, ok)
		}
		resp, err := http.Get("http://" + info.AdminAddr + "/self")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var s struct {
			Name, Namespace, PodIP, Node, UID, GetPodError, ListSecretsError string
			AdminAddr                                                        string
			Args                                                             []string
		}
		if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
			t.Fatal(err)
		}
		if s.Name != "p1" || s.Namespace != e.ns || s.PodIP != "127.0.0.1" || s.Node != pod.Spec.NodeName {
			t.Errorf("downward API: %+v", s)
		}
		if s.AdminAddr != info.AdminAddr {
			t.Errorf("admin address in the environment (%s): %q, want %q", nodeagent.AdminAddrEnv, s.AdminAddr, info.AdminAddr)
		}
		if s.UID != string(pod.UID) || s.GetPodError != "" {
			t.Errorf("reading its own pod with its token: uid %q (want %q), error %q", s.UID, pod.UID, s.GetPodError)
		}
		if !strings.Contains(s.ListSecretsError, "forbidden") {
			t.Errorf("listing secrets with the pod's token: got %q, want forbidden (RBAC)", s.ListSecretsError)
		}
		if want := []string{"--name=p1", "--literal=$(POD_NAME)"}; fmt.Sprint(s.Args) != fmt.Sprint(want) {
			t.Errorf("args %q, want %q", s.Args, want)
		}
	})

	t.Run("a failing readiness probe turns the pod unready", func(t *testing.T) {
		p := podSpec("unready", "podhelper")
		p.Labels = map[string]string{"app": "unready"}
		if _, err := cs.CoreV1().Pods(e.ns).Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		e.waitPod(t, "unready", "ready", waitLong, isReady)
		info, _ := agent.Process(e.ns, "unready")
		resp, err := http.Get("http://" + info.AdminAddr + "/unready")
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		pod := e.waitPod(t, "unready", "not ready", waitLong, func(p *corev1.Pod) bool {
			return !isReady(p) && len(p.Status.ContainerStatuses) == 1 && !p.Status.ContainerStatuses[0].Ready
		})
		if pod.Status.Phase != corev1.PodRunning || pod.Status.ContainerStatuses[0].RestartCount != 0 {
			t.Errorf("an unready pod: phase %s, restarts %d", pod.Status.Phase, pod.Status.ContainerStatuses[0].RestartCount)
		}
		if err := cs.CoreV1().Pods(e.ns).Delete(ctx, "unready", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		e.waitGone(t, "unready", pod.UID, waitLong)
	})

	t.Run("foreign conditions survive, kill -9 restarts the process", func(t *testing.T) {
		patch, err := json.Marshal(map[string]any{"status": map[string]any{"conditions": []corev1.PodCondition{{
			Type: contract.PodConditionDrained, Status: corev1.ConditionFalse, Reason: "NotRequested", LastTransitionTime: metav1.Now(),
		}}}})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := cs.CoreV1().Pods(e.ns).Patch(ctx, "p1", types.StrategicMergePatchType, patch, metav1.PatchOptions{}, "status"); err != nil {
			t.Fatal(err)
		}
		before, _ := agent.Process(e.ns, "p1")
		if err := agent.Kill(e.ns, "p1"); err != nil {
			t.Fatal(err)
		}
		pod := e.waitPod(t, "p1", "restarted and ready again", waitLong, func(p *corev1.Pod) bool {
			return len(p.Status.ContainerStatuses) == 1 && p.Status.ContainerStatuses[0].RestartCount == 1 && isReady(p)
		})
		last := pod.Status.ContainerStatuses[0].LastTerminationState.Terminated
		if last == nil || last.ExitCode != 137 {
			t.Errorf("last termination state: %+v, want exit code 137", last)
		}
		after, _ := agent.Process(e.ns, "p1")
		if after.PID == before.PID || after.RestartCount != 1 {
			t.Errorf("process before %+v after %+v", before, after)
		}
		if _, ok := findCond(pod, contract.PodConditionDrained); !ok {
			t.Errorf("the worker's condition was dropped: %v", pod.Status.Conditions)
		}
	})

	t.Run("deleting a pod sends SIGTERM and removes it", func(t *testing.T) {
		pod, err := cs.CoreV1().Pods(e.ns).Get(ctx, "p1", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		info, _ := agent.Process(e.ns, "p1")
		if err := cs.CoreV1().Pods(e.ns).Delete(ctx, "p1", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		e.waitGone(t, "p1", pod.UID, waitLong)
		log, err := os.ReadFile(info.LogPath)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(log), "podhelper: SIGTERM received") {
			t.Errorf("the process did not get SIGTERM; its log:\n%s", log)
		}
	})

	t.Run("a process that ignores SIGTERM is killed after the grace period", func(t *testing.T) {
		p := podSpec("stubborn", "podhelper", corev1.EnvVar{Name: "IGNORE_SIGTERM", Value: "1"})
		p.Spec.TerminationGracePeriodSeconds = ptr.To[int64](2)
		if _, err := cs.CoreV1().Pods(e.ns).Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		pod := e.waitPod(t, "stubborn", "ready", waitLong, isReady)
		info, _ := agent.Process(e.ns, "stubborn")
		start := time.Now()
		if err := cs.CoreV1().Pods(e.ns).Delete(ctx, "stubborn", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		e.waitGone(t, "stubborn", pod.UID, waitLong)
		if took := time.Since(start); took < 2*time.Second {
			t.Errorf("the pod was gone after %s, before its 2s grace period", took)
		}
		log, err := os.ReadFile(info.LogPath)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(log), "podhelper: ignoring SIGTERM") {
			t.Errorf("the process did not get SIGTERM first; its log:\n%s", log)
		}
	})

	t.Run("a failing liveness probe restarts the process", func(t *testing.T) {
		if _, err := cs.CoreV1().Pods(e.ns).Create(ctx, podSpec("unhealthy", "podhelper", corev1.EnvVar{Name: "LIVENESS_FAILS", Value: "1"}), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		pod := e.waitPod(t, "unhealthy", "restarted", waitLong, func(p *corev1.Pod) bool {
			return len(p.Status.ContainerStatuses) == 1 && p.Status.ContainerStatuses[0].RestartCount >= 1
		})
		info, _ := agent.Process(e.ns, "unhealthy")
		log, err := os.ReadFile(info.LogPath)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(log), "podhelper: SIGTERM received") {
			t.Errorf("the process was not stopped with SIGTERM; its log:\n%s", log)
		}
		if err := cs.CoreV1().Pods(e.ns).Delete(ctx, "unhealthy", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		e.waitGone(t, "unhealthy", pod.UID, waitLong)
	})

	t.Run("an unknown image fails the pod", func(t *testing.T) {
		if _, err := cs.CoreV1().Pods(e.ns).Create(ctx, podSpec("unknown", "nginx:latest"), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		pod := e.waitPod(t, "unknown", "failed", waitLong, func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodFailed })
		if pod.Status.Reason != "UnknownImage" || !strings.Contains(pod.Status.Message, "nginx:latest") {
			t.Errorf("reason %q message %q", pod.Status.Reason, pod.Status.Message)
		}
		if err := cs.CoreV1().Pods(e.ns).Delete(ctx, "unknown", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		e.waitGone(t, "unknown", pod.UID, waitLong)
	})

	t.Run("a process that exits is restarted with a count", func(t *testing.T) {
		p := podSpec("crasher", "podhelper", corev1.EnvVar{Name: "EXIT_AFTER", Value: "100ms"})
		p.Spec.RestartPolicy = corev1.RestartPolicyOnFailure
		if _, err := cs.CoreV1().Pods(e.ns).Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		pod := e.waitPod(t, "crasher", "restarted twice", waitLong, func(p *corev1.Pod) bool {
			return len(p.Status.ContainerStatuses) == 1 && p.Status.ContainerStatuses[0].RestartCount >= 2
		})
		if pod.Status.Phase != corev1.PodRunning || isReady(pod) {
			t.Errorf("phase %s ready %v", pod.Status.Phase, isReady(pod))
		}
		if err := cs.CoreV1().Pods(e.ns).Delete(ctx, "crasher", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		e.waitGone(t, "crasher", pod.UID, waitLong)
	})

	t.Run("a ReplicaSet's pods spread, become ready and go with it", func(t *testing.T) {
		const replicas = 10
		tmpl := podSpec("", "podhelper")
		tmpl.Labels = map[string]string{"app": "rs"}
		rs, err := cs.AppsV1().ReplicaSets(e.ns).Create(ctx, &appsv1.ReplicaSet{
			ObjectMeta: metav1.ObjectMeta{Name: "rs"},
			Spec: appsv1.ReplicaSetSpec{
				Replicas: ptr.To[int32](replicas),
				Selector: &metav1.LabelSelector{MatchLabels: tmpl.Labels},
				Template: corev1.PodTemplateSpec{ObjectMeta: tmpl.ObjectMeta, Spec: tmpl.Spec},
			},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		poll(t, waitLong, "the ReplicaSet ready", func(ctx context.Context) (bool, string) {
			got, err := cs.AppsV1().ReplicaSets(e.ns).Get(ctx, rs.Name, metav1.GetOptions{})
			if err != nil {
				return false, err.Error()
			}
			return got.Status.ReadyReplicas == replicas, fmt.Sprintf("%+v", got.Status)
		})
		pods, err := cs.CoreV1().Pods(e.ns).List(ctx, metav1.ListOptions{LabelSelector: "app=rs"})
		if err != nil {
			t.Fatal(err)
		}
		perNode := map[string]int{}
		for _, p := range pods.Items {
			perNode[p.Spec.NodeName]++
		}
		if len(perNode) != 2 {
			t.Errorf("pods per node: %v, want both nodes used", perNode)
		}
		// The garbage collector deletes the pods; the agent stops them.
		if err := cs.AppsV1().ReplicaSets(e.ns).Delete(ctx, rs.Name, metav1.DeleteOptions{PropagationPolicy: ptr.To(metav1.DeletePropagationForeground)}); err != nil {
			t.Fatal(err)
		}
		poll(t, waitLong, "the ReplicaSet's pods gone", func(ctx context.Context) (bool, string) {
			left, err := cs.CoreV1().Pods(e.ns).List(ctx, metav1.ListOptions{LabelSelector: "app=rs"})
			if err != nil {
				return false, err.Error()
			}
			return len(left.Items) == 0, fmt.Sprintf("%d pods left", len(left.Items))
		})
	})

	t.Run("evictions honour a PodDisruptionBudget", func(t *testing.T) {
		for _, name := range []string{"e1", "e2"} {
			p := podSpec(name, "podhelper")
			p.Labels = map[string]string{"app": "evict"}
			if _, err := cs.CoreV1().Pods(e.ns).Create(ctx, p, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := cs.PolicyV1().PodDisruptionBudgets(e.ns).Create(ctx, &policyv1.PodDisruptionBudget{
			ObjectMeta: metav1.ObjectMeta{Name: "evict"},
			Spec: policyv1.PodDisruptionBudgetSpec{
				MinAvailable: ptr.To(intstr.FromInt32(1)),
				Selector:     &metav1.LabelSelector{MatchLabels: map[string]string{"app": "evict"}},
			},
		}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		poll(t, waitLong, "the PDB to allow one disruption", func(ctx context.Context) (bool, string) {
			pdb, err := cs.PolicyV1().PodDisruptionBudgets(e.ns).Get(ctx, "evict", metav1.GetOptions{})
			if err != nil {
				return false, err.Error()
			}
			return pdb.Status.CurrentHealthy == 2 && pdb.Status.DisruptionsAllowed == 1, fmt.Sprintf("%+v", pdb.Status)
		})
		e1, err := cs.CoreV1().Pods(e.ns).Get(ctx, "e1", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		evict := func(name string) error {
			return cs.PolicyV1().Evictions(e.ns).Evict(ctx, &policyv1.Eviction{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: e.ns}})
		}
		if err := evict("e1"); err != nil {
			t.Fatalf("evicting e1: %v", err)
		}
		e.waitGone(t, "e1", e1.UID, waitLong)
		if err := evict("e2"); !apierrors.IsTooManyRequests(err) {
			t.Errorf("evicting e2 with one healthy pod left: %v, want 429 (the PDB)", err)
		}
	})
}

func findCond(p *corev1.Pod, t corev1.PodConditionType) (corev1.PodCondition, bool) {
	for _, c := range p.Status.Conditions {
		if c.Type == t {
			return c, true
		}
	}
	return corev1.PodCondition{}, false
}
