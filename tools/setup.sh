#!/usr/bin/env bash
# tools/setup.sh - install everything arbor needs to build, test and run.
#
# Idempotent: it asks apt and npm only for what is missing, and prints one line
# when all is present. Debian packages come from apt-get (as root, or through
# sudo); the S3 test server (s3rver, pinned) goes under .deps/ in the repo,
# never globally.
set -euo pipefail

top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
S3RVER_VERSION=3.7.1

packages=(
  build-essential meson ninja-build pkg-config python3
  libuv1-dev libprotobuf-c-dev protobuf-c-compiler
  liblmdb-dev lmdb-utils libfuse3-dev fuse3 liburing-dev
  libcurl4-openssl-dev libexpat1-dev libcmocka-dev
  iproute2 util-linux
  nodejs npm
)

missing=()
for p in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  [ "$status" = "install ok installed" ] || missing+=("$p")
done
# A machine may carry its own Node.js outside apt; that one is fine too.
if command -v node >/dev/null && command -v npm >/dev/null; then
  filtered=()
  for p in "${missing[@]}"; do
    case "$p" in nodejs|npm) ;; *) filtered+=("$p") ;; esac
  done
  missing=("${filtered[@]+"${filtered[@]}"}")
fi

sudo=""
[ "$(id -u)" = 0 ] || sudo="sudo"
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
fi

s3rver="$top/.deps/node_modules/s3rver/package.json"
if ! grep -q "\"version\": \"$S3RVER_VERSION\"" "$s3rver" 2>/dev/null; then
  echo "setup: installing s3rver@$S3RVER_VERSION under .deps/"
  mkdir -p "$top/.deps"
  (cd "$top/.deps" && npm install --silent --no-audit --no-fund --no-save \
     --prefix "$top/.deps" "s3rver@$S3RVER_VERSION" >/dev/null)
fi

# FUSE requests over io_uring (Linux 6.14 and later): the kernel offers them
# to new mounts only while the fuse module's enable_uring is set, which it
# is not by default. It lasts until reboot (docs/operations.md says how to
# keep it); `arbor mount` falls back to /dev/fuse without it.
uring=/sys/module/fuse/parameters/enable_uring
[ -e "$uring" ] || modprobe fuse 2>/dev/null || true
if [ -e "$uring" ] && [ "$(cat "$uring")" != Y ]; then
  if echo Y | ${sudo:-} tee "$uring" >/dev/null 2>&1; then
    echo "setup: the kernel now offers FUSE requests over io_uring ($uring)"
  fi
fi

echo "setup: all dependencies present"
