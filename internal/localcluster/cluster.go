package localcluster

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/tenire/loop-operator/internal/testenv"
)

// Options configure a local cluster. The zero value is usable.
type Options struct {
	// BinDir holds kube-apiserver, kube-controller-manager, kube-scheduler
	// and etcd. Default: testenv.Assets() (KUBEBUILDER_ASSETS or the folder
	// of hack/kube-bins.sh).
	BinDir string
	// RunDir receives certificates, kubeconfigs, etcd's data and the logs.
	// Default: a new temporary folder. It is created when missing.
	RunDir string
	// Log receives progress messages. Default: discard.
	Log logr.Logger
	// StartTimeout bounds the whole start-up. Default 3 minutes.
	StartTimeout time.Duration
	// StopTimeout is how long a component may take to exit after SIGTERM
	// before it gets SIGKILL. Default 10 seconds.
	StopTimeout time.Duration
	// WithoutControllerManager starts no kube-controller-manager.
	WithoutControllerManager bool
	// WithoutScheduler starts no kube-scheduler.
	WithoutScheduler bool
	// APIServerFlags, ControllerManagerFlags and SchedulerFlags are added to
	// the generated command lines (a later flag wins).
	APIServerFlags, ControllerManagerFlags, SchedulerFlags []string
	// ControllerManagerQPS and ControllerManagerBurst are
	// kube-controller-manager's --kube-api-qps and --kube-api-burst, the
	// rate limits of each of its controllers' clients. They are always
	// passed explicitly, so that a client measured beside the controllers
	// can be given the same. Default 20 and 30, kube-controller-manager's
	// own defaults.
	ControllerManagerQPS   float32
	ControllerManagerBurst int
}

// Cluster is a running local control plane.
type Cluster struct {
	// RunDir is the run folder: pki/, etcd/, logs/ and the kubeconfigs.
	RunDir string
	// KubeconfigPath is the admin kubeconfig (user "admin", group
	// system:masters).
	KubeconfigPath string
	// URL is the apiserver's address, https://127.0.0.1:PORT.
	URL string
	// Config is the admin client configuration.
	Config *rest.Config
	// CA signed every certificate of the cluster.
	CA *CA
	// ControllerManagerQPS and ControllerManagerBurst are the client rate
	// limits kube-controller-manager was started with (Options), unless
	// ControllerManagerFlags overrode them.
	ControllerManagerQPS   float32
	ControllerManagerBurst int

	binDir      string
	log         logr.Logger
	stopTimeout time.Duration

	mu      sync.Mutex
	procs   []*process // in start order
	nats    []*NATS
	stopped bool
	stopErr error
}

// Component names, also the base names of their log files in RunDir/logs.
const (
	Etcd              = "etcd"
	APIServer         = "kube-apiserver"
	ControllerManager = "kube-controller-manager"
	Scheduler         = "kube-scheduler"
)

// ServiceAccountIssuer is the issuer of the cluster's service-account tokens.
const ServiceAccountIssuer = "https://kubernetes.default.svc.cluster.local"

