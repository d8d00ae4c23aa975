// Package localcluster runs a real Kubernetes control plane on loopback, as
// child processes, for end-to-end tests and the local demo on machines with
// no container engine.
//
// Start launches, from the binaries that hack/kube-bins.sh caches (found
// through internal/testenv): etcd with a temporary data folder, kube-apiserver
// with certificates generated in Go (a CA, a serving certificate, a
// service-account signing key pair and client certificates),
// kube-controller-manager and kube-scheduler. It waits for each component to
// be healthy, writes an admin kubeconfig and returns a *rest.Config for the
// admin user (group system:masters). Every process writes its output to a log
// file in the run folder; Stop ends them all (SIGTERM, then SIGKILL after a
// timeout) and removes the folder unless asked to keep it.
//
// Nothing here runs containers: pods bound to a node are run by the
// test-only node agent in internal/nodeagent. StartNATS adds a NATS server with
// JetStream, a nats-server process (the binary hack/kube-bins.sh builds),
// whose store lives in the run folder and survives Restart.
// StartNATSCluster (and StartNATSClusterForTest) starts a JetStream cluster
// of such processes on loopback, routed to each other, each with its own
// store; a node can be killed and started again on the same ports and store.
//
// This is test infrastructure. It trades every production concern (high
// availability, durable storage, security beyond loopback) for start-up
// speed.
package localcluster
