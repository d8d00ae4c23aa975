// Package pool runs tasks on a bounded, dynamically sized set of goroutines
// with priority classes, per-kind concurrency limits, per-task timeouts and
// panic recovery.
//
// A [Pool] keeps between MinWorkers and MaxWorkers goroutines. A task that
// arrives while no goroutine is idle starts a new one (up to MaxWorkers); a
// goroutine that stays idle for IdleTimeout exits while more than MinWorkers
// remain. Tasks wait in one FIFO queue per priority class. When a goroutine is
// free it picks the next task either by strict priority (the first class with
// a runnable task wins) or by smooth weighted round-robin, where under
// contention every class gets its weight's share of the picks and no class
// starves.
//
// A kind with a concurrency limit never runs more tasks at once than the
// limit. A task whose kind is at its limit is skipped, not waited on: the
// scheduler takes the next runnable task of the same class (or of the next
// class), so a saturated kind never blocks other kinds.
//
// A handler that panics fails only its own task; the error is a
// [*PanicError] carrying the recovered value and the stack. A handler that
// runs past TaskTimeout sees its context cancelled and its error wraps
// [ErrTimeout].
//
// Cost: the pool holds tasks by value in ring buffers that grow by doubling
// and are reused, and wakes idle goroutines through per-goroutine channels,
// so dispatching a task allocates nothing in the steady state unless a task
// timeout is configured (context.WithTimeout allocates). A goroutine that
// ends a task releases it and picks the next under one lock; a task handed
// to an idle goroutine is picked by TrySubmit and runs without the
// goroutine taking the lock first.
package pool
