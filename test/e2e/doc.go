// Package e2e is the end-to-end suite: a real control plane, worker pods,
// a NATS JetStream server, and the real manager and loop-worker built from
// this tree. Every scenario submits tasks, makes pods come and go, and
// asserts from the loop's result and dead-letter streams (package ledger)
// that no task was lost.
//
// It is behind the e2e build tag and runs in one of two modes (see Suite):
// `make test-e2e` starts everything on this machine with no Docker (a
// local control plane, the test-only node agent running worker pods as
// processes, nats-server, the manager as a process); `make test-e2e-kind`
// (tags e2e,kind) runs the same scenarios against a kind cluster prepared
// by `make kind-create kind-load deploy`.
package e2e
