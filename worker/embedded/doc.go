// Package embedded runs a real NATS server with JetStream inside the
// process: for a worker's standalone mode, where a developer runs handlers
// without a cluster, and for tests. It is the actual nats-server, not a
// mock; only the network hop is local.
package embedded
