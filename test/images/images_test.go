//go:build images

package images

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart/loader"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	loopsv1alpha1 "github.com/tenire/loop-operator/api/v1alpha1"
	"github.com/tenire/loop-operator/internal/manifests"
	"github.com/tenire/loop-operator/internal/natstest"
	"github.com/tenire/loop-operator/internal/testenv"
	"github.com/tenire/loop-operator/worker/queue"
)

// The images' tags, as the Makefile's IMG and WORKER_IMG default them.
var (
	managerImage = envOr("IMG", "ghcr.io/tenire/loop-operator:dev")
	workerImage  = envOr("WORKER_IMG", "ghcr.io/tenire/loop-worker:dev")
	// natsImage is make nats-image's (the Makefile passes NATS_LOCAL_IMG).
	natsImage = envOr("NATS_IMG", "")
)

// asAPod are the docker run flags of the security context the operator
// gives worker pods and config/manager gives the manager.
var asAPod = []string{"--read-only", "--cap-drop", "ALL", "--security-opt", "no-new-privileges", "--user", "65532:65532"}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

func TestMain(m *testing.M) {
	if out, err := exec.Command("docker", "info", "--format", "{{.ServerVersion}}").CombinedOutput(); err != nil {
		msg := fmt.Sprintf("no Docker daemon answers (%v: %s)", err, strings.TrimSpace(string(out)))
		if os.Getenv("CI") == "true" {
			fmt.Fprintln(os.Stderr, "FAIL:", msg, "- .ci/run installs and starts one")
			os.Exit(1)
		}
		fmt.Fprintln(os.Stderr, "SKIP:", msg)
		os.Exit(0)
	}
	root, err := testenv.RepoRoot()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if natsImage == "" {
		fmt.Fprintln(os.Stderr, "NATS_IMG is not set: run make test-images")
		os.Exit(1)
	}
	for _, archive := range []string{"manager.tar", "loop-worker.tar", "nats.tar"} {
		path := filepath.Join(root, "bin", "images", archive)
		if out, err := exec.Command("docker", "load", "-i", path).CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "docker load -i %s (run make images first): %v: %s\n", path, err, out)
			os.Exit(1)
		}
	}
	os.Exit(m.Run())
}

// docker runs the docker CLI and returns its output.
func docker(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.CommandContext(t.Context(), "docker", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("docker %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// container is a detached container of the test, removed when it ends,
// with its log written to the test's log on failure.
type container struct {
	t  *testing.T
	id string
}

// start runs image detached on the host's network (the container's
// 127.0.0.1 is the machine's) with the flags and arguments given.
func start(t *testing.T, flags []string, image string, args ...string) *container {
	t.Helper()
	run := append([]string{"run", "-d", "--network", "host"}, flags...)
	run = append(run, image)
	c := &container{t: t, id: docker(t, append(run, args...)...)}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("log of the container of %s:\n%s", image, c.logs())
		}
		_ = exec.Command("docker", "rm", "-f", c.id).Run()
	})
	return c
}

func (c *container) logs() string {
	out, _ := exec.Command("docker", "logs", c.id).CombinedOutput()
	return string(out)
}

// stop sends SIGTERM (docker stop, as a kubelet does) and returns the exit
// code once the container ended.
func (c *container) stop(grace time.Duration) int {
	c.t.Helper()
	docker(c.t, "stop", "-t", strconv.Itoa(int(grace.Seconds())), c.id)
	code, err := strconv.Atoi(docker(c.t, "inspect", "--format", "{{.State.ExitCode}}", c.id))
	if err != nil {
		c.t.Fatal(err)
	}
	return code
}

// running fails the test when the container has exited.
func (c *container) running() error {
	state := docker(c.t, "inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}", c.id)
	if !strings.HasPrefix(state, "running") {
		return fmt.Errorf("the container is %s; log:\n%s", state, c.logs())
	}
	return nil
}

