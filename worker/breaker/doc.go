// Package breaker implements a circuit breaker per task kind.
//
// A kind's breaker starts Closed: its tasks run. After FailureThreshold
// consecutive failures it opens: Allow refuses the kind for Cooldown and
// tells the caller how long to wait (the worker hands such tasks back to the
// queue with that delay). When the cooldown has passed the breaker is
// HalfOpen and lets up to HalfOpenProbes tasks through; the first probe that
// succeeds closes it, a probe that fails opens it for another cooldown.
//
// Time comes from an injected clock (Options.Now), so tests move it by hand.
package breaker
