package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/portforward"
	"k8s.io/client-go/transport/spdy"
	"sigs.k8s.io/controller-runtime/pkg/client"

	loopsv1alpha1 "github.com/tenire/loop-operator/api/v1alpha1"
	"github.com/tenire/loop-operator/api/v1alpha1/contract"
	"github.com/tenire/loop-operator/worker/queue"
)

// loopQueue is a connection to one loop's queue.
type loopQueue struct {
	nc    *nats.Conn
	js    jetstream.JetStream
	names queue.Names
	// address is where we reached NATS, for messages.
	address string
	cleanup []func()
	// ann follows the workers' announcements once status asked for them.
	ann *announcements
}

// announcements starts following the workers' announcements, once.
func (q *loopQueue) announcements() (*announcements, error) {
	if q.ann == nil {
		a, err := listenAnnouncements(q, nil)
		if err != nil {
			return nil, err
		}
		q.ann = a
	}
	return q.ann, nil
}

func (q *loopQueue) Close() {
	q.nc.Close()
	for i := len(q.cleanup) - 1; i >= 0; i-- {
		q.cleanup[i]()
	}
}

// queueNames returns the JetStream names of a LoopDeployment's queue.
func queueNames(ld *loopsv1alpha1.LoopDeployment) queue.Names {
	q := contract.QueueOf(ld)
	return queue.NewNames(q.Stream, q.SubjectPrefix)
}

// connectQueue connects to the NATS server of a LoopDeployment: --nats-url
// when given, else spec.queue.nats.url, else (when that address is
// cluster-internal and does not answer) a port-forward through the API
// server to a pod behind the Service that the address names.
func (o *options) connectQueue(ctx context.Context, k *kube, ld *loopsv1alpha1.LoopDeployment) (*loopQueue, error) {
	q := &loopQueue{names: queueNames(ld)}
	natsOpts := []nats.Option{nats.Name("kubectl-loops"), nats.Timeout(5 * time.Second), nats.MaxReconnects(3)}
	if ref := ld.Spec.Queue.NATS.CredentialsSecretRef; ref != nil {
		file, cleanup, err := credentialsFile(ctx, k, ref.Name)
		if err != nil {
			return nil, err
		}
		q.cleanup = append(q.cleanup, cleanup)
		natsOpts = append(natsOpts, nats.UserCredentials(file))
	}
	fail := func(err error) (*loopQueue, error) {
		for _, c := range q.cleanup {
			c()
		}
		return nil, err
	}

	target := ld.Spec.Queue.NATS.URL
	if o.natsURL != "" {
		target = o.natsURL
	}
	nc, err := nats.Connect(target, natsOpts...)
	if err != nil && o.natsURL == "" && clusterInternal(target) {
		local, stop, pfErr := portForward(ctx, k, target, o.streams.ErrOut)
		if pfErr != nil {
			return fail(fmt.Errorf("cannot reach NATS at %s (%w) nor through a port-forward (%w); use --nats-url with an address this machine can reach", target, err, pfErr))
		}
		q.cleanup = append(q.cleanup, stop)
		target = local
		nc, err = nats.Connect(local, natsOpts...)
	}
	if err != nil {
		return fail(fmt.Errorf("cannot reach NATS at %s: %w; use --nats-url with an address this machine can reach", target, err))
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return fail(fmt.Errorf("JetStream at %s: %w", target, err))
	}
	q.nc, q.js, q.address = nc, js, target
	return q, nil
}

// openLoop connects to the cluster, reads a LoopDeployment and connects to
// its queue.
func (o *options) openLoop(ctx context.Context, name string) (*kube, *loopsv1alpha1.LoopDeployment, *loopQueue, error) {
	k, err := o.kube()
	if err != nil {
		return nil, nil, nil, err
	}
	ld, err := k.loopDeployment(ctx, name)
	if err != nil {
		return nil, nil, nil, err
	}
	q, err := o.connectQueue(ctx, k, ld)
	if err != nil {
		return nil, nil, nil, err
	}
	return k, ld, q, nil
}

func credentialsFile(ctx context.Context, k *kube, secretName string) (string, func(), error) {
	var secret corev1.Secret
	if err := k.client.Get(ctx, client.ObjectKey{Namespace: k.namespace, Name: secretName}, &secret); err != nil {
		return "", nil, fmt.Errorf("reading the NATS credentials Secret %q: %w", secretName, err)
	}
	data, ok := secret.Data[loopsv1alpha1.DefaultCredentialsKey]
	if !ok {
		return "", nil, fmt.Errorf("secret %q has no key %q with the NATS credentials", secretName, loopsv1alpha1.DefaultCredentialsKey)
	}
	dir, err := os.MkdirTemp("", "kubectl-loops-")
	if err != nil {
		return "", nil, err
	}
	file := filepath.Join(dir, loopsv1alpha1.DefaultCredentialsKey)
	if err := os.WriteFile(file, data, 0o600); err != nil {
		_ = os.RemoveAll(dir)
		return "", nil, err
	}
	return file, func() { _ = os.RemoveAll(dir) }, nil
}

// clusterInternal reports whether a NATS URL, or one of a list, names a
// host that only resolves inside a cluster (see serviceOf).
func clusterInternal(rawURL string) bool {
	_, _, _, ok := serviceOf(rawURL)
	return ok
}

