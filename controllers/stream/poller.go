package stream

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/source"

	loopsv1alpha1 "github.com/tenire/loop-operator/api/v1alpha1"
	"github.com/tenire/loop-operator/api/v1alpha1/contract"
	"github.com/tenire/loop-operator/controllers/policy"
	"github.com/tenire/loop-operator/worker/queue"
)

// Defaults of the Poller.
const (
	// DefaultInterval is how often each LoopDeployment's queue is read.
	DefaultInterval = 10 * time.Second
	// DefaultTimeout bounds one poll of one queue.
	DefaultTimeout = 10 * time.Second
	// DefaultParallel is how many queues are polled at once.
	DefaultParallel = 8
	// moveBatch is the most tasks moved per consumer and poll.
	moveBatch = 256
)

// Observation is what one poll found about one LoopDeployment's queue.
type Observation struct {
	// At is when the poll ended.
	At time.Time
	// Ready is true when the queue is provisioned and was read; Backlog
	// is then valid.
	Ready bool
	// Reason and Message explain the QueueReady condition.
	Reason, Message string
	// Backlog is what the queue held.
	Backlog queue.Backlog
	// Stream is the work-queue stream provisioned.
	Stream string
	// RetiringStream is a previous stream whose tasks are being moved.
	RetiringStream string
	// Moved counts the tasks moved from retiring consumers by this poll.
	Moved int
	// LastActive is when the queue last held a task (pending or in
	// flight), as far as the Poller has seen since it started; for a
	// queue that has held none since then, when the Poller first read
	// it (it has been empty at least since). Zero until a reading
	// succeeds.
	LastActive time.Time
	// Generation is the LoopDeployment's generation the poll acted on.
	Generation int64
}

// Poller provisions and reads the queues of every LoopDeployment in the
// manager's cache, one poll each per Interval. It is a manager.Runnable
// that runs only on the leader.
type Poller struct {
	// Client lists LoopDeployments (the manager's cache).
	Client client.Reader
	// APIReader reads credentials Secrets straight from the API server
	// (the cache holds no Secrets), only when a connection is dialled.
	APIReader client.Reader
	// Interval, Timeout and Parallel default to DefaultInterval,
	// DefaultTimeout and DefaultParallel.
	Interval, Timeout time.Duration
	Parallel          int
	// Clock defaults to the real clock.
	Clock clock.WithTicker
	// Log receives the poller's logs.
	Log logr.Logger
	// Recorder records the TasksMoved events of the moves it makes.
	Recorder events.EventRecorder

	once  sync.Once
	wake  chan event.GenericEvent
	kick  chan types.NamespacedName
	conns conns
	mu    sync.Mutex
	obs   map[types.UID]Observation
	// woken holds, per LoopDeployment, the observation that last woke the
	// reconciler.
	woken   map[types.UID]Observation
	creds   map[types.UID][]byte // the credentials last read, by LoopDeployment
	workers map[types.UID]*workers
}

func (p *Poller) init() {
	p.once.Do(func() {
		if p.Interval <= 0 {
			p.Interval = DefaultInterval
		}
		if p.Timeout <= 0 {
			p.Timeout = DefaultTimeout
		}
		if p.Parallel <= 0 {
			p.Parallel = DefaultParallel
		}
		if p.Clock == nil {
			p.Clock = clock.RealClock{}
		}
		if p.Log.GetSink() == nil {
			p.Log = logr.Discard()
		}
		p.wake = make(chan event.GenericEvent, 1024)
		p.kick = make(chan types.NamespacedName, 1024)
		p.obs = map[types.UID]Observation{}
		p.woken = map[types.UID]Observation{}
		p.creds = map[types.UID][]byte{}
		p.workers = map[types.UID]*workers{}
		p.conns.timeout = p.Timeout
	})
}

// Source is the controller source by which the Poller wakes the
// reconciler of a LoopDeployment whose queue changed materially, or that
// autoscales (every poll).
func (p *Poller) Source() source.Source {
	p.init()
	return source.Channel(p.wake, &handler.EnqueueRequestForObject{})
}

