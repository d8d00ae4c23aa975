//go:build e2e

package localcluster_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/tenire/loop-operator/internal/localcluster"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.IgnoreTopFunction("k8s.io/klog/v2.(*flushDaemon).run"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
	)
}

func TestClusterAndNATS(t *testing.T) {
	c := localcluster.StartForTest(t, localcluster.Options{})
	ctx := t.Context()

	for _, name := range []string{localcluster.Etcd, localcluster.APIServer, localcluster.ControllerManager, localcluster.Scheduler} {
		if st, err := os.Stat(c.LogPath(name)); err != nil || st.Size() == 0 {
			t.Errorf("log of %s: %v (empty or missing)", name, err)
		}
	}

	// The admin kubeconfig file works.
	fileCfg, err := clientcmd.BuildConfigFromFlags("", c.KubeconfigPath)
	if err != nil {
		t.Fatalf("reading the admin kubeconfig: %v", err)
	}
	cs, err := kubernetes.NewForConfig(fileCfg)
	if err != nil {
		t.Fatal(err)
	}
	ns, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "lc-"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating a namespace: %v", err)
	}

	// kube-controller-manager runs: the service-account controller creates
	// "default" and the root-CA publisher its config map.
	if err := c.WaitForServiceAccount(ctx, ns.Name, "default"); err != nil {
		t.Fatal(err)
	}

	// Authorization is RBAC: a plain user may do nothing.
	userCfg, err := c.UserConfig("nobody")
	if err != nil {
		t.Fatal(err)
	}
	userCS, err := kubernetes.NewForConfig(userCfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := userCS.CoreV1().Pods(ns.Name).List(ctx, metav1.ListOptions{}); err == nil || !strings.Contains(err.Error(), "forbidden") {
		t.Errorf("listing pods as an unprivileged user: got %v, want forbidden", err)
	}

	// NATS JetStream survives a restart with its store.
	n, err := c.StartNATS()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(n.StoreDir, c.RunDir) {
		t.Errorf("NATS store %s is not in the run folder %s", n.StoreDir, c.RunDir)
	}
	nc, err := nats.Connect(n.URL(), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "T", Subjects: []string{"t.>"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, "t.a", []byte("x")); err != nil {
		t.Fatal(err)
	}
	url := n.URL()
	if err := n.Restart(); err != nil {
		t.Fatal(err)
	}
	if n.URL() != url {
		t.Errorf("URL changed across a restart: %s -> %s", url, n.URL())
	}
	nc2, err := nats.Connect(n.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc2.Close()
	js2, err := jetstream.New(nc2)
	if err != nil {
		t.Fatal(err)
	}
	st, err := js2.Stream(ctx, "T")
	if err != nil {
		t.Fatalf("the stream after a restart: %v", err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 1 {
		t.Errorf("messages after a restart: %d, want 1", info.State.Msgs)
	}
	if _, err := os.Stat(filepath.Join(n.StoreDir, "jetstream")); err != nil {
		t.Errorf("JetStream store: %v", err)
	}
	// A process beside the cluster gets the admin kubeconfig; kill -9 and a
	// start again work.
	sh := func() *localcluster.Process {
		p, err := c.StartProcess("beside", "/bin/sh", []string{"-c", `echo "kubeconfig=$KUBECONFIG extra=$EXTRA"; exec sleep 300`}, []string{"EXTRA=yes"})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	p := sh()
	waitLog := func(want string) {
		t.Helper()
		err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
			return strings.Count(p.Tail(10), want) > 0, nil
		})
		if err != nil {
			t.Fatalf("waiting for %q in the log: %v; log:\n%s", want, err, p.Tail(10))
		}
	}
	waitLog("kubeconfig=" + c.KubeconfigPath + " extra=yes")
	if err := p.Kill(); err != nil {
		t.Fatal(err)
	}
	if done, _ := p.Exited(); !done {
		t.Error("the process runs after Kill")
	}
	p = sh()
	if err := p.Stop(5 * time.Second); err != nil {
		t.Errorf("stopping a process: %v", err)
	}
	<-p.Done()

	if exited := c.Exited(); len(exited) > 0 {
		t.Errorf("components exited: %v", exited)
	}
}
