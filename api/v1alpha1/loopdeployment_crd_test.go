package v1alpha1_test

import (
	"fmt"
	"strings"
	"testing"

	autoscalingv1 "k8s.io/api/autoscaling/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	loopsv1alpha1 "github.com/tenire/loop-operator/api/v1alpha1"
	"github.com/tenire/loop-operator/internal/testenv"
)

// validYAML is the smallest LoopDeployment the schema accepts.
const validYAML = `
apiVersion: loops.tenire.io/v1alpha1
kind: LoopDeployment
metadata:
  name: example
  namespace: default
spec:
  template:
    metadata:
      labels:
        app.kubernetes.io/name: example
      annotations:
        example.com/owner: team-a
    spec:
      containers:
      - name: worker
        image: ghcr.io/tenire/loop-worker:latest
  queue:
    nats:
      url: nats://nats.nats:4222
`

func newClient(t *testing.T) client.Client {
	t.Helper()
	c, err := client.New(testenv.Start(t), client.Options{Scheme: testenv.Scheme})
	if err != nil {
		t.Fatalf("client: %v", err)
	}
	return c
}

func valid(t *testing.T, name string) *unstructured.Unstructured {
	t.Helper()
	u := &unstructured.Unstructured{}
	if err := yaml.Unmarshal([]byte(validYAML), &u.Object); err != nil {
		t.Fatal(err)
	}
	u.SetName(name)
	return u
}

func TestLoopDeploymentRoundTripsWithDefaults(t *testing.T) {
	c := newClient(t)
	ctx := t.Context()

	if err := c.Create(ctx, valid(t, "round-trip")); err != nil {
		t.Fatalf("creating a valid LoopDeployment: %v", err)
	}
	var ld loopsv1alpha1.LoopDeployment
	if err := c.Get(ctx, client.ObjectKey{Namespace: "default", Name: "round-trip"}, &ld); err != nil {
		t.Fatalf("reading it back: %v", err)
	}

	spec := ld.Spec
	checks := []struct {
		what      string
		got, want any
	}{
		{"replicas", ptr.Deref(spec.Replicas, -1), int32(1)},
		{"scheduling", spec.Loop.Scheduling, loopsv1alpha1.SchedulingWeighted},
		{"pool.minWorkers", ptr.Deref(spec.Loop.Pool.MinWorkers, -1), int32(1)},
		{"pool.maxWorkers", spec.Loop.Pool.MaxWorkers, int32(16)},
		{"pool.idleTimeout", spec.Loop.Pool.IdleTimeout.Duration.String(), "30s"},
		{"taskTimeout", spec.Loop.TaskTimeout.Duration.String(), "10m0s"},
		{"retry.maxAttempts", spec.Loop.Retry.MaxAttempts, int32(5)},
		{"retry.maxBackoff", spec.Loop.Retry.MaxBackoff.Duration.String(), "5m0s"},
		{"circuitBreaker.failureThreshold", spec.Loop.CircuitBreaker.FailureThreshold, int32(5)},
		{"queue.nats.ackWait", spec.Queue.NATS.AckWait.Duration.String(), "30s"},
		{"queue.nats.maxAckPending", spec.Queue.NATS.MaxAckPending, int32(1000)},
		{"queue.nats.resultRetention", spec.Queue.NATS.ResultRetention.Duration.String(), "1h0m0s"},
		{"queue.nats.replicas", spec.Queue.NATS.Replicas, int32(1)},
		{"drain.timeout", spec.Drain.Timeout.Duration.String(), "5m0s"},
		{"drain.maxConcurrent", spec.Drain.MaxConcurrent.String(), "25%"},
		{"updateStrategy.maxSurge", spec.UpdateStrategy.MaxSurge.String(), "25%"},
		{"worker image", spec.Template.Spec.Containers[0].Image, "ghcr.io/tenire/loop-worker:latest"},
		{"template label (kept, not pruned)", spec.Template.Labels["app.kubernetes.io/name"], "example"},
		{"template annotation (kept, not pruned)", spec.Template.Annotations["example.com/owner"], "team-a"},
	}
	for _, check := range checks {
		if fmt.Sprint(check.got) != fmt.Sprint(check.want) {
			t.Errorf("%s: got %v, want %v", check.what, check.got, check.want)
		}
	}

	// The status subresource takes status writes.
	ld.Status = loopsv1alpha1.LoopDeploymentStatus{
		Replicas: 1, ReadyReplicas: 1, Selector: loopsv1alpha1.LabelName + "=round-trip",
		Conditions: []metav1.Condition{{
			Type: loopsv1alpha1.ConditionAvailable, Status: metav1.ConditionTrue,
			Reason: loopsv1alpha1.ReasonMinimumReplicasAvailable, LastTransitionTime: metav1.Now(),
		}},
	}
	if err := c.Status().Update(ctx, &ld); err != nil {
		t.Fatalf("updating status: %v", err)
	}

	// The scale subresource reads spec.replicas and status, and writes spec.replicas.
	scale := &autoscalingv1.Scale{}
	if err := c.SubResource("scale").Get(ctx, &ld, scale); err != nil {
		t.Fatalf("reading /scale: %v", err)
	}
	if scale.Spec.Replicas != 1 || scale.Status.Replicas != 1 || scale.Status.Selector != loopsv1alpha1.LabelName+"=round-trip" {
		t.Errorf("/scale = %+v, want spec 1, status 1 and the selector", scale)
	}
	scale.Spec.Replicas = 7
	if err := c.SubResource("scale").Update(ctx, &ld, client.WithSubResourceBody(scale)); err != nil {
		t.Fatalf("writing /scale: %v", err)
	}
	if err := c.Get(ctx, client.ObjectKeyFromObject(&ld), &ld); err != nil {
		t.Fatal(err)
	}
	if got := ptr.Deref(ld.Spec.Replicas, -1); got != 7 {
		t.Errorf("after scaling to 7, spec.replicas = %d", got)
	}
}

