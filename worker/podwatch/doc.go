// Package podwatch is the worker's side of the operator's drain contract
// on the Kubernetes API: it watches the worker's own Pod (by name, with a
// field selector) until the operator sets the drain annotations, and it
// reports the end of the drain as the pod condition
// loops.tenire.io/Drained=True through the pods/status subresource.
//
// A Watcher implements loop.Pod. FromEnvironment builds one from the
// downward-API variables POD_NAME and POD_NAMESPACE and the in-cluster
// configuration; outside a cluster (no POD_NAME) there is none, and the
// loop drains on signals and POST /drain only.
//
// The worker's service account needs get and watch on pods and patch on
// pods/status in its namespace.
package podwatch
