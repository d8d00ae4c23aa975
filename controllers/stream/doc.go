// Package stream is the operator's side of the queue: it provisions each
// LoopDeployment's JetStream streams, consumers and bucket (the layout of
// package worker/queue, with the LoopDeployment recorded as the owner),
// moves the tasks of a removed priority class or a renamed stream, reads
// the backlog on an interval, and deletes the queue when a LoopDeployment
// with deletionPolicy Delete goes.
//
// The Poller runs beside the reconciler, never inside a reconcile: a NATS
// server that does not answer slows the poll of its own LoopDeployments,
// not the drains of every other one. The reconciler reads the latest
// Observation without waiting, and the Poller wakes it when an observation
// changes in a way it acts on (see Material).
package stream
