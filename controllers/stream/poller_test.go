package stream

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	loopsv1alpha1 "github.com/tenire/loop-operator/api/v1alpha1"
	"github.com/tenire/loop-operator/worker/queue"
)

func TestMaterial(t *testing.T) {
	obs := func(pending uint64, inFlight int) Observation {
		return Observation{Ready: true, Reason: "Provisioned", Stream: "S",
			Backlog: queue.Backlog{Priorities: []queue.PriorityBacklog{{Priority: "a", Pending: pending, InFlight: inFlight}}}}
	}
	tests := []struct {
		name       string
		prev, next Observation
		want       bool
	}{
		{"the same figures are not material", obs(100, 4), obs(100, 4), false},
		{"a drift of a few tasks is not material", obs(100, 4), obs(97, 4), false},
		{"a change by more than a fifth is material", obs(100, 4), obs(70, 4), true},
		{"an empty queue getting a task is material", obs(0, 0), obs(1, 0), true},
		{"a queue going empty is material", obs(3, 0), obs(0, 0), true},
		{"losing the queue is material", obs(100, 4), Observation{Reason: "Unreachable"}, true},
		{"moving tasks is material", obs(100, 4), func() Observation { o := obs(100, 4); o.Moved = 3; return o }(), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Material(tt.prev, tt.next); got != tt.want {
				t.Errorf("Material = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestWakeDue(t *testing.T) {
	t0 := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	obs := func(pending uint64, at time.Duration) Observation {
		return Observation{Ready: true, Reason: "Provisioned", Stream: "S", At: t0.Add(at),
			Backlog: queue.Backlog{Priorities: []queue.PriorityBacklog{{Priority: "a", Pending: pending}}}}
	}
	tests := []struct {
		name       string
		last, next Observation
		want       bool
	}{
		{"a backlog that climbed by small steps since the last wake-up wakes it", obs(6, 0), obs(35, time.Second), true},
		{"a small drift since the last wake-up waits", obs(100, 0), obs(97, 30*time.Second), false},
		{"a small drift wakes it once the last wake-up is a minute old", obs(100, 0), obs(97, time.Minute), true},
		{"the same figures never wake it, however old the last wake-up", obs(100, 0), obs(100, time.Hour), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := wakeDue(tt.last, tt.next); got != tt.want {
				t.Errorf("wakeDue = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestClassify(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"a stream of another owner", &queue.OwnedElsewhereError{Stream: "S"}, loopsv1alpha1.ReasonQueueOwnedElsewhere},
		{"refused credentials", fmt.Errorf("connect: %w", nats.ErrAuthorization), loopsv1alpha1.ReasonQueueUnauthorized},
		{"credentials that are not a creds file", fmt.Errorf("x: %w", ErrBadCredentials), loopsv1alpha1.ReasonQueueUnauthorized},
		{"no server answering", fmt.Errorf("connect: %w", nats.ErrNoServers), loopsv1alpha1.ReasonQueueUnreachable},
		{"anything else JetStream refuses", errors.New("insufficient resources"), loopsv1alpha1.ReasonQueueProvisionFailed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := classify(tt.err); got != tt.want {
				t.Errorf("classify(%v) = %s, want %s", tt.err, got, tt.want)
			}
		})
	}
}

func TestCredentialsThatAreNotACredsFileAreRefused(t *testing.T) {
	if _, err := credentialsOption([]byte("user:password")); !errors.Is(err, ErrBadCredentials) {
		t.Errorf("got %v, want ErrBadCredentials", err)
	}
}
