#!/usr/bin/env bash
# The whole kind path, as a user follows the README's "On kind" and as
# .ci/run checks it (make kind-path): a new kind cluster of the local node
# image with NATS, the operator and the images loaded (nothing pulled), the
# README's sample fed 1000 tasks by `kubectl loops submit --wait` through
# its port-forward, the end-to-end scenarios of make test-e2e-kind (those
# of E2E_RUN, all when it is empty), and the cluster deleted again, also
# when a step fails.
#
# Environment (the Makefile passes them):
#   KIND_CLUSTER  the cluster's name; one of that name left by an earlier
#                 run is deleted first
#   E2E_RUN       a go test -run pattern for the scenarios; empty: all
#   KEEP_CLUSTER  1 keeps the cluster at the end, for a look after a failure
set -euo pipefail
cd "$(dirname "$0")/.."

cluster=${KIND_CLUSTER:?KIND_CLUSTER is not set: run make kind-path}
started=$SECONDS
part() { printf '[kind-path %s, +%ss] %s\n' "$(date +%H:%M:%S)" "$((SECONDS - started))" "$*"; }

# The cluster's own kubeconfig (kind create writes it, kind delete empties
# it), so that nothing here reads or changes the user's current context.
mkdir -p bin
export KUBECONFIG=$PWD/bin/kind-$cluster.kubeconfig

delete() {
  if [[ ${KEEP_CLUSTER:-0} == 1 ]]; then
    part "keeping the cluster $cluster (KEEP_CLUSTER=1); make kind-delete KIND_CLUSTER=$cluster removes it"
    return
  fi
  part "deleting the cluster $cluster"
  make --no-print-directory kind-delete KIND_CLUSTER="$cluster" || true
}

part "Docker (make docker-up)"
make --no-print-directory docker-up

part "a cluster $cluster left by an earlier run goes first"
make --no-print-directory kind-delete KIND_CLUSTER="$cluster"
trap delete EXIT

part "the cluster, NATS and the operator (make kind-create kind-load deploy)"
make --no-print-directory kind-create kind-load deploy KIND_CLUSTER="$cluster"

part "the README's sample: 1000 tasks through kubectl loops submit --wait (make install-plugin)"
make --no-print-directory install-plugin
PATH="$(go env GOPATH)/bin:$PATH"
sed 's|loop-worker:latest|loop-worker:dev|' config/samples/loops_v1alpha1_loopdeployment.yaml | kubectl apply -f -
kubectl wait --for=condition=QueueReady --timeout=3m loopdeployment/thumbnails
kubectl wait --for=condition=Available --timeout=3m loopdeployment/thumbnails
kubectl loops submit thumbnails --kind sleep --payload '{"ms": 200}' --count 1000 --wait --timeout 5m
kubectl loops status thumbnails
kubectl delete loopdeployment thumbnails --wait --timeout=5m

part "the end-to-end scenarios (make test-e2e-kind${E2E_RUN:+ E2E_RUN=$E2E_RUN})"
make --no-print-directory test-e2e-kind KIND_CLUSTER="$cluster" KIND_KUBECONFIG="$KUBECONFIG" E2E_RUN="${E2E_RUN:-}"

part "passed"
