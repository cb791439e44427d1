#!/usr/bin/env bash
# What a site carries across the air gap to install ferry, built on this (connected) machine:
#   target/dist/ferry_VERSION-1_ARCH.deb          (cargo-deb; metadata in tools/ferry/Cargo.toml)
#   target/dist/ferry-VERSION-ARCH-linux.tar.gz   (the same files: bin/, share/man, share/*completions)
#   target/dist/SHA256SUMS                        (over both)
# Installed: ferry, ferry-export, ferry-verify, ferry-diff, ferry-push, ferry-pack, ferry-mirror-config (never the test-only
# ferry-fixture), a man page per command and bash, zsh and fish completions, all generated from
# the tools' clap definitions by the built `ferry` itself. The binaries may link only the base
# system's libc, libm, libgcc_s (liblzma and zstd are static): checked with ldd.
#   scripts/release.sh [--profile release|dev] [--out DIR]
# --profile dev packages the binaries `cargo build --workspace --bins` (scripts/test.sh) already
# built, stripped: for the install test (scripts/test-package.sh). A real release uses the default.
set -euo pipefail
cd "$(dirname "$0")/.."

PROFILE=release
OUT=target/dist
while [ $# -gt 0 ]; do
  case $1 in
    --profile) PROFILE=${2:?--profile needs a value}; shift 2 ;;
    --out) OUT=${2:?--out needs a directory}; shift 2 ;;
    *) echo "usage: scripts/release.sh [--profile release|dev] [--out DIR]" >&2; exit 2 ;;
  esac
done
COMMANDS=(ferry ferry-export ferry-verify ferry-diff ferry-push ferry-pack ferry-mirror-config)
CARGO_DEB_VERSION=3.8.0
# Only the Debian packages that give the base system's shared libraries.
ALLOWED_LIBS='^(linux-vdso\.so\.1|libc\.so\.6|libm\.so\.6|libgcc_s\.so\.1|libpthread\.so\.0|libdl\.so\.2|librt\.so\.1|/lib64/ld-linux-x86-64\.so\.2)$'

bash scripts/install-deps.sh   # dpkg-dev (the .deb's Depends), python3; binutils comes with gcc
if ! cargo deb --version >/dev/null 2>&1; then
  echo "release: installing cargo-deb $CARGO_DEB_VERSION (once per machine)" >&2
  cargo install cargo-deb --locked --version "$CARGO_DEB_VERSION"
fi

# The same build command as scripts/test.sh (same features, so nothing is rebuilt for dev).
cargo build --locked --workspace --bins --profile "$PROFILE"
TARGET_DIR=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
PROFILE_DIR=$PROFILE
if [ "$PROFILE" = dev ]; then PROFILE_DIR=debug; fi
BIN="$TARGET_DIR/$PROFILE_DIR"
VERSION=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(next(p["version"] for p in json.load(sys.stdin)["packages"] if p["name"] == "ferry"))')
ARCH=$(uname -m)

# The staged tree: the .deb's assets and the tarball's content. Always under target/release/,
# where cargo-deb reads the assets of tools/ferry/Cargo.toml (it supports no dev profile).
TREE="$TARGET_DIR/release/ferry-dist/tree"
rm -rf "$TREE"
mkdir -p "$TREE/bin" "$TREE/share/man/man1" "$TREE/share/bash-completion/completions" \
  "$TREE/share/zsh/vendor-completions" "$TREE/share/fish/vendor_completions.d"
for cmd in "${COMMANDS[@]}"; do
  install -m 755 "$BIN/$cmd" "$TREE/bin/$cmd"
  strip "$TREE/bin/$cmd"
  bad=$(ldd "$TREE/bin/$cmd" | awk '{print $1}' | grep -Ev "$ALLOWED_LIBS" || true)
  if [ -n "$bad" ]; then
    echo "release: $cmd links libraries beyond the base system: $bad" >&2
    exit 1
  fi
  "$BIN/ferry" completions bash "$cmd" > "$TREE/share/bash-completion/completions/$cmd"
  "$BIN/ferry" completions zsh "$cmd" > "$TREE/share/zsh/vendor-completions/_$cmd"
  "$BIN/ferry" completions fish "$cmd" > "$TREE/share/fish/vendor_completions.d/$cmd.fish"
done
"$BIN/ferry" generate-man "$TREE/share/man/man1" > /dev/null
gzip -9n "$TREE"/share/man/man1/*.1
cp README.md "$TREE/README.md"
find "$TREE" -type f ! -path "$TREE/bin/*" -exec chmod 644 {} +

rm -rf "$OUT"; mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
# --no-build: built above; --no-strip: stripped above (cargo-deb would look for them itself).
cargo deb --locked -p ferry --no-build --no-strip --no-dbgsym --output "$OUT" >&2
TARBALL="ferry-$VERSION-$ARCH-linux.tar.gz"
tar -C "$TREE" --owner=0 --group=0 --sort=name --transform "s,^\.,ferry-$VERSION-$ARCH-linux," \
  -czf "$OUT/$TARBALL" .
(cd "$OUT" && sha256sum -- *.deb "$TARBALL" > SHA256SUMS)
echo "release: $OUT" >&2
ls -l "$OUT" >&2
