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

# The install path across the air gap (issue 17): the .deb from scripts/release.sh (built from
# the binaries above, no release build), dpkg -i into a debootstrap'ed Debian root, the installed
# commands, dpkg -r. About 25 s, plus a minute the first time (debootstrap, cached in target/)
# and a few minutes once per machine to `cargo install cargo-deb`.
bash scripts/test-package.sh