// Observation returns the latest observation of a LoopDeployment's queue.
func (p *Poller) Observation(uid types.UID) (Observation, bool) {
	p.init()
	p.mu.Lock()
	defer p.mu.Unlock()
	o, ok := p.obs[uid]
	return o, ok
}

// Start polls until ctx ends.
func (p *Poller) Start(ctx context.Context) error {
	p.init()
	defer p.conns.closeAll()
	t := p.Clock.NewTicker(p.Interval)
	defer t.Stop()
	p.PollAll(ctx)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C():
			p.PollAll(ctx)
		case key := <-p.kick:
			ld := &loopsv1alpha1.LoopDeployment{}
			if err := p.Client.Get(ctx, key, ld); err == nil && ld.DeletionTimestamp.IsZero() {
				p.Poll(ctx, ld)
			}
		}
	}
}

// Kick asks for a poll of one LoopDeployment now, outside the round: for a
// new LoopDeployment (its workers wait for the queue) or a changed spec
// (a priority class or the stream renamed). It never blocks; a kick that
// finds the queue of kicks full is dropped, and the next round polls.
func (p *Poller) Kick(key types.NamespacedName) {
	p.init()
	select {
	case p.kick <- key:
	default:
	}
}

// PollAll polls every LoopDeployment once, Parallel at a time.
func (p *Poller) PollAll(ctx context.Context) {
	p.init()
	start := p.Clock.Now()
	list := &loopsv1alpha1.LoopDeploymentList{}
	if err := p.Client.List(ctx, list); err != nil {
		p.Log.Error(err, "listing LoopDeployments to poll their queues")
		return
	}
	live := make(map[types.UID]bool, len(list.Items))
	sem := make(chan struct{}, p.Parallel)
	var wg sync.WaitGroup
	for i := range list.Items {
		ld := &list.Items[i]
		live[ld.UID] = true
		if !ld.DeletionTimestamp.IsZero() {
			continue // its release deletes or keeps the queue
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			p.Poll(ctx, ld)
		})
	}
	wg.Wait()
	p.mu.Lock()
	for uid := range p.obs {
		if !live[uid] {
			delete(p.obs, uid)
			delete(p.woken, uid)
			delete(p.creds, uid)
			p.unlisten(uid)
		}
	}
	p.mu.Unlock()
	pollRoundDuration.Observe(p.Clock.Since(start).Seconds())
}

// Poll provisions and reads one LoopDeployment's queue, records the
// observation and wakes its reconciler when that is worth it.
func (p *Poller) Poll(ctx context.Context, ld *loopsv1alpha1.LoopDeployment) Observation {
	p.init()
	start := p.Clock.Now()
	ctx, cancel := withTimeout(ctx, p.Timeout)
	defer cancel()
	prev, seen := p.Observation(ld.UID)
	o := p.poll(ctx, ld, seen && prev.Ready && prev.Generation == ld.Generation && prev.RetiringStream == "")
	o.At, o.Generation = p.Clock.Now(), ld.Generation
	o.LastActive = prev.LastActive
	if pending, inFlight := o.Backlog.Demand(); o.Ready && (pending > 0 || inFlight > 0) {
		o.LastActive = o.At
	}
	if !seen && o.LastActive.IsZero() && ld.Status.Autoscaling != nil && ld.Status.Autoscaling.LastActiveTime != nil {
		o.LastActive = ld.Status.Autoscaling.LastActiveTime.Time // kept across operator restarts
	}
	if o.Ready && o.LastActive.IsZero() {
		// A queue that has held no task since the poller started has been
		// empty at least since this first reading: the idle time counts
		// from here, or a loop that never got a task would never scale to
		// zero.
		o.LastActive = o.At
	}
	p.mu.Lock()
	p.obs[ld.UID] = o
	last, woke := p.woken[ld.UID]
	p.mu.Unlock()
	record(ld, o, p.Clock.Since(start))
	p.Log.V(1).Info("polled the queue", "loopdeployment", client.ObjectKeyFromObject(ld), "ready", o.Ready,
		"stream", o.Stream, "retiringStream", o.RetiringStream, "moved", o.Moved, "reason", o.Reason, "message", o.Message)
	if !o.Ready {
		p.Log.Info("queue not ready", "loopdeployment", client.ObjectKeyFromObject(ld), "reason", o.Reason, "message", o.Message)
	}
	if ld.Spec.Autoscaling != nil || !woke || wakeDue(last, o) {
		select {
		case p.wake <- event.GenericEvent{Object: ld}:
			p.mu.Lock()
			p.woken[ld.UID] = o
			p.mu.Unlock()
		default: // a full channel already holds wake-ups; the next poll comes soon
		}
	}
	return o
}

