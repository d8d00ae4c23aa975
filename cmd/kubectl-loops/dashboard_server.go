package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/nats-io/nats.go"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	loopsv1alpha1 "github.com/tenire/loop-operator/api/v1alpha1"
	"github.com/tenire/loop-operator/worker/loop"
)

// historyWindow is how far back the charts reach; sampleEvery is the
// finest step of their samples.
const (
	historyWindow = 5 * time.Minute
	sampleEvery   = time.Second
)

// dashboard serves the web dashboard. Everything it shows of the cluster
// comes from a cache filled by watches with the user's credentials
// (LoopDeployments, their pods and the events), and everything of the
// queues from the workers' announcements and JetStream; a page load or a
// live update makes no request to the API server.
type dashboard struct {
	o         *options
	k         *kube
	namespace string // "" for every namespace
	log       logr.Logger
	cache     cache.Cache
	csrf      string
	hub       *hub

	mu    sync.Mutex
	loops map[client.ObjectKey]*loopState
	ctx   context.Context
}

// loopState is what the dashboard keeps of one LoopDeployment besides the
// cache: its queue connection and what the workers announced.
type loopState struct {
	key client.ObjectKey
	url string // the NATS URL it was connected with

	mu         sync.Mutex
	closed     bool
	connecting bool
	tried      time.Time // when connecting last started
	q          *loopQueue
	ann        *announcements
	deadSub    *nats.Subscription
	queueErr   string
	// counters are each worker's last counters, to sum their increments:
	// done and failed count the tasks that ended, and that failed an
	// attempt, since the dashboard started.
	counters     map[string]map[string]uint64
	done, failed uint64
	history      []sample
	dead         []deadLetter
	deadErr      string
	deadStale    bool
}

// sample is one point of the charts.
type sample struct {
	At       time.Time
	Pending  map[string]int64 // per priority, from status.queue
	InFlight int              // tasks held by the workers, announced
	Done     uint64
	Failed   uint64
}

func newDashboard(o *options, k *kube, namespace string, log logr.Logger) (*dashboard, error) {
	exists, err := labels.NewRequirement(loopsv1alpha1.LabelName, selection.Exists, nil)
	if err != nil {
		return nil, err
	}
	opts := cache.Options{
		Scheme: scheme,
		ByObject: map[client.Object]cache.ByObject{
			&corev1.Pod{}: {Label: labels.NewSelector().Add(*exists)},
		},
	}
	if namespace != "" {
		opts.DefaultNamespaces = map[string]cache.Config{namespace: {}}
	}
	c, err := cache.New(k.config, opts)
	if err != nil {
		return nil, fmt.Errorf("setting up the watches: %w", err)
	}
	var b [24]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, err
	}
	return &dashboard{o: o, k: k, namespace: namespace, log: log, cache: c, csrf: hex.EncodeToString(b[:]),
		hub: newHub(), loops: map[client.ObjectKey]*loopState{}}, nil
}

// start starts the watches and waits until they listed what exists; it
// fails when the user may not list or watch LoopDeployments, pods or
// events. The watches stop when ctx ends.
func (d *dashboard) start(ctx context.Context) error {
	d.mu.Lock()
	d.ctx = ctx
	d.mu.Unlock()
	for _, obj := range []client.Object{&loopsv1alpha1.LoopDeployment{}, &corev1.Pod{}, &corev1.Event{}} {
		inf, err := d.cache.GetInformer(ctx, obj)
		if err != nil {
			return fmt.Errorf("watching %T: %w", obj, err)
		}
		if _, err := inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
			AddFunc:    func(o any) { d.observed(o) },
			UpdateFunc: func(_, o any) { d.observed(o) },
			DeleteFunc: func(o any) { d.deleted(o) },
		}); err != nil {
			return err
		}
	}
	errc := make(chan error, 1)
	go func() { errc <- d.cache.Start(ctx) }()
	syncCtx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if !d.cache.WaitForCacheSync(syncCtx) {
		select {
		case err := <-errc:
			return fmt.Errorf("watching the loops: %w", err)
		default:
		}
		return fmt.Errorf("the watches of LoopDeployments, pods and events did not sync within a minute: may you list and watch them here (kubectl auth can-i watch loopdeployments)? %w", syncCtx.Err())
	}
	return nil
}

// close closes the queue connections; the watches stop with start's ctx.
func (d *dashboard) close() {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, st := range d.loops {
		st.close()
	}
	d.loops = map[client.ObjectKey]*loopState{}
	d.hub.close()
}

func (st *loopState) close() {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.closed = true
	if st.deadSub != nil {
		_ = st.deadSub.Unsubscribe()
	}
	if st.q != nil {
		st.q.Close()
		st.q = nil
	}
}