// serviceOf returns the Service, its namespace and the port of the first
// URL of a comma-separated list whose host resolves only inside a
// cluster: service.namespace[.svc[.cluster.local]], or a pod of a
// StatefulSet behind its headless Service of the same name,
// service-N.service.namespace[.svc[.cluster.local]] (as
// config/nats/cluster names its servers).
func serviceOf(rawURL string) (service, namespace string, port int, ok bool) {
	for one := range strings.SplitSeq(rawURL, ",") {
		host, port, ok := urlHostPort(strings.TrimSpace(one))
		if !ok || net.ParseIP(host) != nil || host == "localhost" {
			continue
		}
		name, fqdn := strings.CutSuffix(host, ".svc.cluster.local")
		if !fqdn {
			name, _ = strings.CutSuffix(host, ".svc")
		}
		labels := strings.Split(name, ".")
		switch {
		case len(labels) == 2:
			return labels[0], labels[1], port, true
		case len(labels) == 3 && statefulPod(labels[0], labels[1]):
			return labels[1], labels[2], port, true
		}
	}
	return "", "", 0, false
}

// statefulPod reports whether pod is a pod name of a StatefulSet named as
// its Service (service-N), as a headless Service names its pods.
func statefulPod(pod, service string) bool {
	ordinal, found := strings.CutPrefix(pod, service+"-")
	if !found || ordinal == "" {
		return false
	}
	_, err := strconv.ParseUint(ordinal, 10, 32)
	return err == nil
}

func urlHostPort(rawURL string) (host string, port int, ok bool) {
	u, err := url.Parse(rawURL)
	if err != nil || u.Hostname() == "" {
		return "", 0, false
	}
	port = 4222
	if p := u.Port(); p != "" {
		if port, err = strconv.Atoi(p); err != nil {
			return "", 0, false
		}
	}
	return u.Hostname(), port, true
}

// portForward forwards a local port to a pod behind the Service that a
// cluster-internal NATS URL (or the first of a list) names, through the
// API server, and returns the local NATS URL. One server of a cluster is
// enough for the plugin.
func portForward(ctx context.Context, k *kube, rawURL string, progress io.Writer) (string, func(), error) {
	svcName, namespace, port, ok := serviceOf(rawURL)
	if !ok {
		return "", nil, fmt.Errorf("%s names no Service of the cluster", rawURL)
	}
	var svc corev1.Service
	if err := k.client.Get(ctx, client.ObjectKey{Namespace: namespace, Name: svcName}, &svc); err != nil {
		return "", nil, fmt.Errorf("service %s/%s: %w", namespace, svcName, err)
	}
	var target *intstr.IntOrString
	for _, p := range svc.Spec.Ports {
		if int(p.Port) == port {
			target = &p.TargetPort
		}
	}
	if target == nil {
		return "", nil, fmt.Errorf("service %s/%s has no port %d", namespace, svcName, port)
	}
	var pods corev1.PodList
	if err := k.client.List(ctx, &pods, client.InNamespace(namespace), client.MatchingLabels(svc.Spec.Selector)); err != nil {
		return "", nil, fmt.Errorf("pods of service %s/%s: %w", namespace, svcName, err)
	}
	pod, podPort, err := pickPod(pods.Items, *target, port)
	if err != nil {
		return "", nil, fmt.Errorf("service %s/%s: %w", namespace, svcName, err)
	}

	clientset, err := kubernetes.NewForConfig(k.config)
	if err != nil {
		return "", nil, err
	}
	transport, upgrader, err := spdy.RoundTripperFor(k.config)
	if err != nil {
		return "", nil, err
	}
	req := clientset.CoreV1().RESTClient().Post().Resource("pods").Namespace(namespace).Name(pod).SubResource("portforward")
	dialer := spdy.NewDialer(upgrader, &http.Client{Transport: transport}, http.MethodPost, req.URL())
	stop, ready := make(chan struct{}), make(chan struct{})
	fw, err := portforward.NewOnAddresses(dialer, []string{"127.0.0.1"}, []string{"0:" + strconv.Itoa(podPort)}, stop, ready, io.Discard, progress)
	if err != nil {
		return "", nil, err
	}
	errc := make(chan error, 1)
	go func() { errc <- fw.ForwardPorts() }()
	select {
	case <-ready:
	case err := <-errc:
		return "", nil, fmt.Errorf("port-forward to pod %s/%s: %w", namespace, pod, err)
	case <-ctx.Done():
		close(stop)
		return "", nil, ctx.Err()
	}
	ports, err := fw.GetPorts()
	if err != nil || len(ports) == 0 {
		close(stop)
		return "", nil, errors.Join(errors.New("port-forward: no local port"), err)
	}
	fmt.Fprintf(progress, "reaching NATS through a port-forward to pod %s/%s:%d\n", namespace, pod, podPort)
	stopForward := func() {
		close(stop)
		if err := <-errc; err != nil {
			fmt.Fprintf(progress, "port-forward ended: %v\n", err)
		}
	}
	return fmt.Sprintf("nats://127.0.0.1:%d", ports[0].Local), stopForward, nil
}

// pickPod chooses a running, ready pod and the container port that a
// service's target port means on it.
func pickPod(pods []corev1.Pod, target intstr.IntOrString, servicePort int) (string, int, error) {
	for _, p := range pods {
		if p.Status.Phase != corev1.PodRunning || p.DeletionTimestamp != nil || !podReady(&p) {
			continue
		}
		switch {
		case target.Type == intstr.Int && target.IntVal != 0:
			return p.Name, int(target.IntVal), nil
		case target.Type == intstr.String:
			for _, c := range p.Spec.Containers {
				for _, cp := range c.Ports {
					if cp.Name == target.StrVal {
						return p.Name, int(cp.ContainerPort), nil
					}
				}
			}
		default:
			return p.Name, servicePort, nil
		}
	}
	return "", 0, errors.New("no running, ready pod serves it")
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}
