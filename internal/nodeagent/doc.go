// Package nodeagent is a TEST-ONLY stand-in for a kubelet. It exists so that
// the end-to-end tests and the local demo can run pods on a real control
// plane (internal/localcluster) on machines with no container runtime. Never use
// it for anything else: it runs pod containers as plain local processes,
// with no isolation, no images, no volumes and no resource limits.
//
// An Agent registers one or more Nodes (Ready, with capacity, allocatable
// and the address 127.0.0.1), renews each Node's Lease in kube-node-lease
// and keeps the Ready condition's heartbeat fresh, so that the
// controller-manager's node lifecycle controller never taints the nodes or
// evicts their pods.
//
// For each pod bound to one of its nodes it runs one container, the one
// named "worker" or else the first, as a local process: the image is mapped
// to a local binary through Options.Images (an unknown image fails the pod
// with reason UnknownImage). The process gets the container's command and
// arguments, the pod's environment (values, downward-API field references,
// config map and secret keys, $(VAR) expansion), a loopback admin port of its
// own in ADMIN_ADDR (the container port named "admin"
// maps to it), and a kubeconfig in KUBECONFIG that authenticates with a
// token minted through the TokenRequest API for the pod's service account,
// so that RBAC applies as it would in a real cluster. Its output goes to a log file in the run
// folder.
//
// Like a kubelet, the agent reports the pod's phase, pod and host IPs,
// container statuses (state, last state, restart count, readiness) and the
// PodScheduled, PodReadyToStartContainers, Initialized, ContainersReady and
// Ready conditions; readiness comes from the container's readiness probe
// (HTTP GET or TCP, with its delay, period, timeout and thresholds) and
// honours readiness gates; a failing liveness probe restarts the process.
// Conditions it does not own are never touched.
// It restarts exited processes per the restart policy with a back-off and a
// restart count. When a pod is deleted gracefully it sends SIGTERM to the
// process group, waits up to the deletion grace period, sends SIGKILL, and
// then deletes the pod with grace period 0 and a UID precondition, so
// evictions (kubectl drain with a PodDisruptionBudget) work as on a real
// node. Agent.Kill sends SIGKILL to a pod's process, for crash tests.
//
// Not done: startup probes, exec and gRPC probes, init containers (they
// are reported as completed without running), other containers than the one
// it runs (reported running and ready without running), volumes, resource
// limits, logs/exec/port-forward through the apiserver, and pod networking
// (every pod's IP is 127.0.0.1).
package nodeagent
