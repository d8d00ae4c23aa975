package podwatch_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	loopsv1alpha1 "github.com/tenire/loop-operator/api/v1alpha1"
	"github.com/tenire/loop-operator/api/v1alpha1/contract"
	"github.com/tenire/loop-operator/internal/natstest"
	"github.com/tenire/loop-operator/internal/testenv"
	"github.com/tenire/loop-operator/worker/loop"
	"github.com/tenire/loop-operator/worker/podwatch"
	"github.com/tenire/loop-operator/worker/queue"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestDrainDeadline(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name          string
		annotations   map[string]string
		wantRequested bool
		want          time.Time
	}{
		{"a pod without annotations is not asked to drain", nil, false, time.Time{}},
		{"both annotations give the annotated deadline", map[string]string{
			contract.AnnotationDrainRequested: now.Format(time.RFC3339),
			contract.AnnotationDrainDeadline:  now.Add(time.Minute).Format(time.RFC3339),
		}, true, now.Add(time.Minute)},
		{"a request without a deadline gets the fallback timeout", map[string]string{
			contract.AnnotationDrainRequested: now.Format(time.RFC3339),
		}, true, now.Add(5 * time.Minute)},
		{"an unreadable deadline gets the fallback timeout", map[string]string{
			contract.AnnotationDrainRequested: now.Format(time.RFC3339),
			contract.AnnotationDrainDeadline:  "soon",
		}, true, now.Add(5 * time.Minute)},
		{"a deadline without a request keeps the annotated deadline", map[string]string{
			contract.AnnotationDrainDeadline: now.Add(time.Minute).Format(time.RFC3339),
		}, true, now.Add(time.Minute)},
		{"other annotations do not request a drain", map[string]string{"a": "b"}, false, time.Time{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, requested := podwatch.DrainDeadline(tt.annotations, now, 5*time.Minute)
			if requested != tt.wantRequested || !got.Equal(tt.want) {
				t.Errorf("DrainDeadline = %s, %v; want %s, %v", got, requested, tt.want, tt.wantRequested)
			}
		})
	}
}

func TestFromEnvironmentOutsideAPod(t *testing.T) {
	if _, err := podwatch.FromEnvironment(func(string) string { return "" }, nil); !errors.Is(err, podwatch.ErrNotInPod) {
		t.Errorf("FromEnvironment without POD_NAME = %v, want ErrNotInPod", err)
	}
}

func newPod(t *testing.T, client kubernetes.Interface, name string, annotations map[string]string) {
	t.Helper()
	_, err := client.CoreV1().Pods("default").Create(t.Context(), &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", Annotations: annotations,
			Labels: map[string]string{loopsv1alpha1.LabelName: "demo"}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "worker", Image: "loop-worker"}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
}

func annotate(t *testing.T, client kubernetes.Interface, name string, deadline time.Time) {
	t.Helper()
	patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]string{
		contract.AnnotationDrainRequested: time.Now().UTC().Format(time.RFC3339),
		contract.AnnotationDrainDeadline:  deadline.UTC().Format(time.RFC3339),
	}}})
	if _, err := client.CoreV1().Pods("default").Patch(t.Context(), name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
}