// observed is called by the watches for every object added or changed.
func (d *dashboard) observed(obj any) {
	switch o := obj.(type) {
	case *loopsv1alpha1.LoopDeployment:
		st := d.state(o)
		st.record(o, time.Now())
		d.hub.publish(client.ObjectKeyFromObject(o))
	case *corev1.Pod:
		d.hub.publish(client.ObjectKey{Namespace: o.Namespace, Name: o.Labels[loopsv1alpha1.LabelName]})
	case *corev1.Event:
		if o.InvolvedObject.Kind == "LoopDeployment" {
			d.hub.publish(client.ObjectKey{Namespace: o.Namespace, Name: o.InvolvedObject.Name})
		} else {
			d.hub.publish(client.ObjectKey{Namespace: o.Namespace})
		}
	}
}

func (d *dashboard) deleted(obj any) {
	if tomb, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
		obj = tomb.Obj
	}
	switch o := obj.(type) {
	case *loopsv1alpha1.LoopDeployment:
		key := client.ObjectKeyFromObject(o)
		d.mu.Lock()
		if st, ok := d.loops[key]; ok {
			st.close()
			delete(d.loops, key)
		}
		d.mu.Unlock()
		d.hub.publish(key)
	case *corev1.Pod:
		key := client.ObjectKey{Namespace: o.Namespace, Name: o.Labels[loopsv1alpha1.LabelName]}
		if st := d.existing(key); st != nil {
			st.forget(o.Name)
		}
		d.hub.publish(key)
	default:
		d.observed(obj)
	}
}

func (d *dashboard) existing(key client.ObjectKey) *loopState {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.loops[key]
}

// reconnectAfter is how long the dashboard waits before it tries again to
// reach a queue it could not reach, or whose connection closed.
const reconnectAfter = 15 * time.Second

// state returns the state of a LoopDeployment, and connects to its queue
// in the background the first time, again when its NATS URL changed, and
// again (at a change of the LoopDeployment, reconnectAfter since the last
// try at the earliest) when the queue was not reachable or its connection
// closed.
func (d *dashboard) state(ld *loopsv1alpha1.LoopDeployment) *loopState {
	key := client.ObjectKeyFromObject(ld)
	url := ld.Spec.Queue.NATS.URL
	d.mu.Lock()
	defer d.mu.Unlock()
	st, ok := d.loops[key]
	if ok && st.url == url {
		if st.retry(time.Now()) && d.ctx != nil {
			go d.connect(d.ctx, st, ld.DeepCopy())
		}
		return st
	}
	if ok {
		st.close()
	}
	st = &loopState{key: key, url: url, counters: map[string]map[string]uint64{}, deadStale: true,
		queueErr: "connecting to the queue", connecting: true, tried: time.Now()}
	d.loops[key] = st
	if d.ctx != nil {
		go d.connect(d.ctx, st, ld.DeepCopy())
	}
	return st
}

// retry reports whether to connect to the queue again, and if so marks
// the state as connecting, dropping a closed connection.
func (st *loopState) retry(now time.Time) bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.closed || st.connecting || now.Sub(st.tried) < reconnectAfter || (st.q != nil && !st.q.nc.IsClosed()) {
		return false
	}
	if st.q != nil {
		if st.deadSub != nil {
			_ = st.deadSub.Unsubscribe()
		}
		st.q.Close()
		st.q, st.ann, st.deadSub, st.queueErr = nil, nil, nil, "the connection to the queue closed; connecting again"
	}
	st.connecting, st.tried = true, now
	return true
}

// connect reaches a LoopDeployment's queue the way the other commands do
// and follows its workers' announcements and its dead letters.
func (d *dashboard) connect(ctx context.Context, st *loopState, ld *loopsv1alpha1.LoopDeployment) {
	k := &kube{config: d.k.config, client: d.k.client, namespace: ld.Namespace}
	q, err := d.o.connectQueue(ctx, k, ld)
	if err != nil {
		d.log.Info("cannot reach the queue", "loopdeployment", st.key.String(), "error", err.Error())
		st.mu.Lock()
		st.queueErr, st.connecting = err.Error(), false
		st.mu.Unlock()
		d.hub.publish(st.key)
		return
	}
	ann, err := listenAnnouncements(q, func(an loop.Announcement) {
		if st.announced(an, time.Now()) {
			d.hub.publish(st.key)
		}
	})
	var sub *nats.Subscription
	if err == nil {
		sub, err = q.nc.Subscribe(q.names.DeadSubject+".>", func(*nats.Msg) {
			st.mu.Lock()
			st.deadStale = true
			st.mu.Unlock()
			d.hub.publish(st.key)
		})
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	st.connecting = false
	if err != nil || st.closed {
		q.Close()
		if err != nil {
			st.queueErr = err.Error()
		}
		return
	}
	st.q, st.ann, st.deadSub, st.queueErr, st.deadStale = q, ann, sub, "", true
	d.log.V(1).Info("following the queue", "loopdeployment", st.key.String(), "nats", q.address)
	go d.hub.publish(st.key)
}

// record adds a sample of the LoopDeployment's backlog to the history.
func (st *loopState) record(ld *loopsv1alpha1.LoopDeployment, now time.Time) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.addSample(now, pendingOf(ld))
}

