package policy

import (
	"errors"
	"testing"

	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
)

func TestMaxConcurrent(t *testing.T) {
	tests := []struct {
		name     string
		v        intstr.IntOrString
		replicas int32
		want     int32
	}{
		{"a number is taken as it is", intstr.FromInt32(3), 10, 3},
		{"a number may exceed the replicas", intstr.FromInt32(5), 2, 5},
		{"a percentage of replicas is rounded up", intstr.FromString("25%"), 10, 3},
		{"an exact percentage is not rounded", intstr.FromString("50%"), 10, 5},
		{"a small percentage of few replicas still lets one pod drain", intstr.FromString("1%"), 3, 1},
		{"a percentage of zero replicas still lets one pod drain", intstr.FromString("25%"), 0, 1},
		{"a hundred percent drains every pod at once", intstr.FromString("100%"), 7, 7},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := MaxConcurrent(tt.v, tt.replicas)
			if err != nil || got != tt.want {
				t.Errorf("MaxConcurrent(%s, %d) = %d, %v; want %d", tt.v.String(), tt.replicas, got, err, tt.want)
			}
		})
	}
}

func TestMaxSurge(t *testing.T) {
	tests := []struct {
		name     string
		v        intstr.IntOrString
		replicas int32
		want     int32
	}{
		{"zero means no surge", intstr.FromInt32(0), 10, 0},
		{"zero percent means no surge", intstr.FromString("0%"), 10, 0},
		{"a percentage is rounded up", intstr.FromString("25%"), 3, 1},
		{"a number is taken as it is", intstr.FromInt32(2), 3, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := MaxSurge(tt.v, tt.replicas)
			if err != nil || got != tt.want {
				t.Errorf("MaxSurge(%s, %d) = %d, %v; want %d", tt.v.String(), tt.replicas, got, err, tt.want)
			}
		})
	}
}

func TestMaxUnavailable(t *testing.T) {
	tests := []struct {
		name                       string
		v                          *intstr.IntOrString
		replicas, surge, maxConcur int32
		want                       int32
	}{
		{"unset with a surge keeps every replica", nil, 10, 3, 3, 0},
		{"unset without a surge lets as many go as may drain", nil, 10, 0, 3, 3},
		{"a number is taken as it is", ptr.To(intstr.FromInt32(2)), 10, 3, 3, 2},
		{"a percentage is rounded down, as a Deployment's", ptr.To(intstr.FromString("25%")), 10, 3, 3, 2},
		{"a percentage that rounds to 0 with a surge stays 0", ptr.To(intstr.FromString("25%")), 3, 1, 1, 0},
		{"0 without a surge is 1, so that an update progresses", ptr.To(intstr.FromString("10%")), 5, 0, 2, 1},
		{"a number may exceed the drain slots", ptr.To(intstr.FromInt32(5)), 10, 0, 1, 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := MaxUnavailable(tt.v, tt.replicas, tt.surge, tt.maxConcur)
			if err != nil || got != tt.want {
				t.Errorf("MaxUnavailable(%v, %d, surge %d, maxConcurrent %d) = %d, %v; want %d", tt.v, tt.replicas, tt.surge, tt.maxConcur, got, err, tt.want)
			}
		})
	}
}

func TestBudgetsRejectWhatIsNeitherANumberNorAPercentage(t *testing.T) {
	if _, err := MaxUnavailable(ptr.To(intstr.FromString("most")), 4, 1, 1); !errors.Is(err, ErrInvalidBudget) {
		t.Errorf("MaxUnavailable(most) error = %v, want ErrInvalidBudget", err)
	}
	if _, err := MaxConcurrent(intstr.FromString("half"), 4); !errors.Is(err, ErrInvalidBudget) {
		t.Errorf("MaxConcurrent(half) error = %v, want ErrInvalidBudget", err)
	}
	if _, err := MaxSurge(intstr.FromInt32(-1), 4); !errors.Is(err, ErrInvalidBudget) {
		t.Errorf("MaxSurge(-1) error = %v, want ErrInvalidBudget", err)
	}
}
