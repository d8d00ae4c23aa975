#!/usr/bin/env bash
# Makes sure a Docker daemon answers, for `make test-images` (and later the
# kind path): nothing to do when one already runs; otherwise installs
# Debian's docker.io when dockerd is missing and starts dockerd in the
# background with its default settings, its log under the cache. It never
# starts a second daemon beside a running one (a second dockerd would take
# the machine's docker0 bridge away from the first).
#
# On a host whose capability bounding set lacks some capability (some
# virtual machines drop CAP_SYS_RESOURCE), Docker 20.10 cannot start a
# --privileged container, and kind starts every node that way: the dockerd
# it starts then runs containers through hack/runcwrap, which drops what
# the host lacks from what a container asks for. A daemon that already runs
# is left as it is, with a warning when it would need the wrapper.
set -euo pipefail

# lacks_caps succeeds when the bounding set lacks a capability the kernel
# knows.
lacks_caps() {
  local last bnd
  last=$(cat /proc/sys/kernel/cap_last_cap 2>/dev/null) || return 1
  bnd=$(awk '/^CapBnd:/ {print $2}' /proc/self/status)
  (( 16#$bnd != (1 << (last + 1)) - 1 ))
}

if docker info >/dev/null 2>&1; then
  echo "docker: a daemon answers ($(docker info --format '{{.ServerVersion}}'))"
  if lacks_caps && [[ $(docker info --format '{{.DefaultRuntime}}') != runcwrap ]]; then
    echo "docker: warning: this host lacks capabilities that --privileged containers (kind's nodes) ask for, and the running daemon does not use hack/runcwrap; stop it and run this again for kind to work" >&2
  fi
  exit 0
fi
sudo=""; [[ $(id -u) -ne 0 ]] && sudo="sudo"
if ! command -v dockerd >/dev/null; then
  echo "docker: installing Debian's docker.io"
  $sudo apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io >/dev/null
fi
if ! command -v docker >/dev/null; then
  echo "docker: no docker client after installing docker.io" >&2
  exit 1
fi
# A daemon that ended without cleaning up (its machine's processes were
# stopped, as between a session and its CI run) leaves pid files behind.
# When their number now belongs to another process, dockerd refuses to
# start ("pid file found"), or takes that process for its containerd and
# waits for a socket that never comes ("timeout waiting for containerd to
# start"). No daemon answers here, so a pid file whose process is not the
# program it names is stale and goes.
clear_stale_pid() {
  local file=$1 want=$2 pid comm
  [[ -f $file ]] || return 0
  pid=$(tr -dc 0-9 <"$file")
  comm=$(cat "/proc/$pid/comm" 2>/dev/null || true)
  if [[ -z $pid || $comm != "$want" ]]; then
    echo "docker: removing stale pid file $file (pid ${pid:-none} is ${comm:-not running})"
    $sudo rm -f "$file"
  fi
}
clear_stale_pid /var/run/docker.pid dockerd
clear_stale_pid /var/run/docker/containerd/containerd.pid containerd

log="${XDG_CACHE_HOME:-$HOME/.cache}/tenire/dockerd.log"
mkdir -p "$(dirname "$log")"
flags=""
if lacks_caps; then
  wrap="${XDG_CACHE_HOME:-$HOME/.cache}/tenire/bin/runcwrap"
  echo "docker: this host's bounding set lacks capabilities; containers run through hack/runcwrap ($wrap)"
  mkdir -p "$(dirname "$wrap")"
  (cd "$(dirname "$0")/.." && CGO_ENABLED=0 go build -trimpath -o "$wrap.tmp.$$" ./hack/runcwrap) && mv -f "$wrap.tmp.$$" "$wrap"
  flags="--add-runtime runcwrap=$wrap --default-runtime runcwrap"
fi
echo "docker: starting dockerd $flags (log $log)"
$sudo sh -c "nohup dockerd $flags >'$log' 2>&1 &"
for _ in $(seq 60); do
  if docker info >/dev/null 2>&1; then
    echo "docker: a daemon answers ($(docker info --format '{{.ServerVersion}}'))"
    exit 0
  fi
  sleep 1
done
echo "docker: dockerd did not answer within 60s; last lines of $log:" >&2
tail -20 "$log" >&2
exit 1