// announced takes a worker's announcement into the counters; it reports
// whether anything shown changed.
func (st *loopState) announced(an loop.Announcement, now time.Time) bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	// A worker's first announcement sets its baseline: what it counted
	// before the dashboard heard it is not a rate.
	prev, known := st.counters[an.Worker]
	for outcome, n := range an.Status.Counters {
		var inc uint64
		switch p := prev[outcome]; {
		case !known:
		case n < p:
			inc = n // the worker restarted and counts from 0
		default:
			inc = n - p
		}
		switch outcome {
		case loop.OutcomeSucceeded:
			st.done += inc
		case loop.OutcomeDeadLettered:
			st.done += inc
			st.failed += inc
		case loop.OutcomeRetried:
			st.failed += inc
		}
	}
	st.counters[an.Worker] = an.Status.Counters
	var pending map[string]int64
	if n := len(st.history); n > 0 {
		pending = st.history[n-1].Pending
	}
	st.addSample(now, pending)
	return true
}

func (st *loopState) forget(worker string) {
	st.mu.Lock()
	defer st.mu.Unlock()
	delete(st.counters, worker)
	if st.ann != nil {
		st.ann.forget(worker)
	}
}

// addSample appends a sample, or updates the last when it is younger than
// sampleEvery, and drops those older than historyWindow. st.mu is held.
func (st *loopState) addSample(now time.Time, pending map[string]int64) {
	inFlight := 0
	if st.ann != nil {
		for _, an := range st.ann.all() {
			for _, n := range an.Status.InFlightByKind {
				inFlight += n
			}
		}
	}
	s := sample{At: now, Pending: pending, InFlight: inFlight, Done: st.done, Failed: st.failed}
	if n := len(st.history); n > 1 && now.Sub(st.history[n-2].At) < sampleEvery {
		st.history[n-1] = s
	} else {
		st.history = append(st.history, s)
	}
	cut := 0
	for cut < len(st.history) && now.Sub(st.history[cut].At) > historyWindow {
		cut++
	}
	st.history = st.history[cut:]
}

func pendingOf(ld *loopsv1alpha1.LoopDeployment) map[string]int64 {
	if ld.Status.Queue == nil {
		return nil
	}
	m := make(map[string]int64, len(ld.Status.Queue.Priorities))
	for _, p := range ld.Status.Queue.Priorities {
		m[p.Name] = p.Pending
	}
	return m
}

// deadLetters returns the loop's dead letters, read again from JetStream
// only when one was added or removed since the last read.
func (st *loopState) deadLetters(ctx context.Context) ([]deadLetter, string) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.q == nil {
		return nil, st.queueErr
	}
	if st.deadStale {
		letters, err := readDeadLetters(ctx, st.q)
		st.dead, st.deadErr, st.deadStale = letters, "", false
		if err != nil {
			st.deadErr, st.deadStale = err.Error(), true
		}
	}
	return st.dead, st.deadErr
}

// queue returns the open queue connection, or why there is none.
func (st *loopState) queue() (*loopQueue, error) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.q == nil {
		return nil, fmt.Errorf("the queue is not reachable: %s", st.queueErr)
	}
	return st.q, nil
}

// hub hands change notices to the live pages. A notice names the
// LoopDeployment that changed (or only a namespace for an event of a
// pod); each subscriber keeps one pending notice at most, so a burst of
// changes makes one update.
type hub struct {
	mu     sync.Mutex
	subs   map[*subscriber]struct{}
	closed bool
}

type subscriber struct {
	key client.ObjectKey // the LoopDeployment page it shows; zero for the overview
	c   chan struct{}
}

func newHub() *hub { return &hub{subs: map[*subscriber]struct{}{}} }

func (h *hub) subscribe(key client.ObjectKey) (*subscriber, func()) {
	s := &subscriber{key: key, c: make(chan struct{}, 1)}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		close(s.c)
		return s, func() {}
	}
	h.subs[s] = struct{}{}
	return s, func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		if _, ok := h.subs[s]; ok {
			delete(h.subs, s)
			close(s.c)
		}
	}
}

func (h *hub) publish(key client.ObjectKey) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for s := range h.subs {
		if s.key.Name != "" && (s.key.Namespace != key.Namespace || (key.Name != "" && s.key.Name != key.Name)) {
			continue
		}
		select {
		case s.c <- struct{}{}:
		default:
		}
	}
}

func (h *hub) close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	for s := range h.subs {
		delete(h.subs, s)
		close(s.c)
	}
}
