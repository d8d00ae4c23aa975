package ledger

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tenire/loop-operator/worker/queue"
)

// ErrNoResults means the loop keeps no result records, so completions
// cannot be told apart from losses.
var ErrNoResults = errors.New("ledger: the loop keeps no result records")

// Summary counts what happened to the expected tasks.
type Summary struct {
	// Expected is how many distinct task ids were expected.
	Expected int `json:"expected"`
	// Completed counts expected ids with at least one result record.
	Completed int `json:"completed"`
	// DeadLettered counts expected ids that failed for good (and did not
	// complete later, after a requeue).
	DeadLettered int `json:"deadLettered"`
	// Open counts expected ids neither completed nor dead-lettered: still
	// queued or running, or, once the queue is idle, lost.
	Open int `json:"open"`
	// Duplicates counts extra completions: a task that ran twice adds one.
	Duplicates int `json:"duplicates"`
}

// String is the one-line form, e.g. "5000 expected, 4990 completed, 10
// dead-lettered, 0 open, 3 duplicates".
func (s Summary) String() string {
	return fmt.Sprintf("%d expected, %d completed, %d dead-lettered, %d open, %d duplicates",
		s.Expected, s.Completed, s.DeadLettered, s.Open, s.Duplicates)
}

// Failure is an expected task that was dead-lettered.
type Failure struct {
	ID    string `json:"id"`
	Kind  string `json:"kind"`
	Error string `json:"error"`
}

// Ledger follows a loop's results and dead letters. Create it with Open and
// release it with Close. Its methods are safe for concurrent use.
type Ledger struct {
	mu        sync.Mutex
	changed   chan struct{} // closed and replaced on every record
	expected  map[string]struct{}
	completed map[string]int
	dead      map[string]Failure
	followers []*follower

	js   jetstream.JetStream
	log  logr.Logger
	stop context.CancelFunc // ends the watch; nil until Open succeeded
	done chan struct{}      // closed when the watch has ended
}

// follower reads one stream with an ordered consumer and remembers the
// last stream sequence it recorded, so that a consumer that stopped
// delivering can be replaced by one that starts after it. l.mu guards
// its fields.
type follower struct {
	stream   string
	record   func(jetstream.Msg) // called with l.mu held
	cc       jetstream.ConsumeContext
	seen     uint64        // the stream sequence of the last message recorded
	progress time.Time     // when a message was last recorded, or the consumer (re)started
	patience time.Duration // how long a quiet consumer is trusted: stallAfter, doubled after each new consumer that brought nothing
}

// Option configures Open.
type Option func(*Ledger)

// WithLogger makes the ledger log what its consumers report and when it
// follows a stream again (see Open); by default it logs nothing.
func WithLogger(log logr.Logger) Option { return func(l *Ledger) { l.log = log } }

// Open starts following the result and dead-letter streams of the loop
// with the given names, from their first record. A JetStream that does not
// answer in time (the streams' replicas still electing a leader, a server
// catching up or short of CPU) is asked again until ctx ends: bound ctx to
// bound the wait.
//
// Once open, the ledger watches its own consumers: when a stream holds
// records past the last one the ledger read and none has arrived for a
// while (nats.go may go on recreating an ordered consumer on a NATS server
// that has just died, or may give up recreating it, and deliver nothing
// again), it stops that consumer and follows the stream again from the
// record after the last one it read. A record is counted once, however
// many consumers deliver it.
func Open(ctx context.Context, js jetstream.JetStream, names queue.Names, opts ...Option) (*Ledger, error) {
	l := &Ledger{
		changed:   make(chan struct{}),
		expected:  map[string]struct{}{},
		completed: map[string]int{},
		dead:      map[string]Failure{},
		js:        js,
		log:       logr.Discard(),
	}
	for _, o := range opts {
		o(l)
	}
	follow := func(stream string, record func(jetstream.Msg)) error {
		f := &follower{stream: stream, record: record, patience: stallAfter}
		if err := l.consume(ctx, f); err != nil {
			return err
		}
		l.followers = append(l.followers, f)
		return nil
	}
	if err := follow(names.ResultStream(), l.recordResult); err != nil {
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			return nil, fmt.Errorf("%w (stream %s does not exist)", ErrNoResults, names.ResultStream())
		}
		return nil, fmt.Errorf("ledger: follow %s: %w", names.ResultStream(), err)
	}
	if err := follow(names.DeadStream, l.recordDead); err != nil {
		l.Close()
		return nil, fmt.Errorf("ledger: follow %s: %w", names.DeadStream, err)
	}
	watching, stop := context.WithCancel(context.Background())
	l.stop, l.done = stop, make(chan struct{})
	go l.watch(watching)
	return l, nil
}

