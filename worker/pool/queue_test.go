package pool

import (
	"testing"
)

// FuzzQueue drives the scheduling queue with random pushes, pops and
// releases and checks its invariants against a plain model: a pop returns a
// task exactly when some queued task may run, the task is the oldest
// runnable one of its class, Strict never skips a class with a runnable
// task, and no kind ever exceeds its limit.
func FuzzQueue(f *testing.F) {
	f.Add([]byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}, false)
	f.Add([]byte{0x10, 0x21, 0x32, 0x03, 0x03, 0x44, 0x03, 0x55, 0x03}, true)
	f.Fuzz(func(t *testing.T, ops []byte, strict bool) {
		limits := map[string]int{"a": 1, "b": 2}
		kinds := []string{"a", "b", "c"}
		q := newQueue[int]([]int{3, 2, 1}, strict, limits)
		type item struct {
			id, class int
			kind      string
		}
		model := make([][]item, 3)
		running := map[string]int{}
		var held []entry[int] // popped tasks not yet released
		next := 0
		runnable := func(kind string) bool {
			l, ok := limits[kind]
			return !ok || running[kind] < l
		}
		for _, op := range ops {
			switch op % 4 {
			case 0, 1: // push
				class := int(op>>2) % 3
				kind := kinds[int(op>>4)%3]
				q.push(entry[int]{ks: q.kind(kind), class: class, value: next})
				model[class] = append(model[class], item{next, class, kind})
				next++
			case 2: // pop
				e, ok := q.pop()
				firstRunnable := -1
				for c := range model {
					for _, it := range model[c] {
						if runnable(it.kind) {
							firstRunnable = c
							break
						}
					}
					if firstRunnable >= 0 {
						break
					}
				}
				if ok != (firstRunnable >= 0) {
					t.Fatalf("pop ok = %v, but a runnable task exists = %v", ok, firstRunnable >= 0)
				}
				if !ok {
					continue
				}
				if strict && e.class != firstRunnable {
					t.Fatalf("strict pop took class %d while class %d had a runnable task", e.class, firstRunnable)
				}
				idx := -1
				for i, it := range model[e.class] {
					if runnable(it.kind) {
						idx = i
						break
					}
				}
				if idx < 0 || model[e.class][idx].id != e.value {
					t.Fatalf("pop returned task %d of class %d, want the oldest runnable one (index %d in %v)", e.value, e.class, idx, model[e.class])
				}
				model[e.class] = append(model[e.class][:idx], model[e.class][idx+1:]...)
				running[e.ks.name]++
				if l, ok := limits[e.ks.name]; ok && running[e.ks.name] > l {
					t.Fatalf("kind %s runs %d tasks, limit %d", e.ks.name, running[e.ks.name], l)
				}
				held = append(held, e)
			case 3: // release the oldest running task
				if len(held) == 0 {
					continue
				}
				e := held[0]
				held = held[1:]
				q.release(e.ks)
				running[e.ks.name]--
			}
			total := 0
			for _, m := range model {
				total += len(m)
			}
			if q.len() != total {
				t.Fatalf("queue length %d, model %d", q.len(), total)
			}
		}
		total := 0
		for _, m := range model {
			total += len(m)
		}
		if rest := q.removeAll(); len(rest) != total || q.len() != 0 {
			t.Fatalf("removeAll returned %d tasks and left %d, want %d and 0", len(rest), q.len(), total)
		}
	})
}
