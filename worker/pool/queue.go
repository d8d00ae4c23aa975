package pool

// entry is one queued task, held by value. It is kept small and holds
// one pointer besides the task's own: entries are copied at every push and
// pop, and a pointer costs a write barrier while the GC runs.
type entry[T any] struct {
	ks       *kindState // the kind's name and counters, looked up once at push
	class    int
	enqueued int64 // nanoseconds since the pool's epoch; 0 without a DoneFunc
	value    T
}

// kindState counts the running tasks of one kind against its limit.
type kindState struct {
	name    string
	running int
	limit   int // 0: unlimited
}

// ring is a FIFO of entries backed by a circular buffer that doubles when
// full and is never shrunk, so a warmed-up ring does not allocate. Its
// size is a power of two.
type ring[T any] struct {
	buf  []entry[T]
	head int
	n    int
}

func (r *ring[T]) at(i int) *entry[T] {
	return &r.buf[(r.head+i)&(len(r.buf)-1)]
}

func (r *ring[T]) push(e entry[T]) {
	if r.n == len(r.buf) {
		size := 2 * len(r.buf)
		if size == 0 {
			size = 8
		}
		buf := make([]entry[T], size)
		for i := range r.n {
			buf[i] = *r.at(i)
		}
		r.buf, r.head = buf, 0
	}
	*r.at(r.n) = e
	r.n++
}

// remove takes out the entry at position i (0 is the oldest) and keeps the
// order of the others.
func (r *ring[T]) remove(i int) entry[T] {
	e := *r.at(i)
	var zero entry[T]
	if i == 0 {
		*r.at(0) = zero
		r.head = (r.head + 1) & (len(r.buf) - 1)
		r.n--
		return e
	}
	for j := i; j < r.n-1; j++ {
		*r.at(j) = *r.at(j + 1)
	}
	*r.at(r.n - 1) = zero
	r.n--
	return e
}

// class is the queue of one priority class with its scheduling state.
type class[T any] struct {
	ring    ring[T]
	weight  int
	current int // smooth weighted round-robin credit
	cand    int // index of the first runnable entry during a pick, or -1
}

// queue is the scheduling queue: one FIFO per priority class, a picking
// policy across classes and per-kind limits. It is not safe for concurrent
// use; the pool guards it with its mutex.
type queue[T any] struct {
	classes   []class[T]
	strict    bool
	kinds     map[string]*kindState // every kind seen; the limited ones from the start
	last      *kindState            // the kind looked up last: most loops submit few kinds, often in runs
	hasLimits bool
	n         int
}

func newQueue[T any](weights []int, strict bool, limits map[string]int) *queue[T] {
	q := &queue[T]{
		classes:   make([]class[T], len(weights)),
		strict:    strict,
		kinds:     make(map[string]*kindState, len(limits)),
		hasLimits: len(limits) > 0,
	}
	for kind, n := range limits {
		q.kinds[kind] = &kindState{name: kind, limit: n}
	}
	for i, w := range weights {
		q.classes[i].weight = w
	}
	return q
}

// kind returns the counters of kind, creating them on first use.
func (q *queue[T]) kind(kind string) *kindState {
	if q.last != nil && q.last.name == kind {
		return q.last
	}
	ks := q.kinds[kind]
	if ks == nil {
		ks = &kindState{name: kind}
		q.kinds[kind] = ks
	}
	q.last = ks
	return ks
}

func (q *queue[T]) len() int { return q.n }

// push queues e; e.ks must be set (see kind).
func (q *queue[T]) push(e entry[T]) {
	q.classes[e.class].ring.push(e)
	q.n++
}

// runnable reports whether a task of a kind with these counters may
// start now.
func runnable(ks *kindState) bool {
	return ks.limit == 0 || ks.running < ks.limit
}

// first returns the position of the oldest runnable entry of class c, or -1.
func (q *queue[T]) first(c *class[T]) int {
	if !q.hasLimits {
		if c.ring.n > 0 {
			return 0
		}
		return -1
	}
	for i := range c.ring.n {
		if runnable(c.ring.at(i).ks) {
			return i
		}
	}
	return -1
}

// pop removes and returns the next task to run and counts it against its
// kind's limit. It returns false when no queued task may run now.
func (q *queue[T]) pop() (entry[T], bool) {
	best := -1
	if q.strict {
		for i := range q.classes {
			c := &q.classes[i]
			if c.cand = q.first(c); c.cand >= 0 {
				best = i
				break
			}
		}
	} else {
		total := 0
		for i := range q.classes {
			c := &q.classes[i]
			if c.cand = q.first(c); c.cand < 0 {
				continue
			}
			c.current += c.weight
			total += c.weight
			if best < 0 || c.current > q.classes[best].current {
				best = i
			}
		}
		if best >= 0 {
			q.classes[best].current -= total
		}
	}
	if best < 0 {
		var zero entry[T]
		return zero, false
	}
	c := &q.classes[best]
	e := c.ring.remove(c.cand)
	q.n--
	e.ks.running++
	return e, true
}

// release returns the slot a task took in pop; ks is its entry's ks.
func (q *queue[T]) release(ks *kindState) {
	ks.running--
}

// removeNewest takes out up to n entries, newest first, from the lowest
// class up.
func (q *queue[T]) removeNewest(n int) []entry[T] {
	out := make([]entry[T], 0, min(n, q.n))
	for i := len(q.classes) - 1; i >= 0 && len(out) < n; i-- {
		r := &q.classes[i].ring
		for r.n > 0 && len(out) < n {
			out = append(out, r.remove(r.n-1))
			q.n--
		}
	}
	return out
}

// removeAll empties the queue and returns the entries, oldest first within
// each class, classes in order.
func (q *queue[T]) removeAll() []entry[T] {
	out := make([]entry[T], 0, q.n)
	for i := range q.classes {
		c := &q.classes[i]
		for c.ring.n > 0 {
			out = append(out, c.ring.remove(0))
		}
		c.current = 0
	}
	q.n = 0
	return out
}
