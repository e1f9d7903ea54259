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
run "cargo test --release" cargo test --release --no-fail-fast -- --show-output

echo
echo "==> summary"
failed=0
for i in "${!names[@]}"; do
  printf '  %-45s %s\n' "${names[$i]}" "${results[$i]}"
  [[ "${results[$i]}" == ok* ]] || failed=1
done
if ((failed)); then
  echo "tools/test.sh: FAILED" >&2
  exit 1
fi
echo "tools/test.sh: all checks passed"