func TestInvalidLoopDeploymentsAreRejectedWithMessagesThatSayWhatToFix(t *testing.T) {
	c := newClient(t)

	cases := []struct {
		name   string
		mutate func(spec map[string]any)
		want   string
	}{
		{
			name:   "negative replicas are rejected",
			mutate: func(s map[string]any) { s["replicas"] = int64(-1) },
			want:   "spec.replicas in body should be greater than or equal to 0",
		},
		{
			name: "minWorkers above maxWorkers is rejected",
			mutate: func(s map[string]any) {
				set(s, "loop.pool", map[string]any{"minWorkers": int64(8), "maxWorkers": int64(4)})
			},
			want: "pool.minWorkers must not be greater than pool.maxWorkers",
		},
		{
			name: "a pool of zero workers is rejected",
			mutate: func(s map[string]any) {
				set(s, "loop.pool", map[string]any{"minWorkers": int64(0), "maxWorkers": int64(0)})
			},
			want: "spec.loop.pool.maxWorkers in body should be greater than or equal to 1",
		},
		{
			name: "a negative prefetch is rejected",
			mutate: func(s map[string]any) {
				set(s, "loop.pool", map[string]any{"maxWorkers": int64(4), "prefetch": int64(-1)})
			},
			want: "spec.loop.pool.prefetch in body should be greater than or equal to 0",
		},
		{
			name: "a priority weight of zero is rejected",
			mutate: func(s map[string]any) {
				set(s, "loop.priorities", []any{map[string]any{"name": "high", "weight": int64(0)}})
			},
			want: "spec.loop.priorities[0].weight in body should be greater than or equal to 1",
		},
		{
			name: "two priorities with the same name are rejected",
			mutate: func(s map[string]any) {
				set(s, "loop.priorities", []any{
					map[string]any{"name": "high", "weight": int64(2)},
					map[string]any{"name": "high", "weight": int64(1)},
				})
			},
			want: "spec.loop.priorities[1]: Duplicate value",
		},
		{
			name: "a priority name with capitals is rejected",
			mutate: func(s map[string]any) {
				set(s, "loop.priorities", []any{map[string]any{"name": "High", "weight": int64(1)}})
			},
			want: "spec.loop.priorities[0].name in body should match",
		},
		{
			name:   "a zero drain timeout is rejected",
			mutate: func(s map[string]any) { set(s, "drain.timeout", "0s") },
			want:   "drain.timeout must be a positive duration such as 5m",
		},
		{
			name:   "a negative task timeout is rejected",
			mutate: func(s map[string]any) { set(s, "loop.taskTimeout", "-10s") },
			want:   "taskTimeout must be a positive duration such as 10m",
		},
		{
			name:   "a drain maxConcurrent of 0 is rejected",
			mutate: func(s map[string]any) { set(s, "drain.maxConcurrent", int64(0)) },
			want:   "drain.maxConcurrent must be a number of at least 1 or a percentage from 1% to 100%",
		},
		{
			name:   "a drain maxConcurrent of 0% is rejected",
			mutate: func(s map[string]any) { set(s, "drain.maxConcurrent", "0%") },
			want:   "drain.maxConcurrent must be a number of at least 1 or a percentage from 1% to 100%",
		},
		{
			name:   "a drain maxConcurrent over 100% is rejected",
			mutate: func(s map[string]any) { set(s, "drain.maxConcurrent", "150%") },
			want:   "drain.maxConcurrent must be a number of at least 1 or a percentage from 1% to 100%",
		},
		{
			name:   "a template without containers is rejected",
			mutate: func(s map[string]any) { set(s, "template.spec.containers", []any{}) },
			want:   "template.spec.containers must list at least one container",
		},
		{
			name:   "a queue without a url is rejected",
			mutate: func(s map[string]any) { set(s, "queue.nats", map[string]any{"stream": "tasks"}) },
			want:   "spec.queue.nats.url: Required value",
		},
		{
			name:   "a queue url that is not a NATS url is rejected",
			mutate: func(s map[string]any) { set(s, "queue.nats.url", "http://nats:4222") },
			want:   "queue.nats.url must be a NATS URL such as nats://nats.nats:4222",
		},
		{
			name:   "a queue url with a user and password is rejected",
			mutate: func(s map[string]any) { set(s, "queue.nats.url", "nats://worker:s3cret@nats.nats:4222") },
			want:   "queue.nats.url must not carry credentials (user:password@ or token@): put them in a Secret and name it in queue.nats.credentialsSecretRef",
		},
		{
			name:   "a queue url with a token is rejected",
			mutate: func(s map[string]any) { set(s, "queue.nats.url", "tls://s3cr3tt0ken@nats.nats:4222") },
			want:   "queue.nats.url must not carry credentials",
		},
		{
			name:   "credentials in the second url of a list are rejected",
			mutate: func(s map[string]any) { set(s, "queue.nats.url", "nats://a.nats:4222,nats://u:p@b.nats:4222") },
			want:   "queue.nats.url must not carry credentials",
		},
		{
			name:   "an unknown scheduling mode is rejected",
			mutate: func(s map[string]any) { set(s, "loop.scheduling", "Random") },
			want:   `spec.loop.scheduling: Unsupported value: "Random": supported values: "Weighted", "Strict"`,
		},
		{
			name:   "a kind limit of zero is rejected",
			mutate: func(s map[string]any) { set(s, "loop.kindLimits", map[string]any{"resize": int64(0)}) },
			want:   "kindLimits values must be at least 1",
		},
		{
			name: "an initial backoff above the max backoff is rejected",
			mutate: func(s map[string]any) {
				set(s, "loop.retry", map[string]any{"initialBackoff": "10m", "maxBackoff": "1m"})
			},
			want: "retry.initialBackoff must not be greater than retry.maxBackoff",
		},
		{
			name:   "an ack wait under a second is rejected",
			mutate: func(s map[string]any) { set(s, "queue.nats.ackWait", "500ms") },
			want:   "queue.nats.ackWait must be at least 1s",
		},
		{
			name:   "a negative result retention is rejected",
			mutate: func(s map[string]any) { set(s, "queue.nats.resultRetention", "-1h") },
			want:   "queue.nats.resultRetention must be 0s (keep no records) or a positive duration such as 1h",
		},
		{
			name:   "queue replicas of 0 are rejected",
			mutate: func(s map[string]any) { set(s, "queue.nats.replicas", int64(0)) },
			want:   "queue.nats.replicas must be from 1 to 5 (JetStream's limit), and no more than the servers of the NATS cluster",
		},
		{
			name:   "queue replicas above 5 are rejected",
			mutate: func(s map[string]any) { set(s, "queue.nats.replicas", int64(7)) },
			want:   "queue.nats.replicas must be from 1 to 5",
		},
		{
			name:   "a stream name with dots is rejected",
			mutate: func(s map[string]any) { set(s, "queue.nats.stream", "my.tasks") },
			want:   "spec.queue.nats.stream in body should match",
		},
		{
			name:   "a negative max surge is rejected",
			mutate: func(s map[string]any) { set(s, "updateStrategy.maxSurge", int64(-1)) },
			want:   "updateStrategy.maxSurge must be a number of at least 0 or a percentage from 0% to 100%",
		},
		{
			name:   "a max unavailable above 100% is rejected",
			mutate: func(s map[string]any) { set(s, "updateStrategy.maxUnavailable", "150%") },
			want:   "updateStrategy.maxUnavailable must be a number of at least 0 or a percentage from 0% to 100%",
		},
		{
			name: "max surge and max unavailable both 0 are rejected",
			mutate: func(s map[string]any) {
				set(s, "updateStrategy.maxSurge", int64(0))
				set(s, "updateStrategy.maxUnavailable", "0%")
			},
			want: "updateStrategy.maxSurge and updateStrategy.maxUnavailable cannot both be 0",
		},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			u := valid(t, fmt.Sprintf("invalid-%d", i))
			tc.mutate(u.Object["spec"].(map[string]any))
			err := c.Create(t.Context(), u)
			if err == nil {
				t.Fatalf("the API server accepted it; want a rejection saying %q", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("rejected with\n  %v\nwant the message to contain\n  %q", err, tc.want)
			}
		})
	}
}

