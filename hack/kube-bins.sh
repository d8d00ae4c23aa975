#!/usr/bin/env bash
# kube-bins.sh builds a real Kubernetes control plane from the Go module proxy
# into a versioned cache folder outside the repository, for envtest
# (KUBEBUILDER_ASSETS) and the local end-to-end cluster:
#
#   kube-apiserver, kube-controller-manager, kube-scheduler  (k8s.io/kubernetes)
#   etcd                                                     (go.etcd.io/etcd/server/v3)
#   kwok and its stage file                                  (sigs.k8s.io/kwok)
#   nats-server, for the local cluster's queue               (github.com/nats-io/nats-server/v2)
#
# It is idempotent: a binary that is already in the cache is not built again.
# Each binary is linked to a temporary name and renamed into place only when
# the build succeeded, so a half-written file never passes for a finished one.
#
# Environment:
#   TENIRE_CACHE_DIR  root of the cache (default ${XDG_CACHE_HOME:-$HOME/.cache}/tenire)
#   KUBE_VERSION, ETCD_VERSION, KWOK_VERSION, NATS_VERSION  versions to build
#
# Usage: hack/kube-bins.sh [--print-dir | --node]
#   --print-dir  print the folder (the KUBEBUILDER_ASSETS value) and build nothing
#   --node       build, besides, a node's binaries (kubelet, kubeadm, kubectl,
#                kube-proxy) into the same folder, for the kind node image
#                (hack/kind-node)
#
# The last line printed is the folder to use as KUBEBUILDER_ASSETS.
set -euo pipefail

KUBE_VERSION=${KUBE_VERSION:-v1.37.2}
ETCD_VERSION=${ETCD_VERSION:-v3.6.16}
KWOK_VERSION=${KWOK_VERSION:-v0.8.0}
# nats-server: the version go.mod requires, so that the tests' servers
# (processes) and the embedded ones are the same server.
NATS_VERSION=${NATS_VERSION:-$(awk '$1 == "github.com/nats-io/nats-server/v2" { print $2 }' "$(dirname "$0")/../go.mod")}
CACHE_ROOT=${TENIRE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/tenire}
BIN_DIR="$CACHE_ROOT/kube-bins/k8s-${KUBE_VERSION}_etcd-${ETCD_VERSION}_kwok-${KWOK_VERSION}"
SRC_DIR="$CACHE_ROOT/kube-src"

if [[ ${1:-} == --print-dir ]]; then
  echo "$BIN_DIR"
  exit 0
fi
node=0
[[ ${1:-} == --node ]] && node=1

log() { printf '[kube-bins %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

mkdir -p "$BIN_DIR" "$SRC_DIR"
export GOFLAGS=-mod=mod
export CGO_ENABLED=0

# kube_module writes a module that requires k8s.io/kubernetes and pins every
# staging module (listed as v0.0.0 in its go.mod) to the matching v0 release.
kube_module() {
  local dir="$SRC_DIR/kubernetes-$KUBE_VERSION"
  if [[ ! -f $dir/.ready ]]; then
    log "preparing a module for k8s.io/kubernetes $KUBE_VERSION"
    rm -rf "$dir" && mkdir -p "$dir"
    local gomod staging="v0.${KUBE_VERSION#v1.}"
    gomod=$(cd "$dir" && GOFLAGS= go mod download -json "k8s.io/kubernetes@$KUBE_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
    {
      echo "module tenire.local/kube-bins"
      echo
      echo "go 1.26"
      echo
      echo "require k8s.io/kubernetes $KUBE_VERSION"
      echo
      grep -E '^\s*k8s\.io/[a-z0-9-]+ v0\.0\.0\s*(//.*)?$' "$gomod" | awk -v v="$staging" '{print "replace " $1 " => " $1 " " v}' | sort -u
    } >"$dir/go.mod.tmp"
    mv "$dir/go.mod.tmp" "$dir/go.mod"
    log "  pinned $(grep -c '^replace' "$dir/go.mod") staging modules to $staging"
    touch "$dir/.ready"
  fi
  echo "$dir"
}

# shellcheck source=hack/go-build.sh
source "$(dirname "$0")/go-build.sh"
partial=""
trap 'if [[ -n $partial ]]; then rm -f "$partial"; fi' EXIT
# plain_module writes a module that requires one module at one version.
plain_module() { go_module "$1" "$2" "$SRC_DIR"; }
# build NAME MODULE_DIR PACKAGE LDFLAGS: build one binary unless it is cached.
build() { go_build_once "$BIN_DIR/$1" "$2" "$3" "$4"; }

total_start=$SECONDS
kver="-s -w"
for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  kver+=" -X $p.gitVersion=$KUBE_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$(cut -d. -f2 <<<"$KUBE_VERSION") -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
done

kube_cmds=(kube-scheduler kube-controller-manager kube-apiserver)
((node)) && kube_cmds+=(kubelet kubeadm kubectl kube-proxy)
need_kube=0
for b in "${kube_cmds[@]}"; do [[ -x $BIN_DIR/$b ]] || need_kube=1; done
if ((need_kube)); then
  kdir=$(kube_module)
  for b in "${kube_cmds[@]}"; do
    build "$b" "$kdir" "k8s.io/kubernetes/cmd/$b" "$kver"
  done
else
  for b in "${kube_cmds[@]}"; do log "$b: cached"; done
fi

if [[ ! -x $BIN_DIR/etcd ]]; then
  edir=$(plain_module go.etcd.io/etcd/server/v3 "$ETCD_VERSION")
  build etcd "$edir" go.etcd.io/etcd/server/v3 "-s -w"
else
  log "etcd: cached"
fi

if [[ ! -x $BIN_DIR/kwok || ! -f $BIN_DIR/kwok-stages.yaml ]]; then
  wdir=$(plain_module sigs.k8s.io/kwok "$KWOK_VERSION")
  build kwok "$wdir" sigs.k8s.io/kwok/cmd/kwok "-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=$KWOK_VERSION"
  kwok_src=$(cd "$wdir" && go list -m -f '{{.Dir}}' sigs.k8s.io/kwok)
  # The fast node and pod stages: nodes become Ready, pods Running at once.
  partial="$BIN_DIR/.kwok-stages.yaml.tmp.$$"
  first=1
  for f in "$kwok_src"/kustomize/stage/node/fast/*.yaml "$kwok_src"/kustomize/stage/pod/fast/*.yaml; do
    [[ $f == */kustomization.yaml ]] && continue
    ((first)) || echo '---'
    first=0
    cat "$f"
  done >"$partial"
  mv -f "$partial" "$BIN_DIR/kwok-stages.yaml"
  partial=""
  log "kwok-stages.yaml: written from $KWOK_VERSION's kustomize/stage"
else
  log "kwok: cached"
fi

# nats-server is not in the folder's name: it is rebuilt when its version
# differs from NATS_VERSION.
if [[ ! -x $BIN_DIR/nats-server ]] || ! "$BIN_DIR/nats-server" --version 2>/dev/null | grep -q "${NATS_VERSION#v}"; then
  rm -f "$BIN_DIR/nats-server"
  ndir=$(plain_module github.com/nats-io/nats-server/v2 "$NATS_VERSION")
  build nats-server "$ndir" github.com/nats-io/nats-server/v2 "-s -w"
else
  log "nats-server: cached"
fi

log "$go_built binaries built, $((SECONDS - total_start))s in all; KUBEBUILDER_ASSETS is:"
"$BIN_DIR/kube-apiserver" --version >&2
echo "$BIN_DIR"