// eventually polls cond every 100ms until it holds, the container exits
// or a minute passes.
func eventually(t *testing.T, c *container, what string, cond func() bool) {
	t.Helper()
	deadline := time.After(time.Minute)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if err := c.running(); err != nil {
			t.Fatalf("waiting for %s: %v", what, err)
		}
		select {
		case <-deadline:
			t.Fatalf("%s: not within a minute", what)
		case <-tick.C:
		}
	}
}

// httpOK reports whether GET url answers 200.
func httpOK(url string) bool {
	resp, err := http.Get(url)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// succeeded returns the worker's count of succeeded tasks from /status.
func succeeded(admin string) int {
	resp, err := http.Get("http://" + admin + "/status")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	var st struct {
		Counters map[string]int `json:"counters"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return -1
	}
	return st.Counters["succeeded"]
}

// submitSleeps submits n sleep tasks of ms milliseconds to the queue of
// stream and prefix on the NATS server at url.
func submitSleeps(t *testing.T, url, stream, prefix string, n, ms int) {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	p := queue.NewProducer(js, queue.NewNames(stream, prefix))
	tasks := make([]queue.Task, n)
	for i := range tasks {
		tasks[i] = queue.Task{ID: fmt.Sprintf("%s-%d-%d", t.Name(), time.Now().UnixNano(), i), Kind: "sleep", Payload: fmt.Appendf(nil, `{"ms": %d}`, ms)}
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := p.SubmitBatch(ctx, tasks); err != nil {
		t.Fatal(err)
	}
}

// TestTheWorkerImageRunsStandalone: `docker run IMAGE --standalone`, as
// docs/worker.md shows it, plainly and with a pod's security context (a
// tmpfs on /tmp for the embedded server's store, as an emptyDir would
// be), takes tasks and drains on SIGTERM with exit code 0.
func TestTheWorkerImageRunsStandalone(t *testing.T) {
	for _, tc := range []struct {
		name  string
		flags []string
	}{
		{"as docker runs it by default", nil},
		{"read-only, non-root, no capabilities, a tmpfs on /tmp", append(append([]string(nil), asAPod...), "--tmpfs", "/tmp")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			natsPort, admin := testenv.Port(t), fmt.Sprintf("127.0.0.1:%d", testenv.Port(t))
			c := start(t, tc.flags, workerImage, "--standalone", "--standalone-port", strconv.Itoa(natsPort), "--admin-addr", admin)
			eventually(t, c, "the worker to be ready", func() bool { return httpOK("http://" + admin + "/readyz") })
			const n = 20
			submitSleeps(t, fmt.Sprintf("nats://127.0.0.1:%d", natsPort), "LOOP_local", "loops.local", n, 50)
			eventually(t, c, fmt.Sprintf("%d tasks to succeed", n), func() bool { return succeeded(admin) == n })
			if code := c.stop(30 * time.Second); code != 0 {
				t.Errorf("exit code after SIGTERM = %d, want 0; log:\n%s", code, c.logs())
			}
			if log := c.logs(); !strings.Contains(log, `"msg":"drained"`) {
				t.Errorf("the worker did not log its drain:\n%s", log)
			}
		})
	}
}

// TestTheWorkerImageRunsAsInAPod: the worker against a NATS server of its
// own, as the operator starts it, with the pod's security context and no
// writable folder at all: it binds, runs tasks and drains on SIGTERM.
func TestTheWorkerImageRunsAsInAPod(t *testing.T) {
	srv := natstest.Start(t)
	admin := fmt.Sprintf("127.0.0.1:%d", testenv.Port(t))
	const stream, prefix = "LOOP_images_worker", "loops.images.worker"
	c := start(t, asAPod, workerImage, "--nats-url", srv.URL, "--stream", stream, "--subject-prefix", prefix,
		"--ensure-queue", "--admin-addr", admin, "--max-workers", "4")
	eventually(t, c, "the worker to be ready", func() bool { return httpOK("http://" + admin + "/readyz") })
	const n = 20
	submitSleeps(t, srv.URL, stream, prefix, n, 50)
	eventually(t, c, fmt.Sprintf("%d tasks to succeed", n), func() bool { return succeeded(admin) == n })
	if code := c.stop(30 * time.Second); code != 0 {
		t.Errorf("exit code after SIGTERM = %d, want 0; log:\n%s", code, c.logs())
	}
}

// TestTheNATSImageRunsAsConfigNATSRunsIt: make nats-image's NATS, the
// server of make kind-create, with config/nats's arguments and security
// context (user 1000, no capabilities) and its store on a folder that user
// owns, as the claim's volume with fsGroup 1000: JetStream is ready and a
// worker in its own container runs tasks through it; SIGTERM stops it
// cleanly.
func TestTheNATSImageRunsAsConfigNATSRunsIt(t *testing.T) {
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	b, err := manifests.Kustomize(filepath.Join(root, "config", "nats"))
	if err != nil {
		t.Fatal(err)
	}
	objs, err := manifests.Objects(b)
	if err != nil {
		t.Fatal(err)
	}
	var sts appsv1.StatefulSet
	for _, o := range objs {
		if o.GetKind() == "StatefulSet" {
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, &sts); err != nil {
				t.Fatal(err)
			}
		}
	}
	if len(sts.Spec.Template.Spec.Containers) != 1 {
		t.Fatalf("config/nats has no StatefulSet of one container: %+v", sts.Spec.Template.Spec)
	}
	ctr, pod := sts.Spec.Template.Spec.Containers[0], sts.Spec.Template.Spec.SecurityContext
	if pod == nil || pod.RunAsUser == nil || pod.FSGroup == nil {
		t.Fatal("config/nats's pod sets no runAsUser and fsGroup")
	}
	clientPort, monitor := testenv.Port(t), testenv.Port(t)
	args := []string{"--port", strconv.Itoa(clientPort)}
	for _, a := range ctr.Args {
		if strings.HasPrefix(a, "--http_port=") {
			a = fmt.Sprintf("--http_port=%d", monitor)
		}
		args = append(args, a)
	}
	user := fmt.Sprintf("%d:%d", *pod.RunAsUser, *pod.FSGroup)
	flags := []string{"--user", user, "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
		"--tmpfs", fmt.Sprintf("/data:uid=%d,gid=%d,mode=0770", *pod.RunAsUser, *pod.FSGroup)}
	t.Logf("NATS as config/nats runs it: --user %s %v", user, args)
	nc := start(t, flags, natsImage, args...)
	eventually(t, nc, "JetStream to be ready", func() bool {
		return httpOK(fmt.Sprintf("http://127.0.0.1:%d/healthz?js-enabled-only=true", monitor))
	})

	url := fmt.Sprintf("nats://127.0.0.1:%d", clientPort)
	admin := fmt.Sprintf("127.0.0.1:%d", testenv.Port(t))
	const stream, prefix = "LOOP_images_nats", "loops.images.nats"
	w := start(t, asAPod, workerImage, "--nats-url", url, "--stream", stream, "--subject-prefix", prefix,
		"--ensure-queue", "--admin-addr", admin, "--max-workers", "4")
	eventually(t, w, "the worker to be ready", func() bool { return httpOK("http://" + admin + "/readyz") })
	const n = 20
	submitSleeps(t, url, stream, prefix, n, 50)
	eventually(t, w, fmt.Sprintf("%d tasks to succeed", n), func() bool { return succeeded(admin) == n })
	if code := w.stop(30 * time.Second); code != 0 {
		t.Errorf("the worker's exit code after SIGTERM = %d, want 0; log:\n%s", code, w.logs())
	}
	if code := nc.stop(30 * time.Second); code != 0 {
		t.Errorf("NATS's exit code after SIGTERM = %d, want 0; log:\n%s", code, nc.logs())
	}
}

// TestTheManagerImageReconcilesAsInAPod: the manager image, with the
// security context of config/manager, against a real API server and
// --watch-namespaces: it becomes ready and creates the pods of a
// LoopDeployment in the namespace it watches, and leaves one elsewhere
// alone.
func TestTheManagerImageReconcilesAsInAPod(t *testing.T) {
	api := startAPIServer(t)
	watched, other := api.namespace(), api.namespace()
	probe := fmt.Sprintf("127.0.0.1:%d", testenv.Port(t))
	c := start(t, api.flags, managerImage, "--leader-elect=false", "--metrics-bind-address=0",
		"--health-probe-bind-address="+probe, "--manage-queues=false", "--watch-namespaces="+watched)
	eventually(t, c, "the manager to be ready", func() bool { return httpOK("http://" + probe + "/readyz") })

	// The unwatched one first: by the time the watched one has its pods,
	// the manager would have seen it too.
	ignored, ld := api.loop(other), api.loop(watched)
	eventually(t, c, "the manager to create the loop's 2 pods", func() bool { return api.pods(ld) == 2 })
	if err := api.cl.Get(t.Context(), client.ObjectKeyFromObject(ignored), ignored); err != nil {
		t.Fatal(err)
	}
	if n := api.pods(ignored); n != 0 || len(ignored.Finalizers) > 0 {
		t.Errorf("the LoopDeployment in %s, which the manager does not watch, has %d pods and finalizers %v", other, n, ignored.Finalizers)
	}
	if code := c.stop(30 * time.Second); code != 0 {
		t.Errorf("the manager's exit code after SIGTERM = %d, want 0; log:\n%s", code, c.logs())
	}
}

// apiServer is a real API server for a manager container: a client of
// it, namespaces, and the docker flags that give the container its
// kubeconfig (read-only) with a pod's security context.
type apiServer struct {
	t     *testing.T
	cl    client.Client
	flags []string
}

func startAPIServer(t *testing.T) *apiServer {
	t.Helper()
	cfg := testenv.Start(t)
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	writeKubeconfig(t, cfg, filepath.Join(dir, "config"))
	cl, err := client.New(cfg, client.Options{Scheme: testenv.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	flags := append(append([]string(nil), asAPod...), "-v", dir+":/kube:ro", "-e", "KUBECONFIG=/kube/config")
	return &apiServer{t: t, cl: cl, flags: flags}
}

// namespace creates a namespace and returns its name.
func (a *apiServer) namespace() string {
	a.t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "images-"}}
	if err := a.cl.Create(a.t.Context(), ns); err != nil {
		a.t.Fatal(err)
	}
	return ns.Name
}

// loop creates a LoopDeployment of 2 pods in ns (its queue is never
// reached: the managers run with --manage-queues=false or do not get that
// far).
func (a *apiServer) loop(ns string) *loopsv1alpha1.LoopDeployment {
	a.t.Helper()
	ld := &loopsv1alpha1.LoopDeployment{
		ObjectMeta: metav1.ObjectMeta{Name: "orders", Namespace: ns},
		Spec: loopsv1alpha1.LoopDeploymentSpec{
			Replicas: ptr.To[int32](2),
			Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: loopsv1alpha1.WorkerContainerName, Image: workerImage}}}},
			Queue:    loopsv1alpha1.QueueSpec{NATS: loopsv1alpha1.NATSQueueSpec{URL: "nats://nats.invalid:4222"}},
		},
	}
	if err := a.cl.Create(a.t.Context(), ld); err != nil {
		a.t.Fatal(err)
	}
	return ld
}

// pods counts the pods of ld; -1 when they cannot be listed.
func (a *apiServer) pods(ld *loopsv1alpha1.LoopDeployment) int {
	var pods corev1.PodList
	if err := a.cl.List(a.t.Context(), &pods, client.InNamespace(ld.Namespace), client.MatchingLabels{loopsv1alpha1.LabelName: ld.Name}); err != nil {
		return -1
	}
	return len(pods.Items)
}

// writeKubeconfig writes cfg (envtest's admin client certificate) as a
// kubeconfig readable by the image's user.
func writeKubeconfig(t *testing.T, cfg *rest.Config, path string) {
	t.Helper()
	kc := clientcmdapi.NewConfig()
	kc.Clusters["envtest"] = &clientcmdapi.Cluster{Server: cfg.Host, CertificateAuthorityData: cfg.CAData}
	kc.AuthInfos["admin"] = &clientcmdapi.AuthInfo{ClientCertificateData: cfg.CertData, ClientKeyData: cfg.KeyData, Token: cfg.BearerToken}
	kc.Contexts["envtest"] = &clientcmdapi.Context{Cluster: "envtest", AuthInfo: "admin"}
	kc.CurrentContext = "envtest"
	if err := clientcmd.WriteToFile(*kc, path); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestTheChartsOperatorRunsALoop: the manager as the Helm chart deploys
// it — the chart's image reference, command and arguments, rendered by
// the Helm SDK with a watched namespace and leader election on — runs in
// a container with the chart's security context against a real API
// server, takes the lease and creates a LoopDeployment's pods. Only the
// listening ports are moved off the chart's (the container shares the
// machine's network) and the lease's namespace is given, as out of a pod.
func TestTheChartsOperatorRunsALoop(t *testing.T) {
	api := startAPIServer(t)
	ns := api.namespace()
	repo, tag, _ := strings.Cut(managerImage, ":")
	image, command, args := renderChartManager(t, map[string]any{
		"image":           map[string]any{"repository": repo, "tag": tag},
		"watchNamespaces": []any{ns},
	})
	if image != managerImage || len(command) != 1 {
		t.Fatalf("the chart runs %s %v; want the image %s and one command", image, command, managerImage)
	}
	probe, metrics := testenv.Port(t), testenv.Port(t)
	for i, a := range args {
		switch {
		case strings.HasPrefix(a, "--health-probe-bind-address="):
			args[i] = fmt.Sprintf("--health-probe-bind-address=127.0.0.1:%d", probe)
		case strings.HasPrefix(a, "--metrics-bind-address="):
			args[i] = fmt.Sprintf("--metrics-bind-address=127.0.0.1:%d", metrics)
		}
	}
	args = append(args, "--leader-election-namespace="+ns)
	t.Logf("the chart's manager: %s %v", command[0], args)
	c := start(t, append(slices.Clone(api.flags), "--entrypoint", command[0]), image, args...)
	eventually(t, c, "the manager to be ready", func() bool { return httpOK(fmt.Sprintf("http://127.0.0.1:%d/readyz", probe)) })
	ld := api.loop(ns)
	eventually(t, c, "the chart's manager to create the loop's 2 pods", func() bool { return api.pods(ld) == 2 })
	if code := c.stop(30 * time.Second); code != 0 {
		t.Errorf("the manager's exit code after SIGTERM = %d, want 0; log:\n%s", code, c.logs())
	}
}

// renderChartManager renders charts/loop-operator with values as `helm
// template` does and returns its manager container's image, command and
// arguments.
func renderChartManager(t *testing.T, values map[string]any) (image string, command, args []string) {
	t.Helper()
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	ch, err := loader.Load(filepath.Join(root, "charts", "loop-operator"))
	if err != nil {
		t.Fatal(err)
	}
	install := action.NewInstall(&action.Configuration{})
	install.ReleaseName, install.Namespace, install.DryRun, install.ClientOnly = "loop-operator", "tenire-system", true, true
	rel, err := install.RunWithContext(t.Context(), ch, values)
	if err != nil {
		t.Fatalf("rendering the chart: %v", err)
	}
	objs, err := manifests.Objects([]byte(rel.Manifest))
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		if o.GetKind() != "Deployment" {
			continue
		}
		var d appsv1.Deployment
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, &d); err != nil {
			t.Fatal(err)
		}
		for _, c := range d.Spec.Template.Spec.Containers {
			if c.Name == "manager" {
				return c.Image, c.Command, c.Args
			}
		}
	}
	t.Fatal("the chart renders no Deployment with a manager container")
	return "", nil, nil
}
