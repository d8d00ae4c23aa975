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

// announce publishes the loop's status at once, then every interval,
// until ctx ends. Core NATS: a message nobody listens to costs nothing.
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
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}
