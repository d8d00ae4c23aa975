#!/usr/bin/env bash
# make demo: the operator at work on a local control plane, with no Docker.
# It builds what is missing, starts etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler, a NATS JetStream server,
# a test-only node agent that runs worker pods as local processes, and the
# operator; applies a LoopDeployment of 4 workers; submits 3,000 tasks;
# scales to 1 while they run; and ends with one line: submitted, completed,
# dead-lettered, lost (must be 0), duplicates, elapsed. The cluster keeps
# running for kubectl; `make demo-down` stops it.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
dir=${DEMO_DIR:-$root/bin/demo}
tasks=${DEMO_TASKS:-3000}
started=$SECONDS

step() { printf '\n\033[1m==> [%3ss] %s\033[0m\n' "$((SECONDS - started))" "$*"; }

step "1/7 control plane: built once from source into the cache (10-15 minutes the first time)"
bash hack/kube-bins.sh >/dev/null
export KUBEBUILDER_ASSETS; KUBEBUILDER_ASSETS=$(bash hack/kube-bins.sh --print-dir)

step "2/7 building manager, loop-worker, kubectl-loops and localcluster into bin/"
for cmd in manager loop-worker kubectl-loops; do
  go build -o "bin/$cmd" "./cmd/$cmd"
done
go build -o bin/localcluster ./internal/localcluster/cmd/localcluster

step "3/7 starting the local cluster (3 nodes run by the test-only node agent), NATS and the operator"
bin/localcluster down --dir "$dir" >/dev/null 2>&1 || true
bin/localcluster up --detach --dir "$dir" --nodes 3 --crds config/crd/bases \
  --image "loop-worker=$root/bin/loop-worker" \
  --process "manager=$root/bin/manager --leader-elect=false --metrics-secure=false --metrics-bind-address=127.0.0.1:18080 --health-probe-bind-address=127.0.0.1:18081" >/dev/null
eval "$(bin/localcluster env --dir "$dir")" # KUBECONFIG and NATS_URL
export PATH="$root/bin:$PATH"                # so that `kubectl loops` finds the plugin
kubectl get nodes

step "4/7 applying a LoopDeployment of 4 workers (hack/demo/loopdeployment.yaml)"
sed "s|@NATS_URL@|$NATS_URL|" hack/demo/loopdeployment.yaml | kubectl apply -f -
kubectl wait ld/demo --for=jsonpath='{.status.availableReplicas}'=4 --timeout=3m
kubectl get ld,pods

step "5/7 submitting $tasks tasks of 200 ms"
run=demo-$(date +%s)
kubectl loops submit demo --kind sleep --payload '{"ms": 200}' --count "$tasks" --id "$run"
kubectl loops wait demo --id "$run" --count "$tasks" --timeout 15m >"$dir/wait.out" 2>"$dir/wait.err" &
waiter=$!

step "6/7 scaling 4 -> 1 while they run: each pod that goes is drained first"
sleep 5 # let the four workers get going
kubectl scale ld/demo --replicas=1
while kill -0 "$waiter" 2>/dev/null; do
  printf '\n--- %s\n' "$(date +%T)"
  kubectl get ld,pods 2>&1 || true
  kubectl loops status demo 2>/dev/null | sed -n '/^Pods:/,$p' | tail -n +2 || true
  sleep 3
done
rc=0
wait "$waiter" || rc=$?

step "7/7 result"
summary=$(grep '^summary:' "$dir/wait.out" || true)
if [[ -z $summary ]]; then
  cat "$dir/wait.out" "$dir/wait.err"
  echo "the wait ended without a summary (exit $rc)"
  exit 1
fi
value() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$summary"; }
lost=$(value open)
printf '\nsubmitted %s, completed %s, dead-lettered %s, lost %s, duplicates %s, elapsed %ss\n' \
  "$(value submitted)" "$(value completed)" "$(value dead-lettered)" "$lost" "$(value duplicates)" "$((SECONDS - started))"
kubectl get ld
cat <<MSG

The cluster is still running. To look around:
  export KUBECONFIG=$KUBECONFIG
  export PATH=$root/bin:\$PATH
  kubectl get ld,pods
  kubectl loops status demo
Stop it with: make demo-down
MSG
if [[ $rc -ne 0 || $lost != 0 ]]; then
  echo "the demo lost tasks or failed (exit $rc)"
  exit 1
fi
