#!/usr/bin/env bash
# synod's main job (the README's first command).
#
#   tools/run.sh [extra sim arguments]
#
# For now: the deterministic simulator over 300 seeds, in release mode. Once the
# runtime, transport and server exist, this becomes a 3-node benchmark.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

tools/setup.sh
exec cargo run --release -- sim --seeds 300 "$@"