// Start starts etcd, kube-apiserver, kube-controller-manager and
// kube-scheduler and waits until they are healthy. On failure it stops what
// it started, keeps the run folder and returns an error that names it (a
// *ComponentError when a component did not come up).
func Start(ctx context.Context, opts Options) (*Cluster, error) {
	if opts.StartTimeout <= 0 {
		opts.StartTimeout = 3 * time.Minute
	}
	if opts.StopTimeout <= 0 {
		opts.StopTimeout = 10 * time.Second
	}
	if opts.ControllerManagerQPS <= 0 {
		opts.ControllerManagerQPS = 20
	}
	if opts.ControllerManagerBurst <= 0 {
		opts.ControllerManagerBurst = 30
	}
	if opts.BinDir == "" {
		dir, err := testenv.Assets()
		if err != nil {
			return nil, fmt.Errorf("localcluster: finding the control plane: %w", err)
		}
		opts.BinDir = dir
	}
	for _, bin := range []string{Etcd, APIServer, ControllerManager, Scheduler} {
		if _, err := os.Stat(filepath.Join(opts.BinDir, bin)); err != nil {
			return nil, fmt.Errorf("localcluster: %s is not in %s (%w): run `make kube-bins` first", bin, opts.BinDir, err)
		}
	}
	if opts.RunDir == "" {
		dir, err := os.MkdirTemp("", "localcluster-")
		if err != nil {
			return nil, fmt.Errorf("localcluster: creating the run folder: %w", err)
		}
		opts.RunDir = dir
	}
	for _, sub := range []string{"pki", "logs", "etcd"} {
		if err := os.MkdirAll(filepath.Join(opts.RunDir, sub), 0o700); err != nil {
			return nil, fmt.Errorf("localcluster: creating the run folder: %w", err)
		}
	}
	c := &Cluster{RunDir: opts.RunDir, binDir: opts.BinDir, log: opts.Log, stopTimeout: opts.StopTimeout,
		ControllerManagerQPS: opts.ControllerManagerQPS, ControllerManagerBurst: opts.ControllerManagerBurst}
	c.log.Info("starting a local cluster", "runDir", opts.RunDir, "binDir", opts.BinDir)
	ctx, cancel := context.WithTimeout(ctx, opts.StartTimeout)
	defer cancel()
	if err := c.start(ctx, opts); err != nil {
		_ = c.Stop(true)
		return nil, fmt.Errorf("localcluster: %w (run folder kept: %s)", err, opts.RunDir)
	}
	return c, nil
}

