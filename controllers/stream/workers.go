package stream

import (
	"encoding/json"
	"time"

	"github.com/nats-io/nats.go"
	"k8s.io/apimachinery/pkg/types"

	"github.com/tenire/loop-operator/worker/queue"
)

// announcementTTL is how long a worker's announcement counts for a pod
// that serves: a few of the workers' 2s announce intervals. An older one
// is stale (WorkerLoad.Stale).
const announcementTTL = 10 * time.Second

// announcementKeep is how long a stale announcement is kept at all: a
// terminating pod's worker stops announcing when it ends, and its pod can
// stay in the API server well after that while its kubelet is behind.
const announcementKeep = 10 * time.Minute

// WorkerLoad is what a worker last announced about its tasks.
type WorkerLoad struct {
	// InFlight counts the tasks it holds, running or waiting in its pool.
	InFlight int
	// At is when it announced it.
	At time.Time
	// Stale is set when the worker has not announced for longer than
	// announcementTTL. It says nothing about a serving pod (its worker
	// may be hung), but it is the last word of a terminating pod's worker,
	// which stops announcing as it ends.
	Stale bool
}

// workers collects the announcements of one LoopDeployment's workers.
type workers struct {
	sub  *nats.Subscription
	conn *nats.Conn
	load map[string]WorkerLoad
}

// announcedLoad is the part of a loop.Announcement the operator reads:
// decoding only it skips the rest of the status (counters, breakers, the
// pool) without allocating for it, and every pod announces every 2 s.
type announcedLoad struct {
	Worker string `json:"worker"`
	Status struct {
		InFlightByKind map[string]int `json:"inFlightByKind"`
	} `json:"status"`
}

// decodeLoad reads the worker's name and its tasks in flight from an
// announcement; ok is false for anything else.
func decodeLoad(data []byte) (worker string, inFlight int, ok bool) {
	var a announcedLoad
	if json.Unmarshal(data, &a) != nil || a.Worker == "" {
		return "", 0, false
	}
	for _, k := range a.Status.InFlightByKind {
		inFlight += k
	}
	return a.Worker, inFlight, true
}

// listen subscribes to the announcements of ld's workers on nc, once per
// connection. The caller holds p.mu.
func (p *Poller) listen(uid types.UID, nc *nats.Conn, n queue.Names) {
	w := p.workers[uid]
	if w != nil && w.conn == nc && w.sub.IsValid() {
		return
	}
	if w != nil && w.sub != nil {
		_ = w.sub.Unsubscribe()
	}
	w = &workers{conn: nc, load: map[string]WorkerLoad{}}
	sub, err := nc.Subscribe(n.StatusSubject(), func(m *nats.Msg) {
		worker, inFlight, ok := decodeLoad(m.Data)
		if !ok {
			return // not an announcement; ignored
		}
		p.mu.Lock()
		w.load[worker] = WorkerLoad{InFlight: inFlight, At: p.Clock.Now()}
		p.mu.Unlock()
	})
	if err != nil {
		p.Log.Error(err, "subscribing to the workers' announcements", "subject", n.StatusSubject())
		return
	}
	w.sub = sub
	p.workers[uid] = w
}

// unlisten drops the subscription of a LoopDeployment that is gone. The
// caller holds p.mu.
func (p *Poller) unlisten(uid types.UID) {
	if w := p.workers[uid]; w != nil {
		if w.sub != nil {
			_ = w.sub.Unsubscribe()
		}
		delete(p.workers, uid)
	}
}

// Loads returns what the workers of a LoopDeployment last announced, by
// pod name, within announcementKeep, marked Stale when older than
// announcementTTL: the scale-down drains the pods with the fewest tasks
// in flight first.
func (p *Poller) Loads(uid types.UID) map[string]WorkerLoad {
	p.init()
	p.mu.Lock()
	defer p.mu.Unlock()
	w := p.workers[uid]
	if w == nil {
		return nil
	}
	now := p.Clock.Now()
	out := make(map[string]WorkerLoad, len(w.load))
	for name, l := range w.load {
		age := now.Sub(l.At)
		if age > announcementKeep {
			delete(w.load, name)
			continue
		}
		l.Stale = age > announcementTTL
		out[name] = l
	}
	return out
}