// set sets a dotted path below spec, creating maps on the way.
func set(spec map[string]any, path string, value any) {
	keys := strings.Split(path, ".")
	m := spec
	for _, k := range keys[:len(keys)-1] {
		next, ok := m[k].(map[string]any)
		if !ok {
			next = map[string]any{}
			m[k] = next
		}
		m = next
	}
	m[keys[len(keys)-1]] = value
}

// The typed client must be able to create what users write in Go too.
func TestTypedLoopDeploymentIsAccepted(t *testing.T) {
	c := newClient(t)
	ld := &loopsv1alpha1.LoopDeployment{
		ObjectMeta: metav1.ObjectMeta{Name: "typed", Namespace: "default"},
		Spec: loopsv1alpha1.LoopDeploymentSpec{
			Replicas: ptr.To[int32](3),
			Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "worker", Image: "worker:dev"}}}},
			Loop: loopsv1alpha1.LoopSpec{
				Priorities: []loopsv1alpha1.PriorityClass{{Name: "high", Weight: 6}, {Name: "default", Weight: 3}, {Name: "low", Weight: 1}},
				Scheduling: loopsv1alpha1.SchedulingStrict,
				KindLimits: map[string]int32{"resize": 4},
			},
			Queue: loopsv1alpha1.QueueSpec{NATS: loopsv1alpha1.NATSQueueSpec{URL: "nats://127.0.0.1:4222"}},
			Drain: loopsv1alpha1.DrainSpec{MaxConcurrent: ptr.To(intstr.FromInt32(2))},
		},
	}
	if err := c.Create(t.Context(), ld); err != nil {
		t.Fatalf("creating a typed LoopDeployment: %v", err)
	}
}

