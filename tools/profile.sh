#!/usr/bin/env bash
# Where a `synod bench` run spends its time, in two passes over the same workload:
#
#   tools/profile.sh OUT [synod bench arguments]
#       e.g. tools/profile.sh /tmp/prof --groups 1 --clients 1024 --window 1024 --seconds 4
#
# 1. CPU: `perf record -g` (cpu-clock, DWARF call graphs) of the whole process, then
#    OUT/flamegraph.svg (inferno, installed into target/tools on first use),
#    OUT/cpu-by-thread.txt and OUT/cpu-top.txt (perf report, self time).
# 2. The disk as the kernel sees it: io_uring submit/complete tracepoints of the shard
#    threads, paired per request, in OUT/uring-latency.txt (tools/uring_latency.py):
#    WAL writes (WRITE_FIXED or WRITE on a segment) and fdatasyncs from submission to
#    completion in the kernel. Compare with the bench's "ms in the disk (write +
#    fdatasync)", which is the same span as the write task sees it: the difference is
#    how late the shard's executor notices a completion.
#
# Needs root (or perf_event_paranoid <= -1) for tracepoints; installs Debian's
# linux-perf when run as root without it. Each pass is a separate bench run, so the passes see
# the same workload, not the same seconds.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${1:?usage: tools/profile.sh OUT [synod bench arguments]}"
shift
mkdir -p "$out"
out="$(cd "$out" && pwd)"
cd "$root"

if ! command -v perf >/dev/null; then
    if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq linux-perf
    else
        echo "perf not found: install Debian's linux-perf (sudo apt-get install linux-perf)" >&2
        exit 1
    fi
fi
cargo build --release --quiet
bin="$root/target/release/synod"
bench_dir="${SYNOD_BENCH_DIR:-$root/synod-bench}"

if [ ! -x target/tools/bin/inferno-flamegraph ]; then
    echo "installing inferno (flame graphs) into target/tools" >&2
    cargo install inferno --locked --quiet --root target/tools
fi

echo "== pass 1: CPU profile" >&2
perf record -q -e cpu-clock -F 499 --call-graph dwarf,16384 -o "$out/cpu.data" \
    "$bin" bench --dir "$bench_dir" "$@" 2>&1 | grep -v '^ *[0-9.]* s ' | tee "$out/bench-cpu.txt" >&2
perf report -i "$out/cpu.data" --no-children --sort comm --stdio -g none 2>/dev/null \
    | grep -v '^#' | grep -v '^$' > "$out/cpu-by-thread.txt" || true
perf report -i "$out/cpu.data" --no-children --sort sym --stdio -g none --percent-limit 0.3 2>/dev/null \
    | grep -v '^#' | grep -v '^$' > "$out/cpu-top.txt" || true
perf script -i "$out/cpu.data" 2>/dev/null \
    | target/tools/bin/inferno-collapse-perf > "$out/cpu.folded"
target/tools/bin/inferno-flamegraph --title "synod bench $*" < "$out/cpu.folded" > "$out/flamegraph.svg"

echo "== pass 2: io_uring latency in the kernel" >&2
perf record -q -e io_uring:io_uring_submit_req -e io_uring:io_uring_complete -o "$out/uring.data" \
    "$bin" bench --dir "$bench_dir" "$@" 2>&1 | grep -v '^ *[0-9.]* s ' | tee "$out/bench-uring.txt" >&2
perf script -i "$out/uring.data" -F comm,tid,time,event,trace 2>/dev/null \
    | python3 tools/uring_latency.py > "$out/uring-latency.txt"
cat "$out/uring-latency.txt" >&2
echo "profile in $out: flamegraph.svg, cpu-by-thread.txt, cpu-top.txt, uring-latency.txt" >&2
