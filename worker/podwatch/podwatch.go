package podwatch

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client/config"

	loopsv1alpha1 "github.com/tenire/loop-operator/api/v1alpha1"
	"github.com/tenire/loop-operator/api/v1alpha1/contract"
	"github.com/tenire/loop-operator/worker/loop"
)

// FieldManager is the field manager of the worker's status patches.
const FieldManager = "loop-worker"

// Watcher watches one Pod for the drain request and reports its drain.
type Watcher struct {
	client    kubernetes.Interface
	namespace string
	name      string
	// Log receives the watch's progress. Default logr.Discard().
	Log logr.Logger
	// FallbackTimeout is the drain timeout used when the deadline
	// annotation is missing or unreadable. Default
	// v1alpha1.DefaultDrainTimeout.
	FallbackTimeout time.Duration
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

var (
	_ loop.Pod          = (*Watcher)(nil)
	_ loop.DrainChecker = (*Watcher)(nil)
)

// New returns a watcher of the Pod namespace/name.
func New(client kubernetes.Interface, namespace, name string) *Watcher {
	return &Watcher{client: client, namespace: namespace, name: name,
		Log: logr.Discard(), FallbackTimeout: loopsv1alpha1.DefaultDrainTimeout, Now: time.Now}
}

// ErrNotInPod is returned by FromEnvironment when POD_NAME is not set.
var ErrNotInPod = errors.New("podwatch: not running in a pod (POD_NAME is not set)")

// FromEnvironment returns a watcher of the pod named by POD_NAME and
// POD_NAMESPACE, talking to the API server with cfg or, when cfg is nil,
// with the kubeconfig that KUBECONFIG names, else the in-cluster
// configuration (controller-runtime's loading order). It returns
// ErrNotInPod when POD_NAME is empty.
func FromEnvironment(getenv func(string) string, cfg *rest.Config) (*Watcher, error) {
	name, namespace := getenv(loopsv1alpha1.EnvPodName), getenv(loopsv1alpha1.EnvPodNamespace)
	if name == "" {
		return nil, ErrNotInPod
	}
	if namespace == "" {
		return nil, fmt.Errorf("podwatch: %s is set but %s is not", loopsv1alpha1.EnvPodName, loopsv1alpha1.EnvPodNamespace)
	}
	if cfg == nil {
		var err error
		if cfg, err = config.GetConfig(); err != nil {
			return nil, fmt.Errorf("podwatch: client configuration (KUBECONFIG, else in-cluster): %w", err)
		}
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("podwatch: client: %w", err)
	}
	return New(client, namespace, name), nil
}

// DrainDeadline reads the drain annotations. It reports whether a drain is
// requested and its deadline. A request that cannot be read is still a
// request, drained at once towards contract.DrainRequest.FallbackDeadline
// with fallback as the timeout (the rule is contract.ErrUnreadableDrainRequest's).
func DrainDeadline(annotations map[string]string, now time.Time, fallback time.Duration) (deadline time.Time, requested bool) {
	r, requested, err := contract.ParseDrainRequest(annotations)
	switch {
	case !requested:
		return time.Time{}, false
	case err != nil:
		return r.FallbackDeadline(now, fallback), true
	}
	return r.Deadline, true
}

// DrainRequested reads the pod once and reports whether it carries the
// drain annotations, and their deadline.
func (w *Watcher) DrainRequested(ctx context.Context) (time.Time, bool, error) {
	pod, err := w.client.CoreV1().Pods(w.namespace).Get(ctx, w.name, metav1.GetOptions{})
	if err != nil {
		return time.Time{}, false, fmt.Errorf("podwatch: get pod %s/%s: %w", w.namespace, w.name, err)
	}
	d, ok := DrainDeadline(pod.Annotations, w.Now(), w.FallbackTimeout)
	return d, ok, nil
}

// WaitForDrain blocks until the pod carries the drain annotations and
// returns the deadline. It re-reads and re-watches the pod after errors
// and closed watches, and returns ctx.Err() when ctx ends.
func (w *Watcher) WaitForDrain(ctx context.Context) (time.Time, error) {
	pods := w.client.CoreV1().Pods(w.namespace)
	pause := 100 * time.Millisecond
	for {
		deadline, requested, err := w.watchOnce(ctx, pods)
		if requested {
			return deadline, nil
		}
		if ctx.Err() != nil {
			return time.Time{}, ctx.Err()
		}
		if err != nil {
			w.Log.Info("watching the pod failed; retrying", "pod", w.name, "error", err.Error(), "pause", pause)
			t := time.NewTimer(pause)
			select {
			case <-ctx.Done():
				t.Stop()
				return time.Time{}, ctx.Err()
			case <-t.C:
			}
			pause = min(2*pause, 10*time.Second)
			continue
		}
		pause = 100 * time.Millisecond
	}
}

type podClient interface {
	Get(ctx context.Context, name string, opts metav1.GetOptions) (*corev1.Pod, error)
	Watch(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error)
}

// watchOnce reads the pod, then watches it until the drain is requested,
// the watch closes or fails.
func (w *Watcher) watchOnce(ctx context.Context, pods podClient) (time.Time, bool, error) {
	pod, err := pods.Get(ctx, w.name, metav1.GetOptions{})
	if err != nil {
		return time.Time{}, false, fmt.Errorf("get pod %s/%s: %w", w.namespace, w.name, err)
	}
	if d, ok := DrainDeadline(pod.Annotations, w.Now(), w.FallbackTimeout); ok {
		return d, true, nil
	}
	wi, err := pods.Watch(ctx, metav1.ListOptions{
		FieldSelector:   fields.OneTermEqualSelector("metadata.name", w.name).String(),
		ResourceVersion: pod.ResourceVersion,
	})
	if err != nil {
		return time.Time{}, false, fmt.Errorf("watch pod %s/%s: %w", w.namespace, w.name, err)
	}
	defer wi.Stop()
	for ev := range wi.ResultChan() {
		switch ev.Type {
		case watch.Added, watch.Modified:
			p, ok := ev.Object.(*corev1.Pod)
			if !ok {
				continue
			}
			if d, ok := DrainDeadline(p.Annotations, w.Now(), w.FallbackTimeout); ok {
				return d, true, nil
			}
		case watch.Error:
			return time.Time{}, false, fmt.Errorf("watch pod %s/%s: %v", w.namespace, w.name, ev.Object)
		}
	}
	return time.Time{}, false, nil
}

// ReportDrained sets the pod condition loops.tenire.io/Drained=True with
// reason Completed or DeadlineExceeded and the report's message, through a
// strategic merge patch of pods/status.
func (w *Watcher) ReportDrained(ctx context.Context, r loop.DrainReport) error {
	cond := contract.DrainedCondition(r.DeadlineExceeded, r.Message(), w.Now())
	patch, err := json.Marshal(map[string]any{
		"status": map[string]any{"conditions": []corev1.PodCondition{cond}},
	})
	if err != nil {
		return fmt.Errorf("podwatch: %w", err)
	}
	_, err = w.client.CoreV1().Pods(w.namespace).Patch(ctx, w.name, types.StrategicMergePatchType, patch,
		metav1.PatchOptions{FieldManager: FieldManager}, "status")
	if err != nil {
		return fmt.Errorf("podwatch: set condition %s on pod %s/%s: %w", contract.PodConditionDrained, w.namespace, w.name, err)
	}
	w.Log.Info("reported the drain on the pod", "pod", w.name, "reason", cond.Reason, "message", r.Message())
	return nil
}
