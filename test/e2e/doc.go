// Package e2e is the end-to-end suite: a real control plane (etcd,
// kube-apiserver, kube-controller-manager, kube-scheduler), the test-only
// node agent running worker pods as local processes, a NATS
// JetStream server, and the real manager and loop-worker binaries built from
// this tree. Every scenario submits tasks, makes pods come and go, and
// asserts from the loop's result and dead-letter streams (package ledger)
// that no task was lost.
//
// It is behind the e2e build tag: `make test-e2e` runs it.
package e2e
