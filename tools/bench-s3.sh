#!/usr/bin/env bash
# tools/bench-s3.sh - `arbor bench objstore` against a real S3 server (s3rver)
# started here on 127.0.0.1 and stopped at the end by its PID.
#
#   tools/bench-s3.sh [--latency-ms MS] [bench options...]
#
# --latency-ms puts tests/objstore/flaky_proxy.py in front of s3rver to hold
# every request MS ms, as a distant store does (S3's first byte takes tens of
# ms). s3rver alone answers in about a millisecond but is one Node.js process
# that fills a core, so on bare loopback it, not the client, is the limit.
set -euo pipefail

top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
latency=0
if [ "${1:-}" = "--latency-ms" ]; then
  latency=$2
  shift 2
fi
[ -x "$top/build/tools/arbor" ] || { echo "build first: bash tools/quickstart.sh" >&2; exit 2; }

work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# Start a process in the background (recording its PID for cleanup) and wait
# for its ready line, whose last number is the port; leave it in $port. Not
# called in a subshell: the PID must reach the cleanup trap.
start() {
  local out=$1 ready=$2
  shift 2
  "$@" >"$out" 2>"$out.err" &
  pids+=($!)
  for _ in $(seq 1 300); do
    if grep -q "$ready" "$out"; then
      port=$(grep "$ready" "$out" | grep -o '[0-9]*$')
      return 0
    fi
    sleep 0.1
  done
  echo "bench-s3: $* did not start:" >&2
  cat "$out.err" >&2
  return 1
}

start "$work/s3rver.out" "listening on" node --openssl-legacy-provider \
  "$top/.deps/node_modules/s3rver/bin/s3rver.js" -d "$work/data" -a 127.0.0.1 -p 0 -s \
  --configure-bucket bench
if [ "$latency" != 0 ]; then
  start "$work/proxy.out" "PORT " python3 "$top/tests/objstore/flaky_proxy.py" \
    "$port" "delay:$latency" 0
  echo "bench-s3: every request held ${latency} ms by a proxy"
fi
export AWS_ACCESS_KEY_ID=S3RVER AWS_SECRET_ACCESS_KEY=S3RVER
"$top/build/tools/arbor" bench objstore \
  --store "s3://bench/arbor?endpoint=http://127.0.0.1:$port" --ceiling-dir "$work" "$@"
