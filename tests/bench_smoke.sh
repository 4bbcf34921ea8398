#!/usr/bin/env bash
# tests/bench_smoke.sh ARBOR - every `arbor bench` at a tiny size.
#
# Goal: each benchmark runs to its end, exits 0 and prints its figures, so
# that a benchmark that broke is found in CI, not when someone needs its
# numbers. The figures at these sizes mean nothing and are not checked.
# Method: each run's output must hold the line its figures end with; `arbor
# bench fs` runs on an `arbor up` started here (one replica) and stopped by
# `arbor down` and its PID. Needs root and /dev/fuse for that one.
set -euo pipefail

arbor=$1
work=$(mktemp -d /var/tmp/arbor-bench-smoke.XXXXXX)
up_pid=
export XDG_RUNTIME_DIR=$work # this test's own arbor up, found by arbor down

finish() {
  if [ -n "$up_pid" ] && kill -0 "$up_pid" 2>/dev/null; then
    "$arbor" down >/dev/null 2>&1 || kill "$up_pid" || true
    wait "$up_pid" || true
  fi
  rm -rf "$work"
}
trap finish EXIT

# run NAME PATTERN ARGS...: arbor bench ARGS must exit 0 within 2 minutes
# and print a line matching PATTERN (an extended regex).
run() {
  local name=$1 pattern=$2
  shift 2
  local out=$work/$name.out
  local start=$SECONDS
  if ! timeout 120 "$arbor" bench "$@" >"$out" 2>&1; then
    echo "bench $name failed:" >&2
    tail -30 "$out" >&2
    exit 1
  fi
  if ! grep -Eq "$pattern" "$out"; then
    echo "bench $name printed no line matching /$pattern/:" >&2
    tail -30 "$out" >&2
    exit 1
  fi
  echo "bench $name: ok in $((SECONDS - start)) s"
}

mkdir -p "$work/store"
run objstore '^summary 64K: best PUT [0-9]+ MiB/s.*best GET [0-9]+ MiB/s' \
  objstore --store "file://$work/store" --ceiling-dir "$work" --seconds 1 --bytes 4M \
  --sizes 64K --inflight 1,4
run fsm '^memory +restored files: shard counts [0-9.]+ bytes/file' fsm --files 10000
run raft '^ +3 +64 +[0-9]+ +[0-9.]+ +[0-9.]+$' raft --seconds 1
run meta '^ +4 +4 +getattr +[0-9]+ +[0-9.]+ +[0-9.]+$' \
  meta --seconds 1 --clients 1,4 --ops create,getattr
run restore '^live workload \(1 clients, create \+ stat\): [0-9]+ ops/s alone' \
  restore --files 2000 --threads 2 --live-clients 1

mkdir -p "$work/mnt" "$work/local"
"$arbor" up "$work/data" "$work/mnt" --replicas 1 >"$work/up.out" 2>&1 &
up_pid=$!
for _ in $(seq 300); do # 30 s
  mountpoint -q "$work/mnt" && break
  kill -0 "$up_pid" 2>/dev/null || break
  sleep 0.1
done
if ! mountpoint -q "$work/mnt"; then
  echo "arbor up did not mount:" >&2
  cat "$work/up.out" >&2
  exit 1
fi
run fs '^read small 2 +16 +[0-9]+ MiB +[0-9]+ MiB +[0-9]+ MiB' \
  fs "$work/mnt" --local "$work/local" --files 100 --small-files 32 --big-mib 2
"$arbor" down >/dev/null
wait "$up_pid"
up_pid=
echo "every benchmark ran"