// TestNamesAreShortEnoughForTheirPods: the CRD's limit on metadata.name is
// MaxNameLength, so that the pods' names (<name>-<5 characters>) are DNS
// labels and the name fits the loops.tenire.io/name label.
func TestNamesAreShortEnoughForTheirPods(t *testing.T) {
	c := newClient(t)
	if got := loopsv1alpha1.MaxNameLength + len("-") + 5; got != 63 {
		t.Fatalf("a pod name of the longest LoopDeployment is %d characters, want 63", got)
	}
	cases := []struct {
		name   string
		length int
		want   string
	}{
		{"a name of the longest length is accepted", loopsv1alpha1.MaxNameLength, ""},
		{"a name one character longer is rejected with what to fix", loopsv1alpha1.MaxNameLength + 1,
			"metadata.name must be at most 57 characters"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			u := valid(t, strings.Repeat("a", tc.length))
			err := c.Create(t.Context(), u)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("rejected: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("got %v, want a rejection saying %q", err, tc.want)
			}
		})
	}
}

// TestUpdateStrategiesThatProgressAreAccepted: the rule against a
// rolling update that could not progress leaves the others alone, a
// maxSurge of 0 without maxUnavailable included (it then takes
// drain.maxConcurrent).
func TestUpdateStrategiesThatProgressAreAccepted(t *testing.T) {
	c := newClient(t)
	for i, st := range []map[string]any{
		{"maxSurge": int64(0)},
		{"maxSurge": "0%", "maxUnavailable": int64(1)},
		{"maxSurge": "25%", "maxUnavailable": "25%"},
		{"maxSurge": int64(2), "maxUnavailable": int64(0)},
	} {
		u := valid(t, fmt.Sprintf("strategy-%d", i))
		u.Object["spec"].(map[string]any)["updateStrategy"] = st
		if err := c.Create(t.Context(), u); err != nil {
			t.Errorf("updateStrategy %v was rejected: %v", st, err)
		}
	}
}

// TestQueueURLsWithoutCredentialsAreAccepted: the rule against
// credentials in queue.nats.url leaves ordinary URLs and lists alone.
func TestQueueURLsWithoutCredentialsAreAccepted(t *testing.T) {
	c := newClient(t)
	for i, url := range []string{"nats://nats.nats:4222", "tls://nats.nats:4222,tls://nats-2.nats:4222",
		"nats://nats-0.nats.nats:4222,nats://nats-1.nats.nats:4222,nats://nats-2.nats.nats:4222", "wss://nats.example.com/path@x"} {
		u := valid(t, fmt.Sprintf("url-%d", i))
		set(u.Object["spec"].(map[string]any), "queue.nats.url", url)
		if err := c.Create(t.Context(), u); err != nil {
			t.Errorf("%s was rejected: %v", url, err)
		}
	}
}
