#!/usr/bin/env bash
# The install test (issue 17): the .deb that scripts/release.sh makes, installed with dpkg -i,
# offline, into a fresh Debian root made with debootstrap (minbase + man-db; cached in
# target/debootstrap/CODENAME, about a minute to make from the mirror apt uses, then reused),
# and used from the installed paths only: ferry --version, man -w, a bash completion, ferry
# export + ferry verify of a small generated package (and verify catching a corrupted blob);
# the .tar.gz unpacked as into /usr/local runs the same; then dpkg -r removes every file. Also
# checks SHA256SUMS and that the .tar.gz holds the same files as the .deb (never ferry-fixture).
#   scripts/test-package.sh [--profile dev|release]   (default dev: what scripts/test.sh built)
# Needs root (debootstrap, chroot).
set -euo pipefail
cd "$(dirname "$0")/.."
PROFILE=dev
if [ "${1:-}" = --profile ]; then PROFILE=${2:?--profile needs a value}; fi
if [ "$(id -u)" -ne 0 ]; then echo "test-package.sh needs root (debootstrap, chroot)" >&2; exit 2; fi

BIN=target/$PROFILE
if [ "$PROFILE" = dev ]; then BIN=target/debug; fi
fail() { echo "test-package: FAILED: $*" >&2; exit 1; }
step() { echo "test-package: $*" >&2; }

DIST=target/dist-test
bash scripts/release.sh --profile "$PROFILE" --out "$DIST" 2>"$DIST.log" || { cat "$DIST.log" >&2; fail "release.sh"; }
DEB=$(ls "$DIST"/ferry_*.deb)
TARBALL=$(ls "$DIST"/ferry-*.tar.gz)
(cd "$DIST" && sha256sum --quiet -c SHA256SUMS) || fail "SHA256SUMS does not match"

step "the .deb and the .tar.gz hold the same files, and not ferry-fixture"
deb_files=$(dpkg-deb -c "$DEB" | awk '$1 !~ /^d/ {print $NF}' | sed -E 's,^\./usr/,,; s,^share/doc/ferry/,,' | grep -v '^copyright$' | sort)
tar_files=$(tar -tzf "$TARBALL" | grep -v '/$' | sed -E 's,^[^/]+/,,' | sort)
[ "$deb_files" = "$tar_files" ] || fail "the .deb and the .tar.gz differ: $(diff <(echo "$deb_files") <(echo "$tar_files"))"
for cmd in ferry ferry-export ferry-verify ferry-diff ferry-push ferry-mirror-config; do
  grep -qx "bin/$cmd" <<< "$deb_files" || fail "$cmd is not in the .deb"
done
if grep -q fixture <<< "$deb_files"; then fail "the test-only ferry-fixture is in the .deb"; fi

. /etc/os-release
CODENAME=${VERSION_CODENAME:?no VERSION_CODENAME in /etc/os-release}
# The Debian mirror apt is configured with (deb822 or one-line sources), not the security archive.
MIRROR=$(grep -rhoE '^(URIs:|deb) +https?://[^ ]+/debian/?( |$)' /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null \
  | awk '{print $2; exit}' || true)