func (c *Cluster) start(ctx context.Context, opts Options) error {
	started := time.Now()
	pki := filepath.Join(c.RunDir, "pki")
	ca, err := NewCA("tenire-localcluster-ca")
	if err != nil {
		return err
	}
	c.CA = ca
	caKey, err := ca.KeyPEM()
	if err != nil {
		return err
	}
	serving, err := ca.ServingCert("kube-apiserver",
		[]string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"},
		[]net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback, net.IPv4(10, 0, 0, 1)})
	if err != nil {
		return err
	}
	saKey, saPub, err := ServiceAccountKeys()
	if err != nil {
		return err
	}
	files := map[string][]byte{
		"ca.crt": ca.CertPEM, "ca.key": caKey,
		"apiserver.crt": serving.CertPEM, "apiserver.key": serving.KeyPEM,
		"sa.key": saKey, "sa.pub": saPub,
	}
	for name, data := range files {
		if err := writeFile(filepath.Join(pki, name), data); err != nil {
			return err
		}
	}
	p := func(name string) string { return filepath.Join(pki, name) }

	// etcd.
	var etcdURL string
	plain := &http.Client{Timeout: 5 * time.Second}
	defer plain.CloseIdleConnections()
	if err := c.launch(ctx, opts.BinDir, Etcd, "GET /health", func() ([]string, func(context.Context) error) {
		etcdURL = fmt.Sprintf("http://127.0.0.1:%d", freePort())
		peerURL := fmt.Sprintf("http://127.0.0.1:%d", freePort())
		args := []string{
			"--name=default",
			"--data-dir=" + filepath.Join(c.RunDir, "etcd"),
			"--listen-client-urls=" + etcdURL,
			"--advertise-client-urls=" + etcdURL,
			"--listen-peer-urls=" + peerURL,
			"--initial-advertise-peer-urls=" + peerURL,
			"--initial-cluster=default=" + peerURL,
			"--unsafe-no-fsync=true",
			"--log-level=warn",
		}
		return args, func(ctx context.Context) error {
			return httpCheck(ctx, plain, etcdURL+"/health", `"health":"true"`)
		}
	}); err != nil {
		return err
	}

	// kube-apiserver.
	admin, err := ca.ClientCert("admin", "system:masters")
	if err != nil {
		return err
	}
	var adminHTTP *http.Client
	defer func() {
		if adminHTTP != nil {
			adminHTTP.CloseIdleConnections()
		}
	}()
	if err := c.launch(ctx, opts.BinDir, APIServer, "GET /readyz", func() ([]string, func(context.Context) error) {
		apiPort := freePort()
		c.URL = fmt.Sprintf("https://127.0.0.1:%d", apiPort)
		args := append([]string{
			"--etcd-servers=" + etcdURL,
			"--bind-address=127.0.0.1",
			"--advertise-address=127.0.0.1",
			"--secure-port=" + strconv.Itoa(apiPort),
			"--tls-cert-file=" + p("apiserver.crt"),
			"--tls-private-key-file=" + p("apiserver.key"),
			"--client-ca-file=" + p("ca.crt"),
			"--service-account-issuer=" + ServiceAccountIssuer,
			"--service-account-key-file=" + p("sa.pub"),
			"--service-account-signing-key-file=" + p("sa.key"),
			"--service-cluster-ip-range=10.0.0.0/24",
			"--authorization-mode=Node,RBAC",
			"--allow-privileged=true",
			"--cert-dir=" + filepath.Join(c.RunDir, "apiserver-certs"),
			"--profiling=false",
			// The lease reconciler refuses a loopback address for the
			// "kubernetes" service; nothing here reaches the apiserver
			// through it.
			"--endpoint-reconciler-type=none",
			"--v=1",
		}, opts.APIServerFlags...)
		c.Config = &rest.Config{
			Host: c.URL,
			TLSClientConfig: rest.TLSClientConfig{
				CAData: ca.CertPEM, CertData: admin.CertPEM, KeyData: admin.KeyPEM,
			},
			QPS:   200,
			Burst: 400,
		}
		return args, func(ctx context.Context) error {
			if adminHTTP == nil {
				var err error
				if adminHTTP, err = rest.HTTPClientFor(c.Config); err != nil {
					return fmt.Errorf("an HTTP client for the admin user: %w", err)
				}
			}
			return httpCheck(ctx, adminHTTP, c.URL+"/readyz", "ok")
		}
	}); err != nil {
		return err
	}
	c.KubeconfigPath = filepath.Join(c.RunDir, "kubeconfig")
	if err := WriteKubeconfig(c.KubeconfigPath, c.URL, ca.CertPEM, admin); err != nil {
		return err
	}

	insecure := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // the components' own self-signed serving certificates
	}}
	defer insecure.CloseIdleConnections()
	healthz := func(port int) func(context.Context) error {
		return func(ctx context.Context) error {
			return httpCheck(ctx, insecure, fmt.Sprintf("https://127.0.0.1:%d/healthz", port), "ok")
		}
	}

	// kube-controller-manager.
	if !opts.WithoutControllerManager {
		kc := filepath.Join(c.RunDir, "kube-controller-manager.kubeconfig")
		if err := c.componentKubeconfig(kc, "system:kube-controller-manager"); err != nil {
			return err
		}
		if err := c.launch(ctx, opts.BinDir, ControllerManager, "GET /healthz", func() ([]string, func(context.Context) error) {
			port := freePort()
			args := append([]string{
				"--kubeconfig=" + kc,
				"--authentication-kubeconfig=" + kc,
				"--authorization-kubeconfig=" + kc,
				"--leader-elect=false",
				"--use-service-account-credentials=true",
				"--service-account-private-key-file=" + p("sa.key"),
				"--root-ca-file=" + p("ca.crt"),
				"--cluster-signing-cert-file=" + p("ca.crt"),
				"--cluster-signing-key-file=" + p("ca.key"),
				"--bind-address=127.0.0.1",
				"--secure-port=" + strconv.Itoa(port),
				"--cert-dir=" + filepath.Join(c.RunDir, "kube-controller-manager-certs"),
				"--controllers=*",
				"--kube-api-qps=" + strconv.FormatFloat(float64(opts.ControllerManagerQPS), 'g', -1, 32),
				"--kube-api-burst=" + strconv.Itoa(opts.ControllerManagerBurst),
				"--v=1",
			}, opts.ControllerManagerFlags...)
			return args, healthz(port)
		}); err != nil {
			return err
		}
	}

	// kube-scheduler.
	if !opts.WithoutScheduler {
		kc := filepath.Join(c.RunDir, "kube-scheduler.kubeconfig")
		if err := c.componentKubeconfig(kc, "system:kube-scheduler"); err != nil {
			return err
		}
		if err := c.launch(ctx, opts.BinDir, Scheduler, "GET /healthz", func() ([]string, func(context.Context) error) {
			port := freePort()
			args := append([]string{
				"--kubeconfig=" + kc,
				"--authentication-kubeconfig=" + kc,
				"--authorization-kubeconfig=" + kc,
				"--leader-elect=false",
				"--bind-address=127.0.0.1",
				"--secure-port=" + strconv.Itoa(port),
				"--v=1",
			}, opts.SchedulerFlags...)
			return args, healthz(port)
		}); err != nil {
			return err
		}
	}

	if !opts.WithoutControllerManager {
		// The service-account controller creates "default" in every
		// namespace; pods cannot be admitted before it exists.
		if err := c.WaitForServiceAccount(ctx, metav1.NamespaceDefault, "default"); err != nil {
			return err
		}
	}
	c.log.Info("local cluster is up", "url", c.URL, "kubeconfig", c.KubeconfigPath, "elapsed", time.Since(started).Round(time.Millisecond).String())
	return nil
}

