#!/usr/bin/env bash
# Idle cost of many Paxos groups: CPU (% of one core) and RSS per node of a 3-node
# loopback cluster of `synod serve` processes with default timeouts.
#
# usage: tools/idle.sh DIR [GROUPS...]        (default GROUPS: 1000)
#   env: SYNOD_BIN   binary (default: $CARGO_TARGET_DIR or target, release/synod)
#        SECONDS_CPU measurement window in seconds (default 20)
#        SETTLE      seconds to wait after every group has a leader (default 5)
#        PORT        first node's port; nodes use PORT, PORT+10, PORT+20 (default 7400)
#        ELECT_MAX   seconds allowed for every group to elect a leader (default 180)
#        CORES       --cores of every node (default: the serve default, core 0)
#        TICK_MS     --tick-ms of every node (default: the configuration's default tick)
#
# For each GROUPS value it starts three nodes (data dirs DIR/g<GROUPS>/n<i>, wiped
# first), waits until every group has a leader (`status` on `--control` stdin), lets
# them settle, samples utime+stime from /proc/<pid>/stat over SECONDS_CPU seconds and
# VmRSS from /proc/<pid>/status, prints one line per node, and stops the nodes (end
# of stdin: graceful; SIGKILL after 10 s). With several GROUPS values it also prints
# the RSS per group between consecutive values (the memory of one idle group).
# Every process it started is killed on exit, whatever happens.
set -euo pipefail

dir=${1:?usage: tools/idle.sh DIR [GROUPS...]}
shift
counts=("$@")
[ ${#counts[@]} -gt 0 ] || counts=(1000)
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${SYNOD_BIN:-${CARGO_TARGET_DIR:-$root/target}/release/synod}
seconds=${SECONDS_CPU:-20}
settle=${SETTLE:-5}
port=${PORT:-7400}
elect_max=${ELECT_MAX:-180}
hz=$(getconf CLK_TCK)
[ -x "$bin" ] || { echo "no binary at $bin (cargo build --release)" >&2; exit 1; }
mkdir -p "$dir"

pids=()
cleanup() {
    for fd in 3 4 5; do eval "exec $fd>&-" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    pids=()
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ticks() { # utime + stime of a process, in clock ticks
    awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"
}
wakeups() { # voluntary context switches of every thread: sleeps, so loop wake-ups
    cat /proc/"$1"/task/*/status | awk '/^voluntary_ctxt_switches:/ { n += $2 } END { print n }'
}
rss_kib() {
    awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"
}

# awk: the roles of the last complete `status` answer, by group, in `last`.
last_status='/^group/ { cur[$2] = $4 } /^end/ { delete last; for (g in cur) last[g] = cur[g]; delete cur }'

declare -A rss_total
for groups in "${counts[@]}"; do
    run="$dir/g$groups"
    rm -rf "$run"
    mkdir -p "$run"
    nodes="1=127.0.0.1:$port,2=127.0.0.1:$((port + 10)),3=127.0.0.1:$((port + 20))"
    "$bin" keygen >"$run/peer.key"
    chmod 600 "$run/peer.key"
    cores=()
    [ -z "${CORES:-}" ] || cores=(--cores "$CORES")
    [ -z "${TICK_MS:-}" ] || cores+=(--tick-ms "$TICK_MS")
    for i in 1 2 3; do
        mkfifo "$run/n$i.in"
        "$bin" serve --node "$i" --nodes "$nodes" --dir "$run/n$i" --new --groups "$groups" \
            --key-file "$run/peer.key" "${cores[@]}" --control <"$run/n$i.in" >"$run/n$i.out" 2>"$run/n$i.err" &
        pids+=($!)
        eval "exec $((i + 2))>\"$run/n$i.in\""
    done
    for i in 1 2 3; do
        until grep -q '^ready' "$run/n$i.out"; do
            kill -0 "${pids[$((i - 1))]}" 2>/dev/null ||
                { echo "node $i died:" >&2; cat "$run/n$i.err" >&2; exit 1; }
            sleep 0.2
        done
    done

    # Every group has a leader: some node reports role Leader for it.
    start=$SECONDS
    while :; do
        for i in 1 2 3; do
            ends=$(grep -c '^end' "$run/n$i.out" || true)
            echo status >&$((i + 2))
            until [ "$(grep -c '^end' "$run/n$i.out" || true)" -gt "$ends" ]; do sleep 0.1; done
        done
        led=$(for i in 1 2 3; do
            awk "$last_status"' END { for (g in last) if (last[g] == "Leader") print g }' \
                "$run/n$i.out"
        done | sort -u | wc -l)
        [ "$led" -ge "$groups" ] && break
        if [ $((SECONDS - start)) -gt "$elect_max" ]; then
            echo "groups=$groups: only $led groups have a leader after ${elect_max}s" >&2
            exit 1
        fi
        sleep 1
    done
    elected=$((SECONDS - start))
    sleep "$settle"

    before=() woken=()
    for pid in "${pids[@]}"; do before+=("$(ticks "$pid")") woken+=("$(wakeups "$pid")"); done
    t0=$(date +%s.%N)
    sleep "$seconds"
    t1=$(date +%s.%N)
    total_kib=0
    for i in 1 2 3; do
        pid=${pids[$((i - 1))]}
        used=$(( $(ticks "$pid") - before[i - 1] ))
        sleeps=$(( $(wakeups "$pid") - woken[i - 1] ))
        rss=$(rss_kib "$pid")
        total_kib=$((total_kib + rss))
        leaders=$(awk "$last_status"' END { for (g in last) if (last[g] == "Leader") n++; print n + 0 }' \
                  "$run/n$i.out")
        awk -v g="$groups" -v n="$i" -v u="$used" -v hz="$hz" -v t0="$t0" -v t1="$t1" \
            -v rss="$rss" -v l="$leaders" -v e="$elected" -v w="$sleeps" 'BEGIN {
            printf "groups %d node %d: cpu %.2f %% of a core (%d ticks / %.1f s), %.0f wake-ups/s, rss %.1f MiB, leads %d (all elected in %d s)\n",
                g, n, 100 * u / hz / (t1 - t0), u, t1 - t0, w / (t1 - t0), rss / 1024, l, e }'
    done
    rss_total[$groups]=$total_kib

    # Graceful stop: end of stdin; then make sure.
    for fd in 3 4 5; do eval "exec $fd>&-"; done
    for _ in $(seq 100); do
        alive=0
        for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
        [ $alive -eq 0 ] && break
        sleep 0.1
    done
    cleanup
done

if [ ${#counts[@]} -gt 1 ]; then
    for ((k = 1; k < ${#counts[@]}; k++)); do
        a=${counts[$((k - 1))]} b=${counts[$k]}
        awk -v a="$a" -v b="$b" -v ra="${rss_total[$a]}" -v rb="${rss_total[$b]}" 'BEGIN {
            printf "rss per idle group, %d -> %d groups: %.2f KiB (mean of 3 nodes)\n",
                a, b, (rb - ra) / 3 / (b - a) }'
    done
fi
