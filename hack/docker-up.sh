#!/usr/bin/env bash
# Makes sure a Docker daemon answers, for `make test-images` (and later the
# kind path): nothing to do when one already runs; otherwise installs
# Debian's docker.io when dockerd is missing and starts dockerd in the
# background with its default settings, its log under the cache. It never
# starts a second daemon beside a running one (a second dockerd would take
# the machine's docker0 bridge away from the first).
set -euo pipefail

if docker info >/dev/null 2>&1; then
  echo "docker: a daemon answers ($(docker info --format '{{.ServerVersion}}'))"
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
log="${XDG_CACHE_HOME:-$HOME/.cache}/tenire/dockerd.log"
mkdir -p "$(dirname "$log")"
echo "docker: starting dockerd (log $log)"
$sudo sh -c "nohup dockerd >'$log' 2>&1 &"
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
