// Package loop is the worker's headless event loop: it pulls tasks from a
// NATS JetStream work queue, runs them on a bounded priority pool with
// per-kind limits, timeouts, retries, circuit breakers and checkpoints, and
// drains without losing a task.
//
// A user builds a worker by creating a Loop from a Config, registering one
// Handler per task kind and calling Run:
//
//	l, err := loop.New(cfg)
//	l.Handle("resize", resizeImage)
//	err = l.Run(ctx)
//
// Handlers are registered on a Mux, which routes by kind through
// Middleware (Loop.Handle and Loop.Use are sugar for the loop's Mux); the
// loop adds its own middleware outermost: Recover, the duration metric,
// Logging.
//
// # Lifecycle
//
// Run moves the loop through Starting → Running → Draining → Drained →
// Stopped. Start-up is ordered: configuration, admin HTTP server, queue
// connection (streams and consumers are created or updated), pool,
// fetcher; shutdown goes the other way. A drain's DrainCause says which
// trigger started it. lifecycle.go holds the state machine.
//
// # Drain
//
// A drain starts when the Pod source reports a drain request (the
// operator's annotations on the worker's own Pod), when POST /drain is
// called, or when Run's context is cancelled (the binary cancels it on
// SIGTERM and SIGINT). The loop then stops pulling at once and turns
// /readyz false, hands back the tasks it holds but has not started, lets the
// running ones finish until the deadline, cancels what is left and hands
// it back to the queue for immediate redelivery, and reports Drained to the
// Pod source with the counts. A drain caused by the context ends Run with
// nil; any other drain leaves the loop idle in Drained until the context
// is cancelled, because a pod whose process exits would be restarted.
//
// # Outcomes
//
// Delivery is at least once. A task whose handler returns nil before its
// context ends is acked and its checkpoint deleted (with
// Config.ResultRetention set, a result record is published first; one that
// cannot be written after three tries is given up, not the task). A
// handler that returns nil after its context ended has not finished: after
// the task timeout the attempt failed, after the drain deadline the task is
// handed back. A task that fails is retried with exponential backoff and
// jitter until it has failed RetryPolicy.MaxAttempts times, then published
// with its last error to the dead-letter subject. A handler can skip the
// retries by returning an error that wraps ErrPermanent. A kind whose
// breaker is open is not run: its tasks go back to the queue with the
// breaker's remaining cooldown as delay.
//
// Hand-backs and deferrals do not count as attempts, nor do crashes: the
// loop records why a task went back (queue.DeliveryCounts) and infers the
// crashes from the server's delivery count. A task that crashed its worker
// RetryPolicy.MaxCrashes times, or was delivered more than
// RetryPolicy.MaxDeliveries times, is dead-lettered before it runs again
// (ErrDeliveryCap). A handler still running Config.StuckGrace after its
// timeout is abandoned (ErrAbandoned): its attempt failed, and its slot
// counts as stuck until it returns; a worker whose slots are all stuck is
// not ready.
//
// # Admin HTTP
//
// /healthz (the process serves), /readyz (Running, connected to NATS, not
// every slot stuck) and /metrics (Prometheus) answer everyone; /status
// (JSON) and POST /drain answer loopback clients, and others that send
// "Authorization: Bearer <Config.AdminToken>" when a token is configured.
package loop
