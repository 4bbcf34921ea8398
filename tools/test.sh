#!/usr/bin/env bash
# tools/test.sh - the whole test suite, as CI runs it.
#
# Installs what is missing (tools/setup.sh), then builds and runs every test
# twice: in build/ as shipped, and in build-asan/ under AddressSanitizer and
# UndefinedBehaviorSanitizer, where any report fails the test. Extra arguments
# go to `meson test` (e.g. a test name, or --suite unit).
set -euo pipefail

top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$top"
bash tools/setup.sh

passed=0
failed=0
status=0
for variant in plain asan; do
  case $variant in
    plain) dir=build; opts=() ;;
    asan)  dir=build-asan; opts=(-Db_sanitize=address,undefined -Db_lundef=false) ;;
  esac
  if [ ! -f "$dir/build.ninja" ]; then
    meson setup "$dir" "${opts[@]}" >/dev/null
  fi
  echo "== $variant build ($dir)"
  if ! ninja -C "$dir" >"$dir/ninja.log" 2>&1; then
    cat "$dir/ninja.log"
    echo "tests: 0 passed, 1 failed (the $variant build failed)"
    exit 1
  fi
  log="$dir/meson-logs/summary.txt"
  if ! meson test -C "$dir" --print-errorlogs --num-processes 2 "$@" | tee "$log"; then
    status=1
  fi
  ok=$(awk '/^Ok:/ {print $2}' "$log")
  bad=$(awk '/^(Fail|Timeout|Unexpected Pass):/ {n += $NF} END {print n + 0}' "$log")
  passed=$((passed + ${ok:-0}))
  failed=$((failed + bad))
done

echo "tests: $passed passed, $failed failed"
exit $status
