package loop

import (
	"testing"
	"time"
)

func TestPrefetchSize(t *testing.T) {
	const ms = 1e-3
	tests := []struct {
		name      string
		workers   int
		rtt, task float64
		haveTask  bool
		want      int
	}{
		{"nothing measured yet: no prefetch", 16, 0, 0, false, 0},
		{"a round trip but no task seen: no prefetch", 16, 1 * ms, 0, false, 0},
		{"no-op tasks fill a whole pool more", 16, 0.3 * ms, 0.005 * ms, true, 16},
		{"tasks that take no measurable time fill a whole pool more", 16, 0.3 * ms, 0, true, 16},
		{"tasks as long as the round trip: twice the pool, capped at one pool", 16, 1 * ms, 1 * ms, true, 16},
		{"tasks ten times the round trip: a fifth of the pool", 10, 1 * ms, 10 * ms, true, 2},
		{"tasks a hundred times the round trip: nothing held beyond the pool", 16, 1 * ms, 100 * ms, true, 0},
		{"second-long tasks: nothing held beyond the pool", 8, 2 * ms, 1000 * ms, true, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := prefetchSize(tt.workers, tt.rtt, tt.task, tt.haveTask); got != tt.want {
				t.Errorf("prefetchSize(%d, %g, %g, %v) = %d, want %d", tt.workers, tt.rtt, tt.task, tt.haveTask, got, tt.want)
			}
		})
	}
}

func TestPrefetchSizerFollowsTheTasks(t *testing.T) {
	s := newPrefetchSizer(16)
	if got := s.size(0); got != 0 {
		t.Fatalf("size before any sample = %d, want 0", got)
	}
	for range 20 {
		s.fetched(time.Millisecond)
	}
	for range 500 {
		s.ran(10 * time.Microsecond)
	}
	if got := s.size(0); got != 16 {
		t.Errorf("size with 10µs tasks and 1ms round trips = %d, want 16", got)
	}
	// A task that has run for a second already, though the average is
	// 10µs: nothing more is held behind it.
	if got := s.size(time.Second); got != 0 {
		t.Errorf("size while a task runs for 1s = %d, want 0", got)
	}
	// The tasks become slow: the prefetch shrinks to nothing.
	for range 500 {
		s.ran(500 * time.Millisecond)
	}
	if got := s.size(0); got != 0 {
		t.Errorf("size once tasks take 500ms = %d, want 0", got)
	}
}

func TestLongestRunningCountsOnlyTasksStillInTheirHandlers(t *testing.T) {
	now := time.Now()
	queued := &inflight{}
	inHandler := &inflight{}
	inHandler.started.Store(now.Add(-time.Second).UnixNano())
	settling := &inflight{} // its handler returned; its result is being written
	settling.started.Store(now.Add(-5 * time.Second).UnixNano())
	settling.returned.Store(true)
	l := &Loop{held: map[*inflight]struct{}{queued: {}, inHandler: {}, settling: {}}}
	if got := l.longestRunning(now); got != time.Second {
		t.Errorf("longestRunning = %v, want 1s: the task in its handler, not the one being settled", got)
	}
	for name, f := range map[string]*inflight{"queued": queued, "being settled": settling} {
		if got := f.runningSince(); !got.IsZero() || isStuck(got, now.Add(time.Hour), time.Second, time.Second) {
			t.Errorf("a task %s runs since %v and can be stuck: want neither", name, got)
		}
	}
}
