#!/usr/bin/env python3
"""Pairs io_uring submit and complete tracepoints (perf script -F comm,tid,time,event,trace
on stdin) and prints, per shard thread and opcode, how long requests took in the kernel.

Only shard threads (named synod-n<node>-s<shard>) are counted (the bench's limit probes and client thread
are left out). On a shard thread, WRITE_FIXED is a WAL write from glommio's registered
DMA memory, FSYNC is the WAL's fdatasync, WRITE is mostly socket sends (and WAL writes
whose buffer did not fit the registered memory).
"""

import collections
import re
import sys

LINE = re.compile(
    r"\s*(?P<comm>\S+)\s+(?P<tid>\d+)\s+(?P<time>[\d.]+):\s+io_uring:(?P<event>\w+):"
    r" ring (?P<ring>\S+), req(?:uest)? (?P<req>\S+), user_data [^,\s]+(?:, opcode (?P<op>\w+))?"
)
COUNTED = ("WRITE_FIXED", "WRITE", "FSYNC")
SHARD = re.compile(r"synod-n\d+-s\d+")


def main() -> None:
    pending = {}
    names = {}
    latencies = collections.defaultdict(list)
    for line in sys.stdin:
        m = LINE.match(line)
        if not m:
            continue
        key = (m["ring"], m["req"])
        t = float(m["time"])
        if m["event"] == "io_uring_submit_req":
            pending[key] = (t, m["op"], m["tid"], m["comm"])
        elif m["event"] == "io_uring_complete" and key in pending:
            t0, op, tid, comm = pending.pop(key)
            if SHARD.match(comm) and op in COUNTED:
                names[tid] = comm
                latencies[(tid, op)].append((t - t0) * 1e6)
    if not latencies:
        print("no shard io_uring requests seen (were tracepoints recorded?)")
        return
    print(f"{'thread':>16} {'tid':>8} {'opcode':<12} {'count':>7} {'p50':>7} {'p90':>7} {'p99':>8} {'mean':>7}  (us, submit to complete in the kernel)")
    for (tid, op), values in sorted(latencies.items()):
        values.sort()
        n = len(values)
        print(
            f"{names[tid]:>16} {tid:>8} {op:<12} {n:>7} {values[n // 2]:>7.0f} {values[n * 9 // 10]:>7.0f}"
            f" {values[min(n - 1, n * 99 // 100)]:>8.0f} {sum(values) / n:>7.0f}"
        )


if __name__ == "__main__":
    main()
