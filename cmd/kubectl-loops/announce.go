package main

import (
	"context"
	"encoding/json"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/tenire/loop-operator/worker/loop"
)

// announceWait is how long status waits for the workers' announcements;
// workers announce every 2 seconds.
const announceWait = 2500 * time.Millisecond

// announcements keeps the latest status each worker announced on the
// loop's status subject.
type announcements struct {
	mu       sync.Mutex
	byWorker map[string]loop.Announcement
	sub      *nats.Subscription
}

// listenAnnouncements follows the announcements of a loop's workers;
// onAnnounce, when not nil, is called with each, after it is recorded.
func listenAnnouncements(q *loopQueue, onAnnounce func(loop.Announcement)) (*announcements, error) {
	a := &announcements{byWorker: map[string]loop.Announcement{}}
	sub, err := q.nc.Subscribe(q.names.StatusSubject(), func(m *nats.Msg) {
		var an loop.Announcement
		if json.Unmarshal(m.Data, &an) != nil || an.Worker == "" {
			return
		}
		a.mu.Lock()
		a.byWorker[an.Worker] = an
		a.mu.Unlock()
		if onAnnounce != nil {
			onAnnounce(an)
		}
	})
	if err != nil {
		return nil, err
	}
	a.sub = sub
	return a, nil
}

// all returns the latest announcement of every worker heard from.
func (a *announcements) all() []loop.Announcement {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]loop.Announcement, 0, len(a.byWorker))
	for _, an := range a.byWorker {
		out = append(out, an)
	}
	return out
}

// forget drops a worker that is gone.
func (a *announcements) forget(worker string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.byWorker, worker)
}

func (a *announcements) get(worker string) (loop.Announcement, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	an, ok := a.byWorker[worker]
	return an, ok
}

// waitFor waits until every worker has announced itself or wait passes.
func (a *announcements) waitFor(ctx context.Context, workers []string, wait time.Duration) {
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		missing := false
		for _, w := range workers {
			if _, ok := a.get(w); !ok {
				missing = true
				break
			}
		}
		if !missing {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-deadline.C:
			return
		case <-tick.C:
		}
	}
}
