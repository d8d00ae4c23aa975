package loop

import (
	"context"
	"encoding/json"
	"time"
)

// Announcement is what a loop publishes on its queue's status subject
// (queue.Names.StatusSubject) every Config.AnnounceInterval: its Status,
// named by Config.Worker.
type Announcement struct {
	// Worker is Config.Worker, the pod's name in a cluster.
	Worker string `json:"worker"`
	// At is when the status was taken.
	At time.Time `json:"at"`
	// Status is the loop's Status, as /status serves it.
	Status Status `json:"status"`
}

// announceGap is the least time between two announcements that a change
// of state asked for (announceChange), so that a worker flipping between
// idle and busy does not flood the subject.
const announceGap = 200 * time.Millisecond

// announce publishes the loop's status at once, then every interval and
// whenever the worker goes from holding nothing to holding a task or back
// (at most every announceGap), until ctx ends: the operator deletes a pod
// whose worker announced no task in flight instead of draining it, so it
// must hear of the first task soon. Core NATS: a message nobody listens to
// costs nothing.
func (l *Loop) announce(ctx context.Context) {
	tick := time.NewTicker(l.cfg.AnnounceInterval)
	defer tick.Stop()
	subject := l.names.StatusSubject()
	for {
		data, err := json.Marshal(Announcement{Worker: l.cfg.Worker, At: time.Now(), Status: l.Status()})
		if err == nil {
			err = l.nc.Publish(subject, data)
		}
		if err != nil {
			l.log.V(1).Info("announcing the status failed", "error", err.Error())
		}
		last := time.Now()
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-l.announceSoon:
			if wait := announceGap - time.Since(last); wait > 0 {
				t := time.NewTimer(wait)
				select {
				case <-ctx.Done():
					t.Stop()
					return
				case <-t.C:
				}
			}
		}
	}
}

// announceChange asks announce for an announcement now.
func (l *Loop) announceChange() {
	select {
	case l.announceSoon <- struct{}{}:
	default:
	}
}
