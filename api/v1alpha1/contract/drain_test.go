package contract

import (
	"errors"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

var t0 = time.Date(2026, 11, 27, 6, 0, 0, 0, time.UTC)

func TestParseDrainRequest(t *testing.T) {
	tests := []struct {
		name          string
		annotations   map[string]string
		wantRequested bool
		wantErr       bool
		want          DrainRequest
	}{
		{"a pod without annotations is not asked to drain", nil, false, false, DrainRequest{}},
		{"both annotations as RFC 3339 times are a readable request",
			map[string]string{AnnotationDrainRequested: "2026-11-27T06:00:00.5Z", AnnotationDrainDeadline: "2026-11-27T06:05:00Z"},
			true, false, DrainRequest{Requested: t0.Add(500 * time.Millisecond), Deadline: t0.Add(5 * time.Minute)}},
		{"a request without a deadline is a request that cannot be read",
			map[string]string{AnnotationDrainRequested: "2026-11-27T06:00:00Z"},
			true, true, DrainRequest{Requested: t0}},
		{"a deadline without a request is a request that cannot be read",
			map[string]string{AnnotationDrainDeadline: "2026-11-27T06:05:00Z"},
			true, true, DrainRequest{Deadline: t0.Add(5 * time.Minute)}},
		{"a deadline that is not an RFC 3339 time is a request that cannot be read",
			map[string]string{AnnotationDrainRequested: "2026-11-27T06:00:00Z", AnnotationDrainDeadline: "in five minutes"},
			true, true, DrainRequest{Requested: t0}},
		{"an empty annotation is a request that cannot be read",
			map[string]string{AnnotationDrainRequested: ""}, true, true, DrainRequest{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, requested, err := ParseDrainRequest(tt.annotations)
			if requested != tt.wantRequested {
				t.Errorf("requested = %v, want %v", requested, tt.wantRequested)
			}
			if (err != nil) != tt.wantErr || (err != nil && !errors.Is(err, ErrUnreadableDrainRequest)) {
				t.Errorf("err = %v, want an ErrUnreadableDrainRequest: %v", err, tt.wantErr)
			}
			if !got.Requested.Equal(tt.want.Requested) || !got.Deadline.Equal(tt.want.Deadline) {
				t.Errorf("request = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestFallbackDeadline(t *testing.T) {
	tests := []struct {
		name string
		r    DrainRequest
		want time.Time
	}{
		{"a deadline that was read is kept", DrainRequest{Deadline: t0.Add(time.Minute)}, t0.Add(time.Minute)},
		{"without a deadline the worker drains for its own timeout from now", DrainRequest{Requested: t0}, t0.Add(time.Hour + 5*time.Minute)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.r.FallbackDeadline(t0.Add(time.Hour), 5*time.Minute); !got.Equal(tt.want) {
				t.Errorf("FallbackDeadline = %s, want %s", got, tt.want)
			}
		})
	}
}

func TestDrainAnnotations(t *testing.T) {
	tests := []struct {
		name         string
		now          time.Time
		timeout      time.Duration
		wantDeadline time.Time
	}{
		{"a whole-second time gives the exact deadline", t0, 5 * time.Minute, t0.Add(5 * time.Minute)},
		{"a fractional time rounds the deadline up, never earlier than asked",
			t0.Add(300 * time.Millisecond), 2 * time.Second, t0.Add(3 * time.Second)},
		{"a time in another zone is written in UTC",
			t0.In(time.FixedZone("CET", 3600)), time.Minute, t0.Add(time.Minute)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := DrainAnnotations(tt.now, tt.timeout)
			if a[AnnotationDrainDeadline] != tt.wantDeadline.Format(time.RFC3339) {
				t.Errorf("deadline = %s, want %s", a[AnnotationDrainDeadline], tt.wantDeadline.Format(time.RFC3339))
			}
			r, requested, err := ParseDrainRequest(a)
			if !requested || err != nil {
				t.Fatalf("the annotations read back as requested=%v, err=%v", requested, err)
			}
			if !r.Requested.Equal(tt.now) {
				t.Errorf("the request reads back as %s, want %s to the nanosecond", r.Requested, tt.now)
			}
		})
	}
}

func TestDrainedCondition(t *testing.T) {
	tests := []struct {
		name             string
		deadlineExceeded bool
		wantReason       string
	}{
		{"a drain that finished its tasks is Completed", false, DrainedReasonCompleted},
		{"a drain that handed tasks back at the deadline is DeadlineExceeded", true, DrainedReasonDeadlineExceeded},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pod := &corev1.Pod{Status: corev1.PodStatus{Conditions: []corev1.PodCondition{
				{Type: corev1.PodReady, Status: corev1.ConditionFalse},
				DrainedCondition(tt.deadlineExceeded, "1 finished, 0 handed back", t0),
			}}}
			c, ok := Drained(pod)
			if !ok || c.Reason != tt.wantReason || c.Message != "1 finished, 0 handed back" {
				t.Errorf("Drained = %+v, %v; want reason %s", c, ok, tt.wantReason)
			}
		})
	}
}

func TestDraining(t *testing.T) {
	asked := DrainAnnotations(t0, time.Minute)
	now := metav1.NewTime(t0)
	tests := []struct {
		name string
		pod  corev1.Pod
		want bool
	}{
		{"a running pod without annotations is not draining", corev1.Pod{}, false},
		{"a pod asked to drain is draining",
			corev1.Pod{ObjectMeta: metav1.ObjectMeta{Annotations: asked}}, true},
		{"a pod with an unreadable request is draining",
			corev1.Pod{ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{AnnotationDrainDeadline: "soon"}}}, true},
		{"a terminating pod is draining, its worker drains on SIGTERM",
			corev1.Pod{ObjectMeta: metav1.ObjectMeta{DeletionTimestamp: &now}}, true},
		{"a pod that reports Drained without being asked is not draining",
			corev1.Pod{Status: corev1.PodStatus{Conditions: []corev1.PodCondition{DrainedCondition(false, "", t0)}}}, false},
		{"a finished pod asked to drain is not draining, it runs nothing",
			corev1.Pod{ObjectMeta: metav1.ObjectMeta{Annotations: asked}, Status: corev1.PodStatus{Phase: corev1.PodFailed}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Draining(&tt.pod); got != tt.want {
				t.Errorf("Draining = %v, want %v", got, tt.want)
			}
		})
	}
}

func FuzzParseDrainRequest(f *testing.F) {
	f.Add("2026-11-27T06:00:00.5Z", "2026-11-27T06:05:00Z")
	f.Add("", "soon")
	f.Fuzz(func(t *testing.T, requested, deadline string) {
		r, ok, err := ParseDrainRequest(map[string]string{AnnotationDrainRequested: requested, AnnotationDrainDeadline: deadline})
		if !ok {
			t.Fatal("annotations present but not requested")
		}
		_, errR := time.Parse(time.RFC3339, requested)
		_, errD := time.Parse(time.RFC3339, deadline)
		if (err == nil) != (errR == nil && errD == nil) {
			t.Fatalf("ParseDrainRequest(%q, %q) = %+v, %v; time.Parse says %v, %v", requested, deadline, r, err, errR, errD)
		}
		if err != nil && !errors.Is(err, ErrUnreadableDrainRequest) {
			t.Fatalf("error %v does not wrap ErrUnreadableDrainRequest", err)
		}
	})
}

func TestHonoursDrained(t *testing.T) {
	asked := DrainAnnotations(t0, time.Minute)
	now := metav1.NewTime(t0)
	report := corev1.PodStatus{Conditions: []corev1.PodCondition{DrainedCondition(false, "", t0)}}
	tests := []struct {
		name string
		pod  corev1.Pod
		want bool
	}{
		{"a report on a pod asked to drain counts", corev1.Pod{ObjectMeta: metav1.ObjectMeta{Annotations: asked}, Status: report}, true},
		{"a report on a terminating pod counts", corev1.Pod{ObjectMeta: metav1.ObjectMeta{DeletionTimestamp: &now}, Status: report}, true},
		{"a report on a pod nobody asked does not count", corev1.Pod{Status: report}, false},
		{"a pod asked to drain that has not reported has nothing to honour", corev1.Pod{ObjectMeta: metav1.ObjectMeta{Annotations: asked}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := HonoursDrained(&tt.pod); got != tt.want {
				t.Errorf("HonoursDrained = %v, want %v", got, tt.want)
			}
		})
	}
}
