// Command kubectl-loops is the kubectl plugin of the Tenire loop operator,
// used as `kubectl loops`: it submits tasks to a LoopDeployment's queue,
// shows a loop's state, drains pods through the drain contract, watches a
// loop at work and inspects and requeues dead letters. `kubectl loops
// dashboard` serves all of that as a live web page on 127.0.0.1 (its
// templates and static files are embedded from the dashboard folder; see
// docs/dashboard.md).
//
// It takes kubectl's standard flags (--kubeconfig, --context, -n, …) from
// k8s.io/cli-runtime, so they behave exactly as in kubectl. It reads the
// queue's address from the LoopDeployment; when that address is
// cluster-internal and not reachable from here, it reaches NATS through the
// API server the way `kubectl port-forward` does. --nats-url overrides both.
//
// Install it with `go install ./cmd/kubectl-loops` (or `make install-plugin`)
// so that `kubectl plugin list` finds it on the PATH.
package main