MIRROR=${MIRROR:-http://deb.debian.org/debian}
ROOT="$PWD/target/debootstrap/$CODENAME"
if [ ! -f "$ROOT/.ferry-root-ready" ]; then
  step "debootstrap --variant=minbase --include=man-db $CODENAME from $MIRROR (cached in $ROOT)"
  rm -rf "$ROOT"; mkdir -p "$(dirname "$ROOT")"
  debootstrap --variant=minbase --include=man-db "$CODENAME" "$ROOT" "$MIRROR" > "$ROOT.log" 2>&1 \
    || { tail -20 "$ROOT.log" >&2; fail "debootstrap"; }
  touch "$ROOT/.ferry-root-ready"
fi
in_root() { chroot "$ROOT" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 "$@"; }
if in_root sh -c 'command -v ferry' >/dev/null; then fail "ferry is in the fresh root before dpkg -i"; fi

step "dpkg -i $(basename "$DEB") into the fresh root (no network used)"
WORK=/tmp/ferry-package-test
rm -rf "${ROOT:?}$WORK"; mkdir -p "$ROOT$WORK"
cp "$DEB" "$ROOT$WORK/"
in_root dpkg -i "$WORK/$(basename "$DEB")" > "$DIST/dpkg-install.log" 2>&1 || { cat "$DIST/dpkg-install.log" >&2; fail "dpkg -i"; }

step "ferry --version"
want=$("$BIN/ferry" --version)
got=$(in_root ferry --version)
echo "  $got" >&2
[ "$got" = "$want" ] || fail "ferry --version: '$got', expected '$want'"
[ "$(in_root ferry-push --version)" = "ferry-push ${want#ferry }" ] || fail "ferry-push --version"

step "man -w ferry-push"
page=$(in_root man -w ferry-push)
echo "  $page" >&2
[ "$page" = /usr/share/man/man1/ferry-push.1.gz ] || fail "man -w ferry-push: '$page'"
in_root man -P cat ferry-verify 2>/dev/null | grep -q -- '--quarantine' || fail "man ferry-verify lacks --quarantine"

step "bash completion: ferry-push --so<TAB>, ferry push images --dr<TAB>"
complete_in_root() { # SCRIPT WORD...: the candidates bash offers for the last word
  in_root bash -c '
    source "$1"; shift
    COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); COMP_LINE="$*"; COMP_POINT=${#COMP_LINE}
    spec=$(complete -p "$1"); fn=${spec#*-F }; fn=${fn%% *}
    "$fn" "$1" "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"
    printf "%s\n" "${COMPREPLY[@]}"' complete "$@"
}
got=$(complete_in_root /usr/share/bash-completion/completions/ferry-push ferry-push --so)
echo "  $got" >&2
[ "$got" = --source ] || fail "ferry-push --so<TAB>: '$got'"
got=$(complete_in_root /usr/share/bash-completion/completions/ferry ferry push images --dr)
[ "$got" = --dry-run ] || fail "ferry push images --dr<TAB>: '$got'"
for f in /usr/share/zsh/vendor-completions/_ferry /usr/share/fish/vendor_completions.d/ferry.fish; do
  [ -s "$ROOT$f" ] || fail "$f is not installed"
done

step "ferry export + ferry verify of a generated package, from the installed paths"
"$BIN/ferry-fixture" --out "$ROOT$WORK/pkg.tar.zst" --format tar.zst --seed 17 --images 2 \
  --layers 2 --layer-size 64KiB > /dev/null
in_root ferry export --source "$WORK/pkg.tar.zst" --to "$WORK/store" > /dev/null || fail "ferry export"
in_root ferry verify "$WORK/store" >&2 || fail "ferry verify of a sound store"
blob=$(find "$ROOT$WORK/store/blobs/sha256" -type f -size +32k | head -1)
printf 'X' | dd of="$blob" bs=1 seek=100 conv=notrunc status=none
rc=0; in_root ferry verify "$WORK/store" > /dev/null 2>&1 || rc=$?
[ "$rc" = 1 ] || fail "ferry verify of a corrupted store exited $rc, expected 1"

step "the .tar.gz, unpacked with --strip-components=1 (as into /usr/local), runs the same"
mkdir -p "$ROOT$WORK/local"
tar -xzf "$TARBALL" -C "$ROOT$WORK/local" --strip-components=1
got=$(in_root "$WORK/local/bin/ferry" --version)
[ "$got" = "$want" ] || fail "the tarball's ferry --version: '$got', expected '$want'"
rc=0; in_root "$WORK/local/bin/ferry" verify "$WORK/store" > /dev/null 2>&1 || rc=$?
[ "$rc" = 1 ] || fail "the tarball's ferry verify of the corrupted store exited $rc, expected 1"

step "dpkg -r ferry removes every installed file"
installed=$(in_root dpkg -L ferry)
in_root dpkg -r ferry > "$DIST/dpkg-remove.log" 2>&1 || { cat "$DIST/dpkg-remove.log" >&2; fail "dpkg -r"; }
while read -r f; do
  if [ -f "$ROOT$f" ]; then fail "$f is still there after dpkg -r"; fi
done <<< "$installed"
rm -rf "${ROOT:?}$WORK"
step "ok: the .deb installs into a fresh $CODENAME root and works from the installed paths"