// wakeDue reports whether the reconciler, last woken with last, should
// look at next: a material change since last (not since the poll before,
// or a backlog climbing by small steps would never wake it), or any change
// of the figures once last is policy.QueueStatusMaxAge old, so that the
// status catches up within the bound docs/queue.md states even when
// nothing else makes the LoopDeployment reconcile.
func wakeDue(last, next Observation) bool {
	if Material(last, next) {
		return true
	}
	return next.At.Sub(last.At) >= policy.QueueStatusMaxAge && !sameBacklog(last.Backlog, next.Backlog)
}

// sameBacklog reports whether two readings of a backlog hold the same
// figures (the oldest task's time to the second, as the status keeps it).
func sameBacklog(a, b queue.Backlog) bool {
	return slices.Equal(a.Priorities, b.Priorities) && a.DeadLetters == b.DeadLetters &&
		a.Oldest.Truncate(time.Second).Equal(b.Oldest.Truncate(time.Second))
}

// Material reports whether the reconciler should look at next after prev:
// readiness or its reason changed, a priority appeared or went, tasks were
// moved, the queue went from empty to holding work or back, dead letters
// arrived, or a figure changed by more than a fifth. Small drifts of a
// busy queue are not material; the status catches up with them within
// policy.QueueStatusMaxAge.
func Material(prev, next Observation) bool {
	if prev.Ready != next.Ready || prev.Reason != next.Reason || prev.Message != next.Message ||
		prev.Stream != next.Stream || prev.RetiringStream != next.RetiringStream || next.Moved > 0 {
		return true
	}
	a, b := prev.Backlog, next.Backlog
	if len(a.Priorities) != len(b.Priorities) || a.DeadLetters != b.DeadLetters {
		return true
	}
	ap, ai := a.Demand()
	bp, bi := b.Demand()
	if (ap+uint64(ai) == 0) != (bp+uint64(bi) == 0) {
		return true
	}
	return changedByAFifth(int64(ap), int64(bp)) || changedByAFifth(int64(ai), int64(bi))
}

func changedByAFifth(a, b int64) bool {
	d := a - b
	if d < 0 {
		d = -d
	}
	return d >= 5 && 5*d > max(a, b)
}