// consume starts an ordered consumer of f's stream from the record after
// the last one f recorded (from the first, when none was).
func (l *Ledger) consume(ctx context.Context, f *follower) error {
	l.mu.Lock()
	from := f.seen + 1
	l.mu.Unlock()
	c, err := orderedConsumer(ctx, l.js, f.stream, from)
	if err != nil {
		return err
	}
	cc, err := c.Consume(func(m jetstream.Msg) { l.deliver(f, m) },
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			l.log.V(1).Info("the ledger's consumer reports an error; nats.go recreates it where it can", "stream", f.stream, "error", err.Error())
		}))
	if err != nil {
		return err
	}
	l.mu.Lock()
	f.cc = cc
	f.progress = time.Now()
	l.mu.Unlock()
	return nil
}

// deliver records m once: a record at or before the last one f recorded
// came from a consumer the ledger has since replaced.
func (l *Ledger) deliver(f *follower, m jetstream.Msg) {
	meta, err := m.Metadata()
	if err != nil {
		l.log.Info("the ledger skips a message without JetStream metadata", "stream", f.stream, "error", err.Error())
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if meta.Sequence.Stream <= f.seen {
		return
	}
	f.seen = meta.Sequence.Stream
	f.progress = time.Now()
	f.patience = stallAfter
	f.record(m)
	l.notify()
}

// watch checks, every checkEvery until ctx ends, that each stream's
// consumer delivers what the stream holds, and follows a stalled stream
// again.
func (l *Ledger) watch(ctx context.Context) {
	defer close(l.done)
	tick := time.NewTicker(checkEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		for _, f := range l.followers {
			if l.stalled(ctx, f) {
				l.refollow(ctx, f)
			}
		}
	}
}

// stalled tells whether f's stream holds a record past the last one f
// recorded while nothing has arrived for f.patience. A stream that cannot
// be asked now is not called stalled: it is asked again at the next check.
func (l *Ledger) stalled(ctx context.Context, f *follower) bool {
	l.mu.Lock()
	quiet := time.Since(f.progress) >= f.patience
	seen := f.seen
	l.mu.Unlock()
	if !quiet {
		return false
	}
	ask, cancel := context.WithTimeout(ctx, askTimeout)
	defer cancel()
	s, err := l.js.Stream(ask, f.stream)
	if err != nil {
		return false
	}
	st := s.CachedInfo().State
	return st.Msgs > 0 && st.LastSeq > seen
}

// refollow replaces f's consumer with one that starts after the last
// record f recorded. When the new one cannot be created now, f stays
// without a consumer until the next check tries again. Each new consumer
// that brings nothing doubles the wait before the next (up to
// maxPatience): the newest record may have been deleted before the ledger
// read it (kubectl loops deadletters requeues and deletes dead letters),
// and then no consumer has anything to deliver.
func (l *Ledger) refollow(ctx context.Context, f *follower) {
	l.mu.Lock()
	old, seen := f.cc, f.seen
	f.cc = nil
	f.patience = min(2*f.patience, maxPatience)
	l.mu.Unlock()
	if old != nil {
		old.Stop()
	}
	l.log.Info("the ledger's consumer stalled while its stream holds newer records; following the stream again after the last record read",
		"stream", f.stream, "lastRead", seen)
	ask, cancel := context.WithTimeout(ctx, askTimeout)
	defer cancel()
	if err := l.consume(ask, f); err != nil && ctx.Err() == nil {
		l.log.Info("the ledger could not follow the stream again; it tries at its next check", "stream", f.stream, "error", err.Error())
	}
}

// checkEvery and stallAfter pace the ledger's watch of its consumers
// (variables for the package's tests): a stream whose consumer delivered
// nothing for stallAfter while the stream holds newer records is followed
// again.
var (
	checkEvery  = 2 * time.Second
	stallAfter  = 5 * time.Second
	maxPatience = time.Minute
)

// orderedConsumer creates an ordered consumer of stream from the record
// with sequence from (or the first after it), asking again, with a growing
// pause, while the answer is a timeout or a "temporarily unavailable" and
// ctx lives.
func orderedConsumer(ctx context.Context, js jetstream.JetStream, stream string, from uint64) (jetstream.Consumer, error) {
	cfg := jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverAllPolicy}
	if from > 1 {
		cfg = jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: from}
	}
	pause := 100 * time.Millisecond
	var last error
	for {
		// Each try is bounded as nats.go bounds a request without a
		// deadline, whatever ctx's own deadline: a request the server
		// dropped is asked again rather than waited for.
		try, cancel := context.WithTimeout(ctx, askTimeout)
		c, err := js.OrderedConsumer(try, stream, cfg)
		cancel()
		switch {
		case err == nil:
			return c, nil
		case ctx.Err() != nil && last != nil:
			return nil, fmt.Errorf("%w (JetStream's last answer: %w)", ctx.Err(), last)
		case ctx.Err() != nil || !unanswered(err):
			return nil, err
		}
		last = err
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("%w (JetStream's last answer: %w)", ctx.Err(), last)
		case <-time.After(pause):
		}
		pause = min(2*pause, 2*time.Second)
	}
}

