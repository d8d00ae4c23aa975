#!/usr/bin/env bash
# build.sh builds a kind node image here, without a registry: what
# `kind build node-image` would pull (a base image, pause, etcd, CoreDNS,
# the CNI's image) is built from Debian's packages and the Go module proxy
# instead, the same way hack/kube-bins.sh builds the control plane.
#
#   root file system   Debian ($DEBIAN_SUITE, mmdebstrap --variant=minbase):
#                      systemd, containerd, runc, CNI plugins, iptables, ...
#   kind's base files  the entrypoint, the systemd units, the containerd
#                      config: from sigs.k8s.io/kind@$KIND_VERSION's module,
#                      read at build time, never copied into this repository
#   node binaries      kubelet, kubeadm, kubectl (kube-bins.sh --node), crictl
#   images             kube-apiserver, kube-controller-manager,
#                      kube-scheduler, kube-proxy, etcd, CoreDNS and pause,
#                      at the versions kubeadm asks for, and kind's storage
#                      provisioner (rancher's local-path-provisioner), assembled by
#                      hack/kind-node into docker archives that each node
#                      imports into containerd's k8s.io namespace at boot
#
# Everything is cached under $CACHE_ROOT/kind-node by version, and the image
# archive by a hash of this script, hack/kind-node's program and manifests:
# a second run only loads it (docs/kind.md has the times). The image is
# tagged $KIND_NODE_IMAGE and loaded into the Docker daemon.
#
# Usage: hack/kind-node/build.sh [--print-image]
set -euo pipefail
cd "$(dirname "$0")/../.."

KIND_VERSION=${KIND_VERSION:-v0.33.0}
KUBE_VERSION=${KUBE_VERSION:-v1.37.2}
CRICTL_VERSION=${CRICTL_VERSION:-v1.37.0}
# kind v0.33.0 ships local-path-provisioner v0.0.34, which the module proxy
# refuses; v0.0.33 is the newest it serves.
LOCAL_PATH_VERSION=${LOCAL_PATH_VERSION:-v0.0.33}
DEBIAN_SUITE=${DEBIAN_SUITE:-bookworm}
CACHE_ROOT=${TENIRE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/tenire}
KIND_NODE_IMAGE=${KIND_NODE_IMAGE:-tenire.local/kind-node:$KUBE_VERSION}
export KUBE_VERSION

if [[ ${1:-} == --print-image ]]; then
  echo "$KIND_NODE_IMAGE"
  exit 0
fi