// poll does the work of Poll.
//
// settled means the last poll found the queue provisioned for this
// generation of ld: then the poll reuses the credentials it read and only
// reads the queue, so that a thousand settled loops cost no API server
// reads and no JetStream writes. Any failure, a new generation or a
// stream being retired makes the next poll read the Secret and provision
// again (a stream deleted behind the operator's back shows as not
// provisioned, and is provisioned again on the poll after).
func (p *Poller) poll(ctx context.Context, ld *loopsv1alpha1.LoopDeployment, settled bool) Observation {
	url := ld.Spec.Queue.NATS.URL
	t := targetOf(ld)
	o := Observation{Stream: t.names.Stream}
	fail := func(reason string, err error) Observation {
		o.Ready, o.Reason, o.Message = false, reason, err.Error()
		return o
	}
	p.mu.Lock()
	creds, cached := p.creds[ld.UID]
	p.mu.Unlock()
	if !settled || !cached {
		var err error
		if creds, err = p.credentials(ctx, ld); err != nil {
			return fail(loopsv1alpha1.ReasonQueueUnauthorized, err)
		}
		p.mu.Lock()
		p.creds[ld.UID] = creds
		p.mu.Unlock()
	}
	js, err := p.conns.get(url, creds)
	if err != nil {
		return fail(classify(err), err)
	}
	p.mu.Lock()
	p.listen(ld.UID, js.Conn(), t.names)
	p.mu.Unlock()
	failJS := func(err error) Observation {
		reason := classify(err)
		if reason == loopsv1alpha1.ReasonQueueUnauthorized {
			p.conns.drop(url, creds)
		}
		return fail(reason, err)
	}

	// A renamed stream first gives up the task subjects.
	var oldConsumers []string
	if old := previousStream(ld, t.names.Stream); old != "" {
		var exists bool
		if oldConsumers, exists, err = queue.RetireStream(ctx, js, old, t.config.Owner); err != nil {
			return failJS(err)
		}
		if exists {
			o.RetiringStream = old
		}
	}
	if !settled {
		if _, err := queue.Ensure(ctx, js, t.names, t.config); err != nil {
			return failJS(err)
		}
	}
	last := t.config.Priorities[len(t.config.Priorities)-1]
	if o.RetiringStream != "" {
		gone := 0
		for _, c := range oldConsumers {
			to := last
			if listed(t.config.Priorities, c) {
				to = c
			}
			moved, done, err := queue.Retire(ctx, js, o.RetiringStream, t.names, c, to, moveBatch)
			o.Moved += moved
			if err != nil {
				return failJS(err)
			}
			if done {
				gone++
			}
		}
		if gone == len(oldConsumers) {
			if err := js.DeleteStream(ctx, o.RetiringStream); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
				return failJS(fmt.Errorf("delete the emptied stream %s: %w", o.RetiringStream, err))
			}
			p.Log.Info("renamed stream emptied and deleted", "loopdeployment", client.ObjectKeyFromObject(ld), "stream", o.RetiringStream)
			o.RetiringStream = ""
		}
	}
	b, err := queue.Observe(ctx, js, t.names, t.config.Priorities)
	if err != nil {
		return failJS(err)
	}
	for _, pr := range b.Priorities {
		if !pr.Retiring {
			continue
		}
		moved, _, err := queue.Retire(ctx, js, t.names.Stream, t.names, pr.Priority, last, moveBatch)
		o.Moved += moved
		if err != nil {
			return failJS(err)
		}
	}
	if o.Moved > 0 {
		if p.Recorder != nil {
			p.Recorder.Eventf(ld, nil, corev1.EventTypeNormal, loopsv1alpha1.EventTasksMoved, "Move",
				"Moved %d tasks to stream %s, priority %s", o.Moved, t.names.Stream, last)
		}
		if b, err = queue.Observe(ctx, js, t.names, t.config.Priorities); err != nil {
			return failJS(err)
		}
	}
	o.Backlog, o.Ready, o.Reason = b, true, loopsv1alpha1.ReasonQueueProvisioned
	o.Message = fmt.Sprintf("stream %s holds the tasks of %d priority classes", t.names.Stream, len(t.config.Priorities))
	if retiring := retiringOf(b); o.RetiringStream != "" || retiring > 0 {
		o.Reason = loopsv1alpha1.ReasonQueueRetiring
		o.Message = fmt.Sprintf("moving tasks to stream %s, priority %s: %d retiring consumers", t.names.Stream, last, retiring)
		if o.RetiringStream != "" {
			o.Message += ", from the previous stream " + o.RetiringStream
		}
	}
	return o
}

// Delete deletes the queue of ld: its streams, consumers and bucket, with
// every task, dead letter and result in them. It leaves a stream that
// records another owner alone.
func (p *Poller) Delete(ctx context.Context, ld *loopsv1alpha1.LoopDeployment) error {
	p.init()
	ctx, cancel := withTimeout(ctx, p.Timeout)
	defer cancel()
	url := ld.Spec.Queue.NATS.URL
	t := targetOf(ld)
	creds, err := p.credentials(ctx, ld)
	if err != nil {
		return err
	}
	js, err := p.conns.get(url, creds)
	if err != nil {
		return err
	}
	for _, name := range []string{t.names.Stream, t.names.DeadStream, t.names.ResultStream()} {
		s, err := js.Stream(ctx, name)
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			continue
		}
		if err != nil {
			return fmt.Errorf("read stream %s: %w", name, err)
		}
		if have, ok := queue.OwnerOf(s.CachedInfo().Config.Metadata); ok && !have.Same(*t.config.Owner) {
			continue // not ours
		}
		if err := js.DeleteStream(ctx, name); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
			return fmt.Errorf("delete stream %s: %w", name, err)
		}
	}
	if err := js.DeleteKeyValue(ctx, t.names.CheckpointBucket); err != nil && !errors.Is(err, jetstream.ErrBucketNotFound) {
		return fmt.Errorf("delete bucket %s: %w", t.names.CheckpointBucket, err)
	}
	return nil
}