// launch starts a component with the arguments from prepare and waits for
// its check to pass. prepare picks free ports each time it is called: when
// the component dies because another process took one of them in the
// meantime ("address already in use"), it is started again with new ports,
// up to three times.
func (c *Cluster) launch(ctx context.Context, binDir, name, what string, prepare func() ([]string, func(context.Context) error)) error {
	for attempt := 1; ; attempt++ {
		args, check := prepare()
		p, err := c.spawn(binDir, name, args)
		if err != nil {
			return err
		}
		err = waitFor(ctx, c.log, p, what, check)
		if err == nil {
			return nil
		}
		if done, _ := p.exited(); !done || attempt == 3 || !strings.Contains(p.tail(200), "address already in use") {
			return err
		}
		c.log.Info("a port was taken; starting again with other ports", "component", name, "attempt", attempt)
		_ = p.stop(c.stopTimeout)
		c.mu.Lock()
		c.procs = slices.DeleteFunc(c.procs, func(q *process) bool { return q == p })
		c.mu.Unlock()
		if f, err := os.OpenFile(p.logPath, os.O_WRONLY|os.O_APPEND, 0); err == nil {
			fmt.Fprintf(f, "=== localcluster: a port was taken; starting %s again with other ports\n", name)
			_ = f.Close()
		}
	}
}

func (c *Cluster) spawn(binDir, name string, args []string) (*process, error) {
	p, err := startProcess(c.log, name, filepath.Join(binDir, name), args, c.LogPath(name))
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.procs = append(c.procs, p)
	c.mu.Unlock()
	c.log.Info("starting", "component", name, "pid", p.cmd.Process.Pid, "log", p.logPath)
	return p, nil
}

// LogPath returns the log file of a component (Etcd, APIServer, …).
func (c *Cluster) LogPath(component string) string {
	return filepath.Join(c.RunDir, "logs", component+".log")
}

// componentKubeconfig writes a kubeconfig with a client certificate for user.
func (c *Cluster) componentKubeconfig(path, user string, groups ...string) error {
	kp, err := c.CA.ClientCert(user, groups...)
	if err != nil {
		return err
	}
	return WriteKubeconfig(path, c.URL, c.CA.CertPEM, kp)
}

// UserConfig returns a client configuration with a fresh client certificate
// for the given user and groups, for tests that act as someone other than
// the admin.
func (c *Cluster) UserConfig(user string, groups ...string) (*rest.Config, error) {
	kp, err := c.CA.ClientCert(user, groups...)
	if err != nil {
		return nil, err
	}
	return &rest.Config{
		Host:            c.URL,
		TLSClientConfig: rest.TLSClientConfig{CAData: c.CA.CertPEM, CertData: kp.CertPEM, KeyData: kp.KeyPEM},
		QPS:             100,
		Burst:           200,
	}, nil
}

// WriteKubeconfig writes a kubeconfig for server, trusting caPEM, that
// authenticates with the client certificate kp.
func WriteKubeconfig(path, server string, caPEM []byte, kp KeyPair) error {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["local"] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: caPEM}
	cfg.AuthInfos["user"] = &clientcmdapi.AuthInfo{ClientCertificateData: kp.CertPEM, ClientKeyData: kp.KeyPEM}
	cfg.Contexts["local"] = &clientcmdapi.Context{Cluster: "local", AuthInfo: "user"}
	cfg.CurrentContext = "local"
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		return fmt.Errorf("writing the kubeconfig %s: %w", path, err)
	}
	return nil
}

