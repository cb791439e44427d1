#!/usr/bin/env bash
# The whole test suite: installs what it needs, builds every binary, then runs
# unit tests and end-to-end tests (real skopeo/umoci, real files, kill -9 trials).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh
if ! command -v cargo >/dev/null 2>&1; then
  echo "test.sh: cargo not found; install a Rust toolchain (rustup) first" >&2
  exit 2
fi

# End-to-end tests drive the built binaries, so build them first.
cargo build --workspace --bins --locked
cargo test --workspace --locked -- --test-threads=2