log() { printf '[kind-node %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
started=$SECONDS
sudo=""; [[ $(id -u) -ne 0 ]] && sudo="sudo"

# The node image's recipe: a change to this script or to hack/kind-node
# makes a new one.
recipe=$(cat hack/kind-node/build.sh hack/kind-node/*.go hack/kind-node/*.yaml | sha256sum | cut -c1-12)
NODE_CACHE="$CACHE_ROOT/kind-node/k8s-$KUBE_VERSION-kind-$KIND_VERSION-$DEBIAN_SUITE"
mkdir -p "$NODE_CACHE"
archive="$NODE_CACHE/node-$recipe.tar"

if [[ -f $archive ]]; then
  if [[ $(docker image inspect --format '{{index .Config.Labels "tenire.kind-node.recipe"}}' "$KIND_NODE_IMAGE" 2>/dev/null) != "$recipe" ]]; then
    log "loading the cached node image $archive"
    docker load -i "$archive" >&2
  fi
  log "$KIND_NODE_IMAGE is ready ($((SECONDS - started))s)"
  echo "$KIND_NODE_IMAGE"
  exit 0
fi

# shellcheck source=hack/go-build.sh
source hack/go-build.sh
export GOFLAGS=-mod=mod CGO_ENABLED=0
# go_build NAME MODULE VERSION PACKAGE LDFLAGS: build one binary of a module
# into the node cache, once, and print its path.
go_build() {
  local out="$NODE_CACHE/bin/$1-$3" dir
  dir=$(go_module "$2" "$3" "$CACHE_ROOT/kube-src")
  go_build_once "$out" "$dir" "$4" "$5"
  echo "$out"
}

# 1. The node's Kubernetes binaries, from the same source as the control
# plane of the e2e suite.
bins=$(bash hack/kube-bins.sh --node | tail -1)

# 2. What kubeadm will ask for.
mapfile -t wanted < <("$bins/kubeadm" config images list --kubernetes-version "$KUBE_VERSION" 2>/dev/null)
image_of() { printf '%s\n' "${wanted[@]}" | grep -E "/$1:" | head -1; }
etcd_image=$(image_of etcd)
coredns_image=$(image_of coredns)
pause_image=$(image_of pause)
[[ -n $etcd_image && -n $coredns_image && -n $pause_image ]] || { log "kubeadm config images list gave ${wanted[*]}"; exit 1; }
etcd_version=v${etcd_image##*:}
etcd_version=${etcd_version%-*}
coredns_version=${coredns_image##*:}
pause_version=${pause_image##*:}
log "kubeadm $KUBE_VERSION asks for etcd $etcd_version, CoreDNS $coredns_version, pause $pause_version"

etcd=$(go_build etcd go.etcd.io/etcd/server/v3 "$etcd_version" go.etcd.io/etcd/server/v3 "-s -w")
coredns=$(go_build coredns github.com/coredns/coredns "$coredns_version" github.com/coredns/coredns "-s -w")
local_path=$(go_build local-path-provisioner github.com/rancher/local-path-provisioner "$LOCAL_PATH_VERSION" github.com/rancher/local-path-provisioner "-s -w -X main.VERSION=$LOCAL_PATH_VERSION")
crictl=$(go_build crictl sigs.k8s.io/cri-tools "$CRICTL_VERSION" sigs.k8s.io/cri-tools/cmd/crictl "-s -w -X sigs.k8s.io/cri-tools/pkg/version.Version=$CRICTL_VERSION")

kube_src=$(cd "$CACHE_ROOT/kube-src/kubernetes-$KUBE_VERSION" && GOFLAGS=-mod=mod go list -m -f '{{.Dir}}' k8s.io/kubernetes)
pause="$NODE_CACHE/bin/pause-$pause_version"
if [[ ! -x $pause ]]; then
  log "pause: compiling build/pause/linux/pause.c of k8s.io/kubernetes $KUBE_VERSION"
  gcc -Os -Wall -Werror -static -DVERSION="v$pause_version" -o "$pause.tmp.$$" "$kube_src/build/pause/linux/pause.c"
  strip "$pause.tmp.$$"
  mv -f "$pause.tmp.$$" "$pause"
fi

kind_src=$(cd "$CACHE_ROOT/kube-src/kubernetes-$KUBE_VERSION" && GOFLAGS= go mod download -json "sigs.k8s.io/kind@$KIND_VERSION" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
[[ -d $kind_src/images/base/files ]] || { log "sigs.k8s.io/kind@$KIND_VERSION has no images/base/files"; exit 1; }

# 3. The root file system.
packages=(systemd systemd-sysv dbus containerd runc containernetworking-plugins
  conntrack iptables nftables iproute2 ethtool socat util-linux mount kmod
  libseccomp2 pigz bash ca-certificates curl jq procps)
rootfs="$NODE_CACHE/rootfs-$(printf '%s\n' "${packages[@]}" | sha256sum | cut -c1-12).tar"
if [[ ! -f $rootfs ]]; then
  if ! command -v mmdebstrap >/dev/null; then
    log "installing Debian's mmdebstrap"
    $sudo apt-get update -qq
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mmdebstrap >/dev/null
  fi
  log "root file system: mmdebstrap $DEBIAN_SUITE (minbase and ${#packages[@]} packages)"
  # kind's base image clean-up: no services but those the node enables,
  # no kernel messages in the journal, systemd as /sbin/init.
  $sudo mmdebstrap --variant=minbase --format=tar --include="$(IFS=,; echo "${packages[*]}")" \
    --customize-hook='chroot "$1" sh -euc "
      find /lib/systemd/system/sysinit.target.wants/ -name systemd-tmpfiles-setup.service -delete
      rm -f /lib/systemd/system/multi-user.target.wants/* /etc/systemd/system/*.wants/*
      rm -f /lib/systemd/system/local-fs.target.wants/* /lib/systemd/system/basic.target.wants/*
      rm -f /lib/systemd/system/sockets.target.wants/*udev* /lib/systemd/system/sockets.target.wants/*initctl*
      echo ReadKMsg=no >> /etc/systemd/journald.conf
      ln -sf /usr/lib/systemd/systemd /sbin/init
      systemctl mask systemd-binfmt.service
      mkdir -p /opt/cni && ln -s /usr/lib/cni /opt/cni/bin
      mkdir -p /etc/kubernetes/manifests
      rm -rf /var/lib/apt/lists/* /var/cache/apt/*
    "' \
    "$DEBIAN_SUITE" "$rootfs.tmp"
  mv -f "$rootfs.tmp" "$rootfs"
  log "root file system: $(du -h "$rootfs" | cut -f1)"
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
GOFLAGS= CGO_ENABLED=0 go build -o "$work/kindnode" ./hack/kind-node
kindnode() { "$work/kindnode" "$@" >&2; }

# 4. The images the node's containerd holds, as docker archives.
images="$work/stage/kind/images"
mkdir -p "$images"
# one_binary NAME IMAGE BINARY PATH [kindnode flags]: an image of one binary.
one_binary() {
  local name=$1 image=$2 binary=$3 path=$4
  shift 4
  mkdir -p "$work/$name$(dirname "$path")"
  cp "$binary" "$work/$name$path"
  chmod 0755 "$work/$name$path"
  kindnode --tag "$image" --out "$images/$name.tar" --layer-dir "$work/$name" --entrypoint "$path" "$@"
}
for b in kube-apiserver kube-controller-manager kube-scheduler; do
  one_binary "$b" "registry.k8s.io/$b:$KUBE_VERSION" "$bins/$b" "/usr/local/bin/$b"
done
# kube-proxy programs iptables, and the CNI's DaemonSet (cni.yaml) runs
# ip, curl and jq: both run on the node's own root file system, one image
# under two names (the DaemonSet's runs sh, not kube-proxy).
mkdir -p "$work/kube-proxy/usr/local/bin"
cp "$bins/kube-proxy" "$work/kube-proxy/usr/local/bin/"
kindnode --tag "registry.k8s.io/kube-proxy:$KUBE_VERSION" --tag "tenire.local/kind-node-tools:$recipe" \
  --out "$images/kube-proxy.tar" --layer-tar "$rootfs" --layer-dir "$work/kube-proxy" --entrypoint /usr/local/bin/kube-proxy
one_binary etcd "$etcd_image" "$etcd" /usr/local/bin/etcd
one_binary coredns "$coredns_image" "$coredns" /coredns
one_binary pause "$pause_image" "$pause" /pause
local_path_image="tenire.local/local-path-provisioner:$LOCAL_PATH_VERSION"
one_binary local-path-provisioner "$local_path_image" "$local_path" /usr/local/bin/local-path-provisioner

# 5. The node's own files on top of the root file system.
stage="$work/stage"
cp -r "$kind_src/images/base/files/." "$stage/"
chmod -R u+w "$stage"
find "$stage" -type d -exec chmod 0755 {} +
find "$stage" -type f -exec chmod 0644 {} +
chmod 0755 "$stage"/usr/local/bin/* "$stage"/kind/bin/*
mkdir -p "$stage/usr/bin" "$stage/usr/local/bin"
for b in kubelet kubeadm kubectl; do install -m 0755 "$bins/$b" "$stage/usr/bin/$b"; done
install -m 0755 "$crictl" "$stage/usr/local/bin/crictl"
# Debian's containerd lives in /usr/bin; kind's unit starts /usr/local/bin/containerd.
ln -s /usr/bin/containerd "$stage/usr/local/bin/containerd"
echo "$KUBE_VERSION" >"$stage/kind/version"

# containerd: the sandbox image kubeadm asks for; a container may not
# lower its OOM score below its parent's (this host's containers lack
# CAP_SYS_RESOURCE; see docs/kind.md).
sed -i -e "s|sandbox_image = .*|sandbox_image = \"$pause_image\"|" \
  -e 's|restrict_oom_score_adj = false|restrict_oom_score_adj = true|' "$stage/etc/containerd/config.toml"
tar -xOf "$rootfs" ./usr/bin/ctr >"$work/ctr" && chmod +x "$work/ctr"
"$work/ctr" oci spec |
  jq '.hooks.createContainer[.hooks.createContainer | length] |= . + {"path": "/kind/bin/mount-product-files.sh"}' |
  jq 'del(.process.rlimits)' >"$stage/etc/containerd/cri-base.json"
mkdir -p "$stage/etc/systemd/system/containerd.service.d"
cat >"$stage/etc/systemd/system/containerd.service.d/10-tenire.conf" <<'EOF'
# Without CAP_SYS_RESOURCE a process cannot lower its OOM score: kind's
# -999 would stop containerd from starting.
[Service]
OOMScoreAdjust=0
EOF

# The kubelet on a cgroup v1 host (Kubernetes 1.35 and later refuse cgroup
# v1 unless told).
printf 'KUBELET_EXTRA_ARGS=--runtime-cgroups=/system.slice/containerd.service --fail-cgroupv1=false\n' >"$stage/etc/default/kubelet"

# Import the images at boot, before the kubelet starts.
cat >"$stage/etc/systemd/system/tenire-import-images.service" <<'EOF'
[Unit]
Description=Import the node image's container images into containerd (k8s.io)
After=containerd.service
Requires=containerd.service
Before=kubelet.service
ConditionPathExists=!/var/lib/tenire-images-imported

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/bin/sh -euc 'for f in /kind/images/*.tar; do ctr --namespace k8s.io images import "$f"; done; touch /var/lib/tenire-images-imported'

[Install]
WantedBy=multi-user.target
EOF
wants="$stage/etc/systemd/system/multi-user.target.wants"
mkdir -p "$wants"
for unit in kubelet containerd undo-mount-hacks tenire-import-images; do
  ln -s "/etc/systemd/system/$unit.service" "$wants/$unit.service"
done

# kind applies these after kubeadm init.
mkdir -p "$stage/kind/manifests"
sed "s|TOOLS_IMAGE|tenire.local/kind-node-tools:$recipe|" hack/kind-node/cni.yaml >"$stage/kind/manifests/default-cni.yaml"
# kind's own default storage (rancher's local-path-provisioner, the
# StorageClass "standard"), with the provisioner built here and the node's
# tools image as its helper pod (which runs sh, mkdir and rm).
"$work/kindnode" storage-manifest --kind-src "$kind_src" --provisioner-image "$local_path_image" \
  --helper-image "tenire.local/kind-node-tools:$recipe" >"$stage/kind/manifests/default-storage.yaml"

# 6. The node image.
kindnode --tag "$KIND_NODE_IMAGE" --out "$archive" --layer-tar "$rootfs" --layer-dir "$stage" \
  --entrypoint /usr/local/bin/entrypoint --entrypoint /sbin/init \
  --env container=docker --stop-signal SIGRTMIN+3 --label "tenire.kind-node.recipe=$recipe"
docker load -i "$archive" >&2
log "$KIND_NODE_IMAGE built and loaded in $((SECONDS - started))s ($(du -h "$archive" | cut -f1))"
echo "$KIND_NODE_IMAGE"