// unanswered tells whether err means that JetStream did not answer in time
// or answered that it cannot now, rather than a refusal that another try
// would meet again. "JetStream not enabled" and "not enabled for account"
// are among the second: a server answers them while it starts JetStream
// (it serves requests before it has enabled the accounts), and an account
// that truly lacks JetStream is refused before Open by whoever looked the
// streams up, as kubectl loops does; Open then ends with its context and
// names the answer.
func unanswered(err error) bool {
	var api *jetstream.APIError
	if errors.As(err, &api) {
		switch api.ErrorCode {
		case jsClusterNotAvailable, jetstream.JSErrCodeJetStreamNotEnabled, jetstream.JSErrCodeJetStreamNotEnabledForAccount:
			return true
		}
	}
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) || errors.Is(err, nats.ErrNoResponders)
}

// askTimeout bounds one request to JetStream, as nats.go's default does
// (a variable for the package's tests).
var askTimeout = 5 * time.Second

// jsClusterNotAvailable is the error code of JetStream's "JetStream system
// temporarily unavailable", which nats.go does not name.
const jsClusterNotAvailable jetstream.ErrorCode = 10008

// Close stops following the streams and returns when the ledger's own
// goroutine has ended.
func (l *Ledger) Close() {
	if l.stop != nil {
		l.stop()
		<-l.done
	}
	l.mu.Lock()
	ccs := make([]jetstream.ConsumeContext, 0, len(l.followers))
	for _, f := range l.followers {
		if f.cc != nil {
			ccs = append(ccs, f.cc)
		}
	}
	l.mu.Unlock()
	for _, cc := range ccs {
		cc.Stop()
	}
}

// recordResult counts a completion; l.mu is held.
func (l *Ledger) recordResult(m jetstream.Msg) {
	l.completed[m.Headers().Get(queue.HeaderTaskID)]++
}

// recordDead remembers a dead letter; l.mu is held.
func (l *Ledger) recordDead(m jetstream.Msg) {
	h := m.Headers()
	id := h.Get(queue.HeaderTaskID)
	l.dead[id] = Failure{ID: id, Kind: h.Get(queue.HeaderKind), Error: h.Get(queue.HeaderError)}
}

// notify wakes Wait; l.mu is held.
func (l *Ledger) notify() {
	close(l.changed)
	l.changed = make(chan struct{})
}

// Expect adds task ids to account for.
func (l *Ledger) Expect(ids ...string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, id := range ids {
		l.expected[id] = struct{}{}
	}
	l.notify()
}

// Summary counts the expected tasks now.
func (l *Ledger) Summary() Summary {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := Summary{Expected: len(l.expected)}
	for id := range l.expected {
		n := l.completed[id]
		_, dead := l.dead[id]
		switch {
		case n > 0:
			s.Completed++
			s.Duplicates += n - 1
		case dead:
			s.DeadLettered++
		default:
			s.Open++
		}
	}
	return s
}

// Failures lists the expected tasks that were dead-lettered and did not
// complete, by id.
func (l *Ledger) Failures() []Failure {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []Failure
	for id, f := range l.dead {
		if _, ok := l.expected[id]; ok && l.completed[id] == 0 {
			out = append(out, f)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Completed lists the ids with at least one result record, by id.
func (l *Ledger) Completed() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]string, 0, len(l.completed))
	for id, n := range l.completed {
		if n > 0 {
			out = append(out, id)
		}
	}
	sort.Strings(out)
	return out
}

// Open lists up to max expected ids that are neither completed nor
// dead-lettered, by id.
func (l *Ledger) Open(max int) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for id := range l.expected {
		if _, dead := l.dead[id]; l.completed[id] == 0 && !dead {
			out = append(out, id)
		}
	}
	sort.Strings(out)
	if len(out) > max {
		out = out[:max]
	}
	return out
}

// Wait returns when no expected task is open, or when ctx ends (then with
// ctx's error and the summary at that moment). progress, when not nil, is
// called with each new summary, at most once per interval.
func (l *Ledger) Wait(ctx context.Context, interval time.Duration, progress func(Summary)) (Summary, error) {
	var last time.Time
	for {
		l.mu.Lock()
		changed := l.changed
		l.mu.Unlock()
		s := l.Summary()
		if progress != nil && (s.Open == 0 || time.Since(last) >= interval) {
			progress(s)
			last = time.Now()
		}
		if s.Open == 0 {
			return s, nil
		}
		select {
		case <-ctx.Done():
			return s, ctx.Err()
		case <-changed:
		}
	}
}
