package queue

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Fetcher pulls tasks from the consumers of a loop's priorities, never more
// than the caller asks for, so that a worker holds only tasks it can start
// and a drain strands nothing. It is not safe for concurrent use.
type Fetcher struct {
	consumers  []jetstream.Consumer
	priorities []string
	weights    []int
	strict     bool
	maxWait    time.Duration
	current    []int // smooth weighted round-robin credit per class
	rotate     int
	waited     bool // the last Fetch long-polled
}

// FetcherOptions configure a Fetcher.
type FetcherOptions struct {
	// Priorities name the consumers' priorities, in the same order.
	Priorities []string
	// Weights are the priorities' weights (default 1 each).
	Weights []int
	// Strict fills a fetch from the first priority that has tasks; otherwise
	// the slots are shared by weight.
	Strict bool
	// MaxWait bounds how long Fetch waits when no task is available.
	// Default 1s. A drain waits up to this long for the last fetch.
	MaxWait time.Duration
}

// NewFetcher returns a fetcher over consumers (one per priority, as
// returned by Ensure).
func NewFetcher(consumers []jetstream.Consumer, opts FetcherOptions) (*Fetcher, error) {
	if len(consumers) == 0 || len(consumers) != len(opts.Priorities) {
		return nil, fmt.Errorf("queue: %d consumers for %d priorities", len(consumers), len(opts.Priorities))
	}
	weights := make([]int, len(consumers))
	for i := range weights {
		weights[i] = 1
		if i < len(opts.Weights) && opts.Weights[i] > 0 {
			weights[i] = opts.Weights[i]
		}
	}
	if opts.MaxWait <= 0 {
		opts.MaxWait = time.Second
	}
	return &Fetcher{
		consumers:  consumers,
		priorities: opts.Priorities,
		weights:    weights,
		strict:     opts.Strict,
		maxWait:    opts.MaxWait,
		current:    make([]int, len(consumers)),
	}, nil
}

// Fetch returns at most n deliveries. It first takes what is available at
// once (by strict order or shared by weight); when nothing is, it waits up
// to MaxWait for tasks on up to n priorities. It may return deliveries and
// an error together (one priority failed, another did not); the caller owns
// every delivery returned and must ack or hand it back.
func (f *Fetcher) Fetch(n int) ([]*Delivery, error) {
	if n <= 0 {
		return nil, nil
	}
	f.waited = false
	out, err := f.fetchNow(n)
	if len(out) > 0 || err != nil {
		return out, err
	}
	f.waited = true
	return f.fetchWait(n)
}

// Waited reports whether the last Fetch found nothing at once and
// long-polled: its duration then says how long the queue was empty, not
// how long a round trip to the server takes.
func (f *Fetcher) Waited() bool { return f.waited }

// quotas shares n slots between the priorities.
func (f *Fetcher) quotas(n int) []int {
	q := make([]int, len(f.consumers))
	if f.strict {
		q[0] = n
		return q
	}
	total := 0
	for _, w := range f.weights {
		total += w
	}
	for range n {
		best := 0
		for i, w := range f.weights {
			f.current[i] += w
			if f.current[i] > f.current[best] {
				best = i
			}
		}
		f.current[best] -= total
		q[best]++
	}
	return q
}

func (f *Fetcher) fetchNow(n int) ([]*Delivery, error) {
	var (
		out   []*Delivery
		errs  []error
		empty = make([]bool, len(f.consumers)) // returned less than asked: nothing more there now
	)
	take := func(i, batch int) {
		ds, err := f.fetch(i, batch, 0)
		out = append(out, ds...)
		if err != nil {
			errs = append(errs, err)
		}
		if len(ds) < batch {
			empty[i] = true
		}
	}
	if !f.strict {
		for i, q := range f.quotas(n) {
			if q > 0 {
				take(i, q)
			}
		}
	}
	// Strict order fills from the first priority down. Under weights, the
	// slots that empty priorities left go to the others that may have
	// more, also to those whose share rounded to zero.
	for i := range f.consumers {
		if left := n - len(out); left > 0 && !empty[i] {
			take(i, left)
		}
	}
	return out, errors.Join(errs...)
}

// fetchWait long-polls up to min(n, priorities) consumers at once, one task
// each, rotating which ones when n is smaller.
func (f *Fetcher) fetchWait(n int) ([]*Delivery, error) {
	k := min(n, len(f.consumers))
	var (
		mu   sync.Mutex
		out  []*Delivery
		errs []error
		wg   sync.WaitGroup
	)
	for j := range k {
		i := (f.rotate + j) % len(f.consumers)
		wg.Go(func() {
			ds, err := f.fetch(i, 1, f.maxWait)
			mu.Lock()
			defer mu.Unlock()
			out = append(out, ds...)
			if err != nil {
				errs = append(errs, err)
			}
		})
	}
	wg.Wait()
	f.rotate = (f.rotate + k) % len(f.consumers)
	return out, errors.Join(errs...)
}

// fetch pulls up to batch tasks from consumer i, without waiting when wait
// is zero.
func (f *Fetcher) fetch(i, batch int, wait time.Duration) ([]*Delivery, error) {
	var (
		b   jetstream.MessageBatch
		err error
	)
	if wait == 0 {
		b, err = f.consumers[i].FetchNoWait(batch)
	} else {
		b, err = f.consumers[i].Fetch(batch, jetstream.FetchMaxWait(wait))
	}
	if err != nil {
		return nil, fmt.Errorf("queue: fetch from %s: %w", f.priorities[i], err)
	}
	var (
		out  []*Delivery
		errs []error
	)
	for m := range b.Messages() {
		d, err := NewDelivery(m, i, f.priorities[i])
		if err != nil {
			// Not a stream message; nothing to ack.
			errs = append(errs, err)
			continue
		}
		out = append(out, d)
	}
	if err := b.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) {
		errs = append(errs, fmt.Errorf("queue: fetch from %s: %w", f.priorities[i], err))
	}
	return out, errors.Join(errs...)
}
