#!/usr/bin/env bash
# synod's test command (the README's second command; CI runs it through .ci/run).
#
#   tools/test.sh
#
# Runs tools/setup.sh, then every check below, even after one fails, and ends with a
# summary. Exits non-zero if any check failed.
#   cargo fmt --check                          formatting
#   cargo clippy --all-targets -- -D warnings  lints
#   tools/flatc.sh --check                     generated wire code matches schema/wire.fbs
#   cargo test --release                       unit, scenario, tidy and simulation tests
#   tools/fuzz.sh all 20                       every fuzz target for 20 s (fails on a crash)
#   synod-chaos --seconds 120                  a real cluster under faults, its history checked
# `--show-output` makes passing tests print what they printed: the simulation's own
# summary (seeds, steps, faults) appears that way; silent tests add nothing.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

tools/setup.sh

names=()
results=()
run() {
  local name="$1"
  shift
  echo
  echo "==> $name"
  local start=$SECONDS status=0
  "$@" || status=$?
  names+=("$name")
  if ((status == 0)); then
    results+=("ok    $((SECONDS - start)) s")
  else
    results+=("FAIL  exit $status after $((SECONDS - start)) s")
  fi
}

run "cargo fmt --check" cargo fmt --check
run "cargo clippy --all-targets -- -D warnings" cargo clippy --all-targets -- -D warnings
run "tools/flatc.sh --check" tools/flatc.sh --check
# The test output is kept, so that the summary can repeat what each failing test said
# (a long log is often shown cut in the middle, where the failure is).
test_log="$(mktemp)"
trap 'rm -f "$test_log"' EXIT
run "cargo test --release" bash -c \
  'set -o pipefail; cargo test --release --no-fail-fast -- --show-output 2>&1 | tee "$1"' \
  _ "$test_log"
# A short run of every fuzz target (docs/testing.md, "Fuzzing"): a crash fails the run.
run "tools/fuzz.sh all 20" tools/fuzz.sh all 20
# A real three-node cluster under a random nemesis, its history checked (docs/testing.md,
# "Chaos runs"); built by `cargo test --release` above. Needs root for namespaces and
# tmpfs (it says so and runs on loopback otherwise).
run "synod-chaos --seconds 120" "${CARGO_TARGET_DIR:-target}/release/synod-chaos" --seconds 120

echo
echo "==> summary"
failed=0
for i in "${!names[@]}"; do
  printf '  %-45s %s\n' "${names[$i]}" "${results[$i]}"
  [[ "${results[$i]}" == ok* ]] || failed=1
done
if ((failed)); then
  # Each failing test's name and the first lines of its panic (at most 40 lines).
  failing="$(grep -E '^test .* \.\.\. FAILED$' "$test_log" | awk '{print $2}' | sort -u || true)"
  if [[ -n "$failing" ]]; then
    echo
    echo "==> failing tests, as they said"
    awk -v names="$failing" '
      BEGIN { n = split(names, list, "\n"); for (i = 1; i <= n; i++) want[list[i]] = 1 }
      /^---- .* stdout ----$/ { name = ($2 in want) ? $2 : ""; shown = 0; more = 0; next }
      name != "" && shown == 0 && /panicked at/ { print "  " name ": " $0; shown = 1; more = 3; next }
      more > 0 { if ($0 ~ /^stack backtrace:/) { more = 0; next } print "    " $0; more-- }
    ' "$test_log" | head -n 40
    grep -E '^seed [0-9]+ failed at step' "$test_log" | head -n 10 | sed 's/^/  /' || true
  fi
  echo "tools/test.sh: FAILED" >&2
  exit 1
fi
echo "tools/test.sh: all checks passed"
