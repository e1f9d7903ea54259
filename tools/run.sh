#!/usr/bin/env bash
# synod's main job (the README's first command): a local three-node cluster (real WALs
# with fdatasync, real TCP on loopback) under a short closed-loop load, with the machine's
# limits (disk bandwidth, 4 KiB fdatasync, loopback TCP) measured in the same run.
#
#   tools/run.sh [synod bench arguments]     e.g. --groups 100 --clients 100 --seconds 30
#                                            or --matrix phxpaxos, --report DIR, --json
#
# Files go to ./synod-bench (reused across runs; the disk probe file is kept, logs are fresh).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

tools/setup.sh
cargo build --release --quiet
exec target/release/synod bench "$@"