// WaitForServiceAccount waits until the service account exists (the
// controller-manager creates "default" in each new namespace, and the
// apiserver rejects pods until it is there).
func (c *Cluster) WaitForServiceAccount(ctx context.Context, namespace, name string) error {
	cs, err := kubernetes.NewForConfig(c.Config)
	if err != nil {
		return fmt.Errorf("a client: %w", err)
	}
	start := time.Now()
	for {
		_, err := cs.CoreV1().ServiceAccounts(namespace).Get(ctx, name, metav1.GetOptions{})
		if err == nil {
			c.log.V(1).Info("service account exists", "namespace", namespace, "name", name, "after", time.Since(start).Round(time.Millisecond).String())
			return nil
		}
		if !apierrors.IsNotFound(err) && ctx.Err() == nil {
			c.log.V(1).Info("getting a service account", "namespace", namespace, "name", name, "err", err.Error())
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("service account %s/%s did not appear (is kube-controller-manager running? see %s): %w",
				namespace, name, c.LogPath(ControllerManager), ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// Stop stops every component (and the NATS servers started with StartNATS)
// in reverse start order: SIGTERM to each process group, SIGKILL after the
// stop timeout. The run folder is removed unless keep is true. It is safe to
// call more than once; later calls return the first result.
func (c *Cluster) Stop(keep bool) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped {
		return c.stopErr
	}
	c.stopped = true
	var errs []error
	for i := len(c.nats) - 1; i >= 0; i-- {
		c.nats[i].Stop()
	}
	for i := len(c.procs) - 1; i >= 0; i-- {
		p := c.procs[i]
		c.log.V(1).Info("stopping", "component", p.name)
		if err := p.stop(c.stopTimeout); err != nil {
			errs = append(errs, err)
		}
	}
	if keep {
		c.log.Info("local cluster stopped; run folder kept", "runDir", c.RunDir)
	} else {
		if err := os.RemoveAll(c.RunDir); err != nil {
			errs = append(errs, fmt.Errorf("removing the run folder: %w", err))
		}
		c.log.Info("local cluster stopped")
	}
	c.stopErr = errors.Join(errs...)
	return c.stopErr
}

// Exited reports the control-plane components whose process has ended
// while the cluster should be running, for diagnostics.
func (c *Cluster) Exited() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, p := range c.procs {
		switch p.name {
		case Etcd, APIServer, ControllerManager, Scheduler:
		default:
			continue
		}
		if done, err := p.exited(); done {
			out = append(out, fmt.Sprintf("%s (%v)", p.name, err))
		}
	}
	return out
}

func httpCheck(ctx context.Context, client *http.Client, url, want string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), want) {
		return fmt.Errorf("%w: %s: %s", errNotReady, resp.Status, failedChecks(string(body)))
	}
	return nil
}

// failedChecks keeps the failed lines ("[-]…") of a /readyz or /healthz
// answer, or the whole answer when there are none, in at most 300 bytes.
func failedChecks(body string) string {
	var failed []string
	for line := range strings.SplitSeq(body, "\n") {
		if strings.HasPrefix(line, "[-]") {
			failed = append(failed, line)
		}
	}
	out := strings.TrimSpace(body)
	if len(failed) > 0 {
		out = strings.Join(failed, "; ")
	}
	if len(out) > 300 {
		out = out[:300] + "…"
	}
	return out
}

// freePort returns a TCP port that was free on 127.0.0.1 a moment ago, or 0.
func freePort() int {
	p, err := testenv.FreePort()
	if err != nil {
		return 0
	}
	return p
}

// Log returns the cluster's logger, for components started beside it.
func (c *Cluster) Log() logr.Logger { return c.log }

// InstallCRDs installs the CustomResourceDefinitions found in paths (files
// or folders of YAML) and waits until the apiserver serves them.
func (c *Cluster) InstallCRDs(paths ...string) error {
	crds, err := envtest.InstallCRDs(c.Config, envtest.CRDInstallOptions{Paths: paths, ErrorIfPathMissing: true})
	if err != nil {
		return fmt.Errorf("localcluster: installing CRDs from %v: %w", paths, err)
	}
	c.log.Info("installed CRDs", "count", len(crds), "paths", paths)
	return nil
}
