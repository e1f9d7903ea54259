#!/usr/bin/env bash
# Coverage-guided fuzzing of synod's decoders with libFuzzer, on the stable toolchain.
#
#   tools/fuzz.sh build                   build the four targets (instrumented, release)
#   tools/fuzz.sh run TARGET [SECONDS]    fuzz one target (default 60 s)
#   tools/fuzz.sh all [SECONDS]           every target for SECONDS each (default 60 s)
#   tools/fuzz.sh replay TARGET FILE...   run inputs (a crash file) through a target
#   tools/fuzz.sh seeds                   rewrite the seed corpus fuzz/corpus/
#   tools/fuzz.sh list                    the targets
#
# Targets (fuzz/fuzz_targets/, checks in tests/fuzz_targets/mod.rs): peer_frame,
# client_frame, wal_segments, handshake.
#
# How: the targets link libfuzzer-sys (pinned in fuzz/Cargo.toml, locked in
# fuzz/Cargo.lock), which builds libFuzzer from its C++ sources. The coverage
# instrumentation is LLVM's SanitizerCoverage, asked for with stable `-C` flags
# (`-Cpasses=sancov-module` and its `-Cllvm-args`): no nightly toolchain, no cargo-fuzz,
# no sanitizer runtime. Overflow checks and debug assertions are on. The only thing a
# fresh machine needs beyond Rust is a C++ compiler; this script installs g++ with
# apt-get (as root) when there is none.
#
# New inputs found go to the work corpus ($SYNOD_FUZZ_WORK, default fuzz/work/TARGET,
# not checked in); the checked-in seeds (fuzz/corpus/TARGET) are only read. A crash is
# written to fuzz/artifacts/TARGET/ and the run fails; keep it as a regression test by
# copying the file into fuzz/regressions/TARGET/ (tests/fuzz_corpus.rs replays every
# file there in `cargo test`), then fix the bug.
#
# Environment: SYNOD_FUZZ_TARGET_DIR (build directory, default fuzz/target),
# SYNOD_FUZZ_WORK (work corpus root), SYNOD_FUZZ_ARGS (more libFuzzer flags, e.g.
# "-jobs=2 -workers=2" or "-seed=1").
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

targets=(peer_frame client_frame wal_segments handshake)

say() { echo "fuzz.sh: $*" >&2; }
die() {
  say "$*"
  exit 2
}
usage() {
  sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

if ! command -v cargo >/dev/null 2>&1 && [[ -x "$HOME/.cargo/bin/cargo" ]]; then
  export PATH="$HOME/.cargo/bin:$PATH"
fi

target_dir="${SYNOD_FUZZ_TARGET_DIR:-$root/fuzz/target}"
work_root="${SYNOD_FUZZ_WORK:-$root/fuzz/work}"
triple="$(rustc -vV | sed -n 's/^host: //p')"
bin_dir="$target_dir/$triple/release"

# Largest input per target: wal_segments takes a flags byte and up to six 16 KiB
# segment files; frames are bounded by what a decoder is worth exploring.
max_len() {
  case "$1" in
    wal_segments) echo 98305 ;;
    handshake) echo 4096 ;;
    *) echo 65536 ;;
  esac
}

is_target() {
  local t
  for t in "${targets[@]}"; do
    [[ "$t" == "$1" ]] && return 0
  done
  return 1
}

ensure_cxx() {
  if command -v c++ >/dev/null 2>&1 || command -v g++ >/dev/null 2>&1; then
    return
  fi
  if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null 2>&1; then
    say "installing g++ (libFuzzer is C++)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq g++
  else
    die "no C++ compiler: install g++ (libfuzzer-sys builds libFuzzer from C++)"
  fi
}

build() {
  ensure_cxx
  local flags=(
    -Cpasses=sancov-module
    -Cllvm-args=-sanitizer-coverage-level=4
    -Cllvm-args=-sanitizer-coverage-inline-8bit-counters
    -Cllvm-args=-sanitizer-coverage-pc-table
    -Cllvm-args=-sanitizer-coverage-trace-compares
    -Cllvm-args=-sanitizer-coverage-stack-depth
    -Cdebug-assertions
    -Coverflow-checks
  )
  say "building the targets in $target_dir"
  # --target keeps the flags off build scripts and proc macros (they are not linked
  # with libFuzzer).
  (cd fuzz && RUSTFLAGS="${flags[*]}" CARGO_TARGET_DIR="$target_dir" \
    cargo build --locked --release --target "$triple" --bins)
}

# Fuzzes target $1 for $2 seconds; prints a one-line summary; fails on a crash.
run_one() {
  local target="$1" seconds="$2"
  is_target "$target" || die "no target named $target (tools/fuzz.sh list)"
  [[ "$seconds" =~ ^[0-9]+$ ]] && ((seconds > 0)) || die "SECONDS must be a positive integer"
  local work="$work_root/$target" artifacts="$root/fuzz/artifacts/$target"
  mkdir -p "$work" "$artifacts"
  # The whole libFuzzer output of the last run, kept beside the work corpus.
  local log="$work_root/$target.log"
  local status=0
  # shellcheck disable=SC2086 # SYNOD_FUZZ_ARGS is a list of flags
  "$bin_dir/$target" \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=512 \
    -max_len="$(max_len "$target")" -print_final_stats=1 \
    -artifact_prefix="$artifacts/" ${SYNOD_FUZZ_ARGS:-} \
    "$work" "$root/fuzz/corpus/$target" >"$log" 2>&1 || status=$?
  local done_line execs
  done_line="$(grep -E '^#[0-9]+[[:space:]]+(DONE|pulse|NEW|REDUCE|INITED)' "$log" | tail -n 1 || true)"
  execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)"
  if ((status != 0)); then
    tail -n 60 "$log" >&2
    say "$target: FAILED (exit $status). The input is in $artifacts/; replay it with"
    say "  tools/fuzz.sh replay $target $artifacts/<file>"
    say "and keep it as a regression test in fuzz/regressions/$target/."
    return 1
  fi
  printf '%-13s %4s s  %10s execs  %s\n' "$target" "$seconds" "${execs:-?}" \
    "$(sed -E 's/^#[0-9]+[[:space:]]+[A-Z]+[[:space:]]+//; s/ exec\/s.*//' <<<"$done_line")"
}

cmd="${1:-}"
case "$cmd" in
  build)
    build
    ;;
  run)
    [[ $# -ge 2 ]] || usage
    build
    run_one "$2" "${3:-60}"
    ;;
  all)
    build
    failed=0
    for t in "${targets[@]}"; do
      run_one "$t" "${2:-60}" || failed=1
    done
    ((failed == 0)) || die "a target failed"
    ;;
  replay)
    [[ $# -ge 3 ]] || usage
    is_target "$2" || die "no target named $2"
    build
    target="$2"
    shift 2
    # libFuzzer runs each file given as an argument once and reports.
    "$bin_dir/$target" -rss_limit_mb=2048 -malloc_limit_mb=512 "$@"
    ;;
  seeds)
    cargo test --release -- --ignored write_fuzz_seeds
    ;;
  list)
    printf '%s\n' "${targets[@]}"
    ;;
  *)
    usage
    ;;
esac
