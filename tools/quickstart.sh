#!/usr/bin/env bash
# tools/quickstart.sh - the newcomer's first command: install what is
# missing, build, and run arbor's main job on the embedded default: a local
# cluster of three metadata replicas, a file:// block store and the FUSE
# mount, all under .arbor/ in this checkout (arbor up). It stays in the
# foreground; Ctrl-C (or `build/tools/arbor down` elsewhere) unmounts and
# stops it. What was written is there again on the next run.
set -euo pipefail

top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$top"
bash tools/setup.sh
[ -f build/build.ninja ] || meson setup build >/dev/null
ninja -C build >/dev/null
mkdir -p .arbor/mnt
echo "arbor: mounting the volume on $top/.arbor/mnt; then try: cp -r SOME_DATASET .arbor/mnt/"
exec build/tools/arbor up .arbor/data .arbor/mnt "$@"