// credentials reads the NATS credentials of ld's Secret, nil without one.
func (p *Poller) credentials(ctx context.Context, ld *loopsv1alpha1.LoopDeployment) ([]byte, error) {
	ref := ld.Spec.Queue.NATS.CredentialsSecretRef
	if ref == nil {
		return nil, nil
	}
	sec := &corev1.Secret{}
	if err := p.APIReader.Get(ctx, types.NamespacedName{Namespace: ld.Namespace, Name: ref.Name}, sec); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("the credentials Secret %s does not exist", ref.Name)
		}
		return nil, fmt.Errorf("reading the credentials Secret %s: %w", ref.Name, err)
	}
	creds := sec.Data[loopsv1alpha1.DefaultCredentialsKey]
	if len(creds) == 0 {
		return nil, fmt.Errorf("the credentials Secret %s has no key %q", ref.Name, loopsv1alpha1.DefaultCredentialsKey)
	}
	return creds, nil
}

// target is one LoopDeployment's queue as the operator provisions it.
type target struct {
	names  queue.Names
	config queue.Config
}

func targetOf(ld *loopsv1alpha1.LoopDeployment) target {
	n, c := Layout(ld)
	return target{names: n, config: c}
}

// Layout is the queue the operator provisions for ld: its names and the
// set-up queue.Ensure gets, owner included (contract.QueueOf, the API's
// defaults applied).
func Layout(ld *loopsv1alpha1.LoopDeployment) (queue.Names, queue.Config) {
	q := contract.QueueOf(ld)
	return queue.NewNames(q.Stream, q.SubjectPrefix), queue.Config{
		Priorities:      q.Priorities,
		AckWait:         q.AckWait,
		MaxAckPending:   q.MaxAckPending,
		Replicas:        q.Replicas,
		ResultRetention: q.ResultRetention,
		DuplicateWindow: q.DuplicateWindow,
		Owner:           &queue.Owner{Namespace: ld.Namespace, Name: ld.Name, UID: string(ld.UID)},
	}
}

// previousStream is the stream the operator provisioned before, when the
// spec now names another.
func previousStream(ld *loopsv1alpha1.LoopDeployment, now string) string {
	q := ld.Status.Queue
	switch {
	case q == nil:
		return ""
	case q.RetiringStream != "" && q.RetiringStream != now:
		return q.RetiringStream
	case q.Stream != "" && q.Stream != now:
		return q.Stream
	}
	return ""
}

func listed(priorities []string, p string) bool {
	for _, x := range priorities {
		if x == p {
			return true
		}
	}
	return false
}

func retiringOf(b queue.Backlog) int {
	n := 0
	for _, p := range b.Priorities {
		if p.Retiring {
			n++
		}
	}
	return n
}

// classify maps an error of NATS or JetStream to a QueueReady reason.
func classify(err error) string {
	switch {
	case errors.Is(err, queue.ErrOwnedElsewhere):
		return loopsv1alpha1.ReasonQueueOwnedElsewhere
	case errors.Is(err, nats.ErrAuthorization), errors.Is(err, nats.ErrAuthExpired), errors.Is(err, nats.ErrAuthRevoked),
		errors.Is(err, nats.ErrPermissionViolation), errors.Is(err, ErrBadCredentials):
		return loopsv1alpha1.ReasonQueueUnauthorized
	case errors.Is(err, nats.ErrNoServers), errors.Is(err, nats.ErrTimeout), errors.Is(err, context.DeadlineExceeded),
		errors.Is(err, nats.ErrConnectionClosed), errors.Is(err, nats.ErrNoResponders), errors.Is(err, jetstream.ErrJetStreamNotEnabled):
		return loopsv1alpha1.ReasonQueueUnreachable
	default:
		return loopsv1alpha1.ReasonQueueProvisionFailed
	}
}
