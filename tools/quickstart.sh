#!/usr/bin/env bash
# tools/quickstart.sh - the newcomer's first command: install what is
# missing, build, and run arbor's main job on the embedded default.
#
# Today the main job is the object-store benchmark on a local file:// store
# under .arbor/ (the metadata service and the FUSE mount are still to come;
# see docs/architecture.md). It prints throughput beside the disk's own
# ceiling, then removes what it wrote.
set -euo pipefail

top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$top"
bash tools/setup.sh
[ -f build/build.ninja ] || meson setup build >/dev/null
ninja -C build >/dev/null
mkdir -p .arbor/blocks
exec build/tools/arbor bench objstore --store "file://$top/.arbor/blocks" "$@"
