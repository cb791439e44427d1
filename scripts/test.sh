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
# Every test binary runs (--no-fail-fast), then the install path across the air gap (issue 17:
# the .deb from scripts/release.sh built from the binaries above, dpkg -i into a debootstrap'ed
# Debian root, the installed commands, dpkg -r; about 25 s, plus a minute the first time for
# debootstrap, cached in target/, and a few minutes once per machine to `cargo install cargo-deb`).
# The last line totals every "test result:" line (the package check counts as one test), and the
# script exits non-zero if anything failed.
log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
cargo test --workspace --locked --no-fail-fast -- --test-threads=2 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
if bash scripts/test-package.sh; then
  echo "test result: ok. 1 passed; 0 failed; (scripts/test-package.sh)" >> "$log"
else
  echo "test result: FAILED. 0 passed; 1 failed; (scripts/test-package.sh)" >> "$log"
  status=1
fi
set -e
awk '/^test result:/ {
       for (i = 2; i <= NF; i++) {
         if ($i == "passed;") passed += $(i - 1)
         if ($i == "failed;") failed += $(i - 1)
       }
     }
     END { printf "%d passed, %d failed\n", passed, failed; exit (failed > 0) }' "$log" || status=1
exit "$status"