func drainedCondition(t *testing.T, client kubernetes.Interface, name string) *corev1.PodCondition {
	t.Helper()
	pod, err := client.CoreV1().Pods("default").Get(t.Context(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for i, c := range pod.Status.Conditions {
		if c.Type == contract.PodConditionDrained {
			return &pod.Status.Conditions[i]
		}
	}
	return nil
}

// TestAgainstAPIServer runs a real kube-apiserver and etcd (envtest) once
// for all the cases that need one.
func TestAgainstAPIServer(t *testing.T) {
	cfg := testenv.Start(t)
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}

	t.Run("a drain requested before the watch starts is seen at once", func(t *testing.T) {
		deadline := time.Now().Add(time.Minute).Truncate(time.Second)
		newPod(t, client, "pre-annotated", map[string]string{
			contract.AnnotationDrainRequested: time.Now().UTC().Format(time.RFC3339),
			contract.AnnotationDrainDeadline:  deadline.UTC().Format(time.RFC3339),
		})
		got, err := podwatch.New(client, "default", "pre-annotated").WaitForDrain(t.Context())
		if err != nil || !got.Equal(deadline) {
			t.Errorf("WaitForDrain = %s, %v; want %s", got, err, deadline)
		}
	})

	t.Run("the annotations set while watching end the wait with their deadline", func(t *testing.T) {
		newPod(t, client, "watched", nil)
		w := podwatch.New(client, "default", "watched")
		type result struct {
			deadline time.Time
			err      error
		}
		res := make(chan result, 1)
		go func() {
			d, err := w.WaitForDrain(t.Context())
			res <- result{d, err}
		}()
		// An unrelated change must not end the wait.
		patch := []byte(`{"metadata":{"labels":{"unrelated":"change"}}}`)
		if _, err := client.CoreV1().Pods("default").Patch(t.Context(), "watched", types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(2 * time.Minute).Truncate(time.Second)
		annotate(t, client, "watched", deadline)
		select {
		case r := <-res:
			if r.err != nil || !r.deadline.Equal(deadline) {
				t.Errorf("WaitForDrain = %s, %v; want %s", r.deadline, r.err, deadline)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("WaitForDrain did not see the annotations within 30s")
		}
	})

	t.Run("cancelling the context ends the wait with its error", func(t *testing.T) {
		newPod(t, client, "cancelled", nil)
		ctx, cancel := context.WithCancel(t.Context())
		res := make(chan error, 1)
		go func() {
			_, err := podwatch.New(client, "default", "cancelled").WaitForDrain(ctx)
			res <- err
		}()
		cancel()
		select {
		case err := <-res:
			if !errors.Is(err, context.Canceled) {
				t.Errorf("WaitForDrain = %v, want context.Canceled", err)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("WaitForDrain ignored the cancelled context")
		}
	})

	t.Run("a worker that starts in a pod already asked to drain pulls nothing", func(t *testing.T) {
		newPod(t, client, "restarted", map[string]string{
			contract.AnnotationDrainRequested: time.Now().UTC().Format(time.RFC3339),
			contract.AnnotationDrainDeadline:  time.Now().Add(time.Minute).UTC().Format(time.RFC3339),
		})
		srv := natstest.Start(t)
		_, js := srv.Connect()
		names := queue.NewNames("LOOP_default_restarted", "loops.default.restarted")
		cons, err := queue.Ensure(t.Context(), js, names, queue.Config{})
		if err != nil {
			t.Fatal(err)
		}
		p := queue.NewProducer(js, names)
		for i := range 3 {
			if _, _, err := p.Submit(t.Context(), queue.Task{ID: fmt.Sprint("r", i), Kind: "job"}); err != nil {
				t.Fatal(err)
			}
		}
		l, err := loop.New(loop.Config{
			NATSURL: srv.URL, Stream: names.Stream, SubjectPrefix: names.SubjectPrefix,
			AdminAddr: "-", FetchWait: 100 * time.Millisecond, Pod: podwatch.New(client, "default", "restarted"),
		})
		if err != nil {
			t.Fatal(err)
		}
		l.Handle("job", func(context.Context, *loop.Task) error { return nil })
		ctx, cancel := context.WithCancel(t.Context())
		runErr := make(chan error, 1)
		go func() { runErr <- l.Run(ctx) }()
		defer func() {
			cancel()
			if err := <-runErr; err != nil {
				t.Errorf("Run = %v", err)
			}
		}()
		deadline := time.After(30 * time.Second)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		var cond *corev1.PodCondition
		for cond == nil {
			select {
			case <-tick.C:
				cond = drainedCondition(t, client, "restarted")
			case <-deadline:
				t.Fatal("the pod never got the Drained condition")
			}
		}
		if cond.Reason != contract.DrainedReasonCompleted || !strings.Contains(cond.Message, "0 finished, 0 handed back") {
			t.Errorf("condition = %s %q, want Completed with nothing finished or handed back", cond.Reason, cond.Message)
		}
		info, err := cons[0].Info(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if info.Delivered.Consumer != 0 || info.NumPending != 3 {
			t.Errorf("consumer delivered %d and has %d pending, want 0 delivered and all 3 pending", info.Delivered.Consumer, info.NumPending)
		}
	})

	// The whole contract: a loop with a real queue, its pod on a real
	// apiserver, the operator's annotations, the Drained condition.
	loopCases := []struct {
		name       string
		pod        string
		drainIn    time.Duration
		wantReason string
		wantMsg    string
	}{
		{"a loop asked to drain finishes its running task and reports Completed", "drain-completed",
			time.Minute, contract.DrainedReasonCompleted, "1 finished, 0 handed back"},
		{"a loop whose task outlives the deadline hands it back and reports DeadlineExceeded", "drain-exceeded",
			2 * time.Second, contract.DrainedReasonDeadlineExceeded, "0 finished, 1 handed back"},
	}
	for _, tc := range loopCases {
		t.Run(tc.name, func(t *testing.T) {
			newPod(t, client, tc.pod, nil)
			srv := natstest.Start(t)
			_, js := srv.Connect()
			names := queue.NewNames("LOOP_default_demo", "loops.default.demo")
			w := podwatch.New(client, "default", tc.pod)
			l, err := loop.New(loop.Config{
				NATSURL: srv.URL, Stream: names.Stream, SubjectPrefix: names.SubjectPrefix,
				AdminAddr: "-", FetchWait: 100 * time.Millisecond, Pod: w, EnsureQueue: true,
			})
			if err != nil {
				t.Fatal(err)
			}
			started := make(chan struct{})
			release := make(chan struct{})
			l.Handle("job", func(ctx context.Context, task *loop.Task) error {
				close(started)
				select {
				case <-release:
					return nil
				case <-ctx.Done():
					return ctx.Err()
				}
			})
			ctx, cancel := context.WithCancel(t.Context())
			runErr := make(chan error, 1)
			go func() { runErr <- l.Run(ctx) }()
			defer func() {
				cancel()
				if err := <-runErr; err != nil {
					t.Errorf("Run = %v", err)
				}
			}()
			<-l.Ready()
			if _, _, err := queue.NewProducer(js, names).Submit(t.Context(), queue.Task{ID: "j", Kind: "job"}); err != nil {
				t.Fatal(err)
			}
			select {
			case <-started:
			case <-time.After(20 * time.Second):
				t.Fatal("the task never started")
			}
			annotate(t, client, tc.pod, time.Now().Add(tc.drainIn))
			deadline := time.After(30 * time.Second)
			tick := time.NewTicker(20 * time.Millisecond)
			defer tick.Stop()
			for l.State() != loop.Draining && l.State() != loop.Drained {
				select {
				case <-tick.C:
				case <-deadline:
					t.Fatal("the loop did not start draining after the annotation")
				}
			}
			if tc.wantReason == contract.DrainedReasonCompleted {
				close(release)
			}
			var cond *corev1.PodCondition
			for cond == nil {
				select {
				case <-tick.C:
					cond = drainedCondition(t, client, tc.pod)
				case <-deadline:
					t.Fatal("the pod never got the Drained condition")
				}
			}
			if cond.Status != corev1.ConditionTrue || cond.Reason != tc.wantReason || !strings.Contains(cond.Message, tc.wantMsg) {
				t.Errorf("condition = %s %s %q, want True %s with %q", cond.Status, cond.Reason, cond.Message, tc.wantReason, tc.wantMsg)
			}
			if l.State() != loop.Drained {
				t.Errorf("loop state after reporting = %s, want Drained (idle until the pod is deleted)", l.State())
			}
			t.Logf("condition: %s %s", cond.Reason, cond.Message)
		})
	}
}
