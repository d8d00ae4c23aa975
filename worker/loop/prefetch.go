package loop

import (
	"math"
	"sync"
	"time"
)

// PrefetchOff is Config.Prefetch for no prefetch at all: the worker holds
// only the tasks it can start (spec.loop.pool.prefetch: 0).
const PrefetchOff = -1

// prefetchSizer sizes the adaptive prefetch (Config.Prefetch 0, the
// default): the tasks a worker holds beyond its pool, queued until a
// handler is free, so that the pool does not run dry while the next fetch
// is on its way.
//
// While one fetch makes its round trip, a pool of W busy workers whose
// tasks take T each ends about W × RTT ÷ T of them (Little's law); their
// slots stay empty unless that many tasks wait in the worker already. The
// sizer keeps moving averages of the round trip (fetches that found tasks
// at once; a long poll of an empty queue measures the queue, not the
// network) and of the handlers' run time, and sizes the prefetch at twice
// that figure, rounded, at most W. Tasks of milliseconds on a local
// server fill it (a whole pool more); tasks much longer than the round
// trip leave it at 0, so that a busy pod holds nothing that an idle one
// could run. Until both averages have a sample it is 0. A task running
// longer than the average counts as the task time while it runs.
//
// Prefetched tasks are held like running ones: heartbeats keep them from
// redelivery, and a drain hands them back at once. When the size shrinks
// below what the worker holds (its tasks turned long), the tasks beyond it
// are handed back, newest first, within a heartbeat tick.
type prefetchSizer struct {
	workers int

	mu       sync.Mutex
	rtt      float64 // seconds, moving average; 0 before a sample
	task     float64 // seconds, moving average; 0 before a sample
	haveTask bool
}

// Weights of a new sample in the moving averages: a fetch is a rare
// event, a task a frequent one.
const (
	prefetchRTTWeight  = 0.2
	prefetchTaskWeight = 0.02
)

func newPrefetchSizer(workers int) *prefetchSizer {
	return &prefetchSizer{workers: workers}
}

// fetched records the duration of a fetch that found tasks at once.
func (s *prefetchSizer) fetched(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rtt = ewma(s.rtt, d.Seconds(), prefetchRTTWeight)
}

// ran records a handler's run time.
func (s *prefetchSizer) ran(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.haveTask {
		s.task, s.haveTask = d.Seconds(), true
		return
	}
	s.task = ewma(s.task, d.Seconds(), prefetchTaskWeight)
}

// size returns the prefetch for the averages so far and the longest time
// a task still in its handler has been running: a task that runs longer
// than the average says so before it ends (a worker whose tasks were
// short a moment ago and are long now stops prefetching at once, and
// holds nothing behind them that an idle pod could run).
func (s *prefetchSizer) size(longestRunning time.Duration) int {
	s.mu.Lock()
	rtt, task, haveTask := s.rtt, s.task, s.haveTask
	s.mu.Unlock()
	return prefetchSize(s.workers, rtt, max(task, longestRunning.Seconds()), haveTask)
}

// prefetchSize is 2 × workers × rtt ÷ task, rounded, within [0, workers];
// 0 without a round trip measured or a task seen, and workers for tasks
// that take no measurable time.
func prefetchSize(workers int, rtt, task float64, haveTask bool) int {
	if rtt <= 0 || !haveTask {
		return 0
	}
	if task <= 0 {
		return workers
	}
	n := math.Round(2 * float64(workers) * rtt / task)
	if n >= float64(workers) {
		return workers
	}
	return int(n)
}

func ewma(avg, sample, weight float64) float64 {
	if avg == 0 {
		return sample
	}
	return avg + weight*(sample-avg)
}
