package queue_test

import (
	"testing"

	"github.com/tenire/loop-operator/internal/natstest"
	"github.com/tenire/loop-operator/worker/queue"
)

// BenchmarkObserve is one reading of an idle loop's queue, as the
// operator's poller makes for every loop at every interval: its cost times
// the loops over the interval is the poller's load at rest (docs/scaling.md).
func BenchmarkObserve(b *testing.B) {
	srv := natstest.Start(b)
	_, js := srv.Connect()
	names := queue.NewNames("LOOP_bench", "loops.bench")
	priorities := []string{"default"}
	if _, err := queue.Ensure(b.Context(), js, names, queue.Config{Priorities: priorities}); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := queue.Observe(b.Context(), js, names, priorities); err != nil {
			b.Fatal(err)
		}
	}
}
