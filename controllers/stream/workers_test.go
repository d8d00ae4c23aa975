package stream

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/types"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/tenire/loop-operator/worker/loop"
)

// announcement is what a busy worker announces: the status of a loop with
// a few kinds, counters and breakers.
func announcement(t testing.TB) []byte {
	t.Helper()
	b, err := json.Marshal(loop.Announcement{Worker: "orders-7f9c-x2x4q", At: time.Unix(1700000000, 0), Status: loop.Status{
		Name: "orders", State: "Running",
		Pool:           loop.PoolStatus{Workers: 16, Idle: 3, Running: 13, MinWorkers: 0, MaxWorkers: 64},
		InFlightByKind: map[string]int{"email": 9, "resize": 4, "report": 2},
		Counters:       map[string]uint64{"succeeded": 183422, "failed": 211, "retried": 1320, "deadLettered": 3, "handedBack": 40},
		Breakers:       map[string]string{"email": "Closed", "resize": "HalfOpen"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestDecodeLoadReadsTheWorkerAndItsTasksInFlight(t *testing.T) {
	worker, inFlight, ok := decodeLoad(announcement(t))
	if !ok || worker != "orders-7f9c-x2x4q" || inFlight != 15 {
		t.Errorf("decodeLoad = %q, %d, %v; want orders-7f9c-x2x4q, 15, true", worker, inFlight, ok)
	}
	idle, _ := json.Marshal(loop.Announcement{Worker: "orders-1", Status: loop.Status{InFlightByKind: map[string]int{}}})
	if worker, inFlight, ok := decodeLoad(idle); !ok || worker != "orders-1" || inFlight != 0 {
		t.Errorf("an idle worker's announcement = %q, %d, %v; want orders-1, 0, true", worker, inFlight, ok)
	}
	for _, bad := range []string{``, `not json`, `{}`, `{"status":{"inFlightByKind":{"a":1}}}`, `{"worker":"w","status":{"inFlightByKind":{"a":"x"}}}`} {
		if worker, inFlight, ok := decodeLoad([]byte(bad)); ok {
			t.Errorf("decodeLoad(%q) = %q, %d, true; want it ignored", bad, worker, inFlight)
		}
	}
}

// BenchmarkDecodeLoad is the operator's cost per announcement (each pod
// announces every 2 s); impl=full decodes the whole announcement, as it
// did before decodeLoad.
func BenchmarkDecodeLoad(b *testing.B) {
	data := announcement(b)
	b.Run("impl=load", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, _, ok := decodeLoad(data); !ok {
				b.Fatal("not decoded")
			}
		}
	})
	b.Run("impl=full", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var a loop.Announcement
			if err := json.Unmarshal(data, &a); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// TestLoadsMarksOldAnnouncementsStaleAndForgetsTheOldest: an announcement
// counts as fresh for announcementTTL, is then returned marked Stale (the
// last word of a worker that ended, for a pod still terminating), and is
// dropped after announcementKeep.
func TestLoadsMarksOldAnnouncementsStaleAndForgetsTheOldest(t *testing.T) {
	clk := clocktesting.NewFakeClock(time.Unix(1700000000, 0))
	p := &Poller{Clock: clk}
	p.init()
	now := clk.Now()
	uid := types.UID("u1")
	p.workers[uid] = &workers{load: map[string]WorkerLoad{
		"fresh": {InFlight: 2, At: now.Add(-announcementTTL)},
		"stale": {InFlight: 0, At: now.Add(-announcementTTL - time.Millisecond)},
		"gone":  {InFlight: 0, At: now.Add(-announcementKeep - time.Millisecond)},
	}}
	got := p.Loads(uid)
	want := map[string]WorkerLoad{
		"fresh": {InFlight: 2, At: now.Add(-announcementTTL)},
		"stale": {InFlight: 0, At: now.Add(-announcementTTL - time.Millisecond), Stale: true},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Loads = %+v, want %+v", got, want)
	}
	if _, kept := p.workers[uid].load["gone"]; kept {
		t.Error("an announcement older than announcementKeep is still kept")
	}
	if p.Loads("other") != nil {
		t.Error("Loads of a loop nobody announced for is not nil")
	}
}
