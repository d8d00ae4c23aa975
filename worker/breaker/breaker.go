package breaker

import (
	"sync"
	"sync/atomic"
	"time"
)

// State is the state of one kind's breaker.
type State int

const (
	// Closed lets every task run.
	Closed State = iota
	// Open refuses tasks until the cooldown has passed.
	Open
	// HalfOpen lets a few probe tasks run to test the kind again.
	HalfOpen
)

// String returns the state's name.
func (s State) String() string {
	switch s {
	case Open:
		return "Open"
	case HalfOpen:
		return "HalfOpen"
	default:
		return "Closed"
	}
}

// Options configure a Set.
type Options struct {
	// FailureThreshold consecutive failures open a kind's breaker. Zero
	// disables the breakers: Allow always allows.
	FailureThreshold int
	// Cooldown is how long a breaker stays open. Default 30s.
	Cooldown time.Duration
	// HalfOpenProbes is how many tasks may run at once while half-open.
	// Default 1.
	HalfOpenProbes int
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// OnChange, if not nil, is called (without locks held by the caller's
	// goroutine) whenever a kind's breaker changes state.
	OnChange func(kind string, from, to State)
}

// Set holds one breaker per task kind. It is safe for concurrent use. The
// zero value is not usable; create it with New.
type Set struct {
	opts  Options
	mu    sync.Mutex
	kinds map[string]*kindState
	// dirty counts the kinds that are not Closed with no failures. While
	// it is 0, Allow and Success have nothing to do and take no lock: the
	// common case of a loop whose tasks succeed costs two atomic loads.
	dirty atomic.Int64
}

type kindState struct {
	state    State
	failures int
	openedAt time.Time
	probes   int
}

// clean reports a breaker that is Closed with no failures.
func (k *kindState) clean() bool { return k.state == Closed && k.failures == 0 }

// track adjusts s.dirty after a change to k that began with k clean or
// not (wasClean). s.mu must be held.
func (s *Set) track(k *kindState, wasClean bool) {
	switch isClean := k.clean(); {
	case wasClean && !isClean:
		s.dirty.Add(1)
	case !wasClean && isClean:
		s.dirty.Add(-1)
	}
}

// New returns a Set in which every kind starts Closed.
func New(opts Options) *Set {
	if opts.Cooldown <= 0 {
		opts.Cooldown = 30 * time.Second
	}
	if opts.HalfOpenProbes <= 0 {
		opts.HalfOpenProbes = 1
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Set{opts: opts, kinds: make(map[string]*kindState)}
}

func (s *Set) get(kind string) *kindState {
	k, ok := s.kinds[kind]
	if !ok {
		k = &kindState{}
		s.kinds[kind] = k
	}
	return k
}

type change struct {
	kind     string
	from, to State
}

func (s *Set) notify(c change) {
	if c.from != c.to && s.opts.OnChange != nil {
		s.opts.OnChange(c.kind, c.from, c.to)
	}
}

// Allow reports whether a task of kind may run now. When it may not, wait
// is how long until the breaker lets a probe through. A caller that was
// allowed must report the outcome with Success, Failure or Ignore.
func (s *Set) Allow(kind string) (ok bool, wait time.Duration) {
	if s.opts.FailureThreshold <= 0 || s.dirty.Load() == 0 {
		return true, 0
	}
	s.mu.Lock()
	k := s.get(kind)
	wasClean := k.clean()
	c := change{kind: kind, from: k.state, to: k.state}
	switch k.state {
	case Closed:
		ok = true
	case Open:
		if left := k.openedAt.Add(s.opts.Cooldown).Sub(s.opts.Now()); left > 0 {
			wait = left
			break
		}
		k.state, c.to = HalfOpen, HalfOpen
		k.probes = 1
		ok = true
	case HalfOpen:
		if k.probes < s.opts.HalfOpenProbes {
			k.probes++
			ok = true
		} else {
			// Probes are out; ask again after a short while.
			wait = s.opts.Cooldown / 10
		}
	}
	s.track(k, wasClean)
	s.mu.Unlock()
	s.notify(c)
	return ok, wait
}

// Success records that an allowed task of kind succeeded. It resets the
// failure count and closes a half-open breaker.
func (s *Set) Success(kind string) {
	if s.opts.FailureThreshold <= 0 || s.dirty.Load() == 0 {
		return
	}
	s.mu.Lock()
	k := s.get(kind)
	wasClean := k.clean()
	c := change{kind: kind, from: k.state, to: k.state}
	switch k.state {
	case Closed:
		k.failures = 0
	case HalfOpen:
		k.state, c.to = Closed, Closed
		k.failures, k.probes = 0, 0
	}
	s.track(k, wasClean)
	s.mu.Unlock()
	s.notify(c)
}

// Failure records that an allowed task of kind failed. It opens the
// breaker after FailureThreshold consecutive failures, and at once when
// half-open.
func (s *Set) Failure(kind string) {
	if s.opts.FailureThreshold <= 0 {
		return
	}
	s.mu.Lock()
	k := s.get(kind)
	wasClean := k.clean()
	c := change{kind: kind, from: k.state, to: k.state}
	switch k.state {
	case Closed:
		k.failures++
		if k.failures >= s.opts.FailureThreshold {
			k.state, c.to = Open, Open
			k.openedAt = s.opts.Now()
		}
	case HalfOpen:
		k.state, c.to = Open, Open
		k.openedAt = s.opts.Now()
		k.probes = 0
	}
	s.track(k, wasClean)
	s.mu.Unlock()
	s.notify(c)
}

// Ignore records that an allowed task of kind ended with no verdict (it
// was handed back), freeing its probe slot when half-open.
func (s *Set) Ignore(kind string) {
	if s.opts.FailureThreshold <= 0 {
		return
	}
	s.mu.Lock()
	if k := s.get(kind); k.state == HalfOpen && k.probes > 0 {
		k.probes--
	}
	s.mu.Unlock()
}

// State returns the state of kind's breaker. An Open breaker whose
// cooldown has passed still reads Open until Allow is called.
func (s *Set) State(kind string) State {
	s.mu.Lock()
	defer s.mu.Unlock()
	if k, ok := s.kinds[kind]; ok {
		return k.state
	}
	return Closed
}

// States returns the state of every kind that has failed so far; a kind
// whose tasks have only succeeded is Closed and not listed.
func (s *Set) States() map[string]State {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]State, len(s.kinds))
	for kind, k := range s.kinds {
		out[kind] = k.state
	}
	return out
}
