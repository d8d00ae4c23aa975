package loop

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/tenire/loop-operator/worker/queue"
)

func TestDeliveryCap(t *testing.T) {
	p := queue.RetryPolicy{MaxAttempts: 5, MaxCrashes: 3, MaxDeliveries: 20}.WithDefaults()
	tests := []struct {
		name      string
		delivered uint64
		counts    queue.DeliveryCounts
		known     bool
		want      string // in the error; "" for no cap
	}{
		{"a first delivery runs", 1, queue.DeliveryCounts{}, true, ""},
		{"a task retried after failures runs", 4, queue.DeliveryCounts{Failures: 3}, true, ""},
		{"a task handed back many times runs", 15, queue.DeliveryCounts{Failures: 1, Returns: 13}, true, ""},
		{"two crashes are below a cap of three", 3, queue.DeliveryCounts{}, true, ""},
		{"three crashes reach the cap", 4, queue.DeliveryCounts{}, true, "worker crashed 3 times while running it"},
		{"crashes between failures and returns add up", 7, queue.DeliveryCounts{Failures: 1, Returns: 2}, true, "worker crashed 3 times"},
		{"unknown counts cap nothing below MaxDeliveries", 19, queue.DeliveryCounts{}, false, ""},
		{"a delivery beyond MaxDeliveries is capped whatever the counts", 21, queue.DeliveryCounts{Returns: 20}, true, "delivered 21 times"},
		{"a delivery beyond MaxDeliveries is capped with unknown counts", 21, queue.DeliveryCounts{}, false, "MaxDeliveries 20"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := deliveryCap(p, tt.delivered, tt.counts, tt.known)
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("deliveryCap = %v, want nil", err)
			case tt.want != "" && (!errors.Is(err, ErrDeliveryCap) || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("deliveryCap = %v, want ErrDeliveryCap containing %q", err, tt.want)
			}
		})
	}
}

func TestIsStuck(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name    string
		started time.Time
		now     time.Time
		want    bool
	}{
		{"a task that has not started is not stuck", time.Time{}, t0, false},
		{"a task within its timeout is not stuck", t0, t0.Add(time.Minute), false},
		{"a task past its timeout but within the grace is not stuck", t0, t0.Add(10*time.Minute + 29*time.Second), false},
		{"a task past its timeout and the grace is stuck", t0, t0.Add(10*time.Minute + 31*time.Second), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := isStuck(tt.started, tt.now, 10*time.Minute, 30*time.Second); got != tt.want {
				t.Errorf("isStuck = %v, want %v", got, tt.want)
			}
		})
	}
}
