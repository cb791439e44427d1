#!/usr/bin/env bash
# Benchmark: ferry-verify against the machine's own ceiling or the tool a user would run instead,
# measured in the same run, round by round (every figure is a ratio; absolute speeds drift on
# shared machines). Cases:
#   warm many   16 blobs of SIZE/16 in the page cache: `openssl speed -multi $(nproc)` (ceiling)
#               and `find | xargs -P$(nproc) openssl dgst -sha256` (peer)
#   warm huge   one blob of HUGE MiB: `openssl speed` on one core (ceiling)
#   --fast      many and huge: `b3sum` over the same files (peer)
#   cold        many and huge, full and --fast: `cat` of the same files after the same eviction
#               (peer); one huge blob's full digest is one core's work, so its peer is the slower
#               of `cat` and one core's sha256 ceiling
#   package     .tar.zst and .tar.xz (multi-block) of the many-blob images: `zstd -dc`,
#               `xz -T0 -dc` to /dev/null (the decoder's own speed, peer)
# The ceiling is `openssl speed -elapsed` (wall clock, like every other figure here; without
# -elapsed openssl divides by its user CPU time, which other processes on a shared machine do not
# slow down). Each round measures the ceiling or peer next to ferry; a case's ratio is the median of
# its per-round ratios (FERRY_BENCH_ROUNDS rounds, default 3).
#   scripts/bench-verify.sh [SIZE_MIB]   default 1024 (16 x 64 MiB); huge blob FERRY_BENCH_HUGE_MIB
#                                        (default 4096; SIZE_MIB when SIZE_MIB < 1024: a smoke run,
#                                        e.g. `scripts/bench-verify.sh 64`)
# Prints a Markdown section to stdout (paste into BENCHMARKS.md); progress goes to stderr.
# FERRY_BENCH_DIR: work directory (default target/bench-verify); FERRY_BENCH_KEEP=1 keeps the data.
# b3sum: taken from PATH, else installed once with `cargo install b3sum --locked --root target/b3sum`.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bench-lib.sh

SIZE_MIB=${1:-1024}
if [ "$SIZE_MIB" -lt 1024 ]; then HUGE_DEFAULT=$SIZE_MIB; else HUGE_DEFAULT=4096; fi
HUGE_MIB=${FERRY_BENCH_HUGE_MIB:-$HUGE_DEFAULT}
ROUNDS=${FERRY_BENCH_ROUNDS:-3}
BLOBS=16
LAYER_MIB=$(( (SIZE_MIB + BLOBS - 1) / BLOBS ))
CORES=$(nproc)

bash scripts/install-deps.sh
cargo build --release --workspace --bins --locked -q
BIN="$PWD/target/release"
B3SUM=$(command -v b3sum || true)
if [ -z "$B3SUM" ]; then
  B3SUM="$PWD/target/b3sum/bin/b3sum"
  if [ ! -x "$B3SUM" ]; then
    echo "installing b3sum (the reference blake3 tool) into target/b3sum" >&2
    cargo install b3sum --locked --root "$PWD/target/b3sum" -q
  fi
fi
WORK="${FERRY_BENCH_DIR:-$PWD/target/bench-verify}"
rm -rf "$WORK"; mkdir -p "$WORK"
export BENCH_RESULTS="$WORK/results.txt"
: > "$BENCH_RESULTS"
cleanup() {
  release_page_reporting
  if [ "${FERRY_BENCH_KEEP:-0}" != 1 ]; then rm -rf "$WORK/layout" "$WORK/many" "$WORK/huge" "$WORK"/pkg.*; fi
}
trap cleanup EXIT

# Data: 4 images x 4 incompressible layers (16 blobs), exported to a store (with the blake3
# sidecar --fast reads) and packed as .tar.zst and multi-block .tar.xz; one image of one huge layer.
FIX=(--seed 11 --images 4 --layers 4 --layer-size "${LAYER_MIB}MiB" --incompressible --no-shared-base)
echo "generating 16 x ${LAYER_MIB} MiB (store, .tar.zst, .tar.xz) and 1 x ${HUGE_MIB} MiB" >&2
"$BIN/ferry-fixture" --out "$WORK/layout" --format dir "${FIX[@]}" > /dev/null
"$BIN/ferry-export" --source "$WORK/layout" --to "$WORK/many" > /dev/null
rm -rf "$WORK/layout"
"$BIN/ferry-fixture" --out "$WORK/pkg.tar.zst" --format tar.zst "${FIX[@]}" > /dev/null
"$BIN/ferry-fixture" --out "$WORK/pkg.tar.xz" --format tar.xz-mt "${FIX[@]}" > /dev/null
"$BIN/ferry-fixture" --out "$WORK/layout" --format dir --seed 12 --images 1 --layers 1 \
  --layer-size "${HUGE_MIB}MiB" --incompressible --no-shared-base > /dev/null
"$BIN/ferry-export" --source "$WORK/layout" --to "$WORK/huge" > /dev/null
rm -rf "$WORK/layout"

bytes_of() { find "$@" -type f -printf '%s\n' | awk '{s+=$1} END{printf "%.0f", s}'; }  # not %d: mawk caps it at 2^31-1
MANY_BYTES=$(bytes_of "$WORK/many/blobs")
HUGE_BYTES=$(bytes_of "$WORK/huge/blobs")
PKG_BYTES=$(zstd -dc "$WORK/pkg.tar.zst" | wc -c)
echo "many: $(find "$WORK/many/blobs" -type f | wc -l) blobs, $((MANY_BYTES / 1048576)) MiB;" \
  "huge: $((HUGE_BYTES / 1048576)) MiB; packages: $((PKG_BYTES / 1048576)) MiB of tar" >&2

# Sanity (untimed, also the warm-up): everything verifies, --fast uses the sidecar, the peers agree.
for s in many huge; do
  "$BIN/ferry-verify" "$WORK/$s" > /dev/null
  if ! "$BIN/ferry-verify" --fast --json "$WORK/$s" | grep -q '"fast_fallback_blobs": 0'; then
    echo "ferry-verify --fast fell back to full digests in $s: not a ferry-export store?" >&2; exit 1
  fi
  find "$WORK/$s/blobs" -type f -print0 | xargs -0 openssl dgst -sha256 -r \
    | awk '{n=$2; sub(/.*\//, "", n); sub(/^\*/, "", n); if (n != $1) bad++} END{if (bad) {print bad " mismatch(es)" > "/dev/stderr"; exit 1}}'
done
"$BIN/ferry-verify" "$WORK/pkg.tar.zst" "$WORK/pkg.tar.xz" > /dev/null

# sha256 in memory, no I/O: on every core (-multi) or on one; GB/s of wall-clock time.
sha_ceiling() { # [multi]
  local args=(-elapsed -seconds 2 -bytes 1048576 -evp sha256)
  if [ "${1:-}" = multi ]; then args=(-multi "$CORES" "${args[@]}"); fi
  openssl speed "${args[@]}" 2>/dev/null \
    | awk '/^sha256/ {v=$NF; sub(/k$/, "", v); x=v * 1000 / 1e9} END{printf "%.3f", x}'
}
# record LABEL ROUND VALUE: a non-timed figure (a ceiling, in GB/s) into the results.
record() { printf '%s (round %s) %s 0\n' "$1" "$2" "$3" >> "$BENCH_RESULTS"; }
hash_files() { find "$1" -type f -print0 | xargs -0 -P"$CORES" -n 4 openssl dgst -sha256 > /dev/null; }
export -f hash_files; export CORES
# After each eviction, as much memory as three stores is filled and freed. On a VM whose balloon
# driver reports free pages to the host (free page reporting), memory freed a few seconds ago has
# been handed back, and the next process to fill it (with page cache, here) pays for the host
# backing it again: measured `cat` of the cold store 0.36-0.48 s right after an eviction, 1.7 s
# (sys 0.06 -> 1.1 s) after a 5 s pause. Filling first gives every cold run the same start.
evict() { # DIR BYTES
  evict_cache "$1"
  python3 -c 'import sys; bytearray(int(sys.argv[1]))' "$((3 * $2))"
}
hold_page_reporting

echo "CPU-time ceilings for the record (openssl speed without -elapsed):" >&2
CPU_MULTI=$(openssl speed -multi "$CORES" -seconds 2 -bytes 1048576 -evp sha256 2>/dev/null \
  | awk '/^sha256/ {v=$NF; sub(/k$/, "", v); x=v * 1000 / 1e9} END{printf "%.2f", x}')
echo "  sha256 on $CORES cores by CPU time: $CPU_MULTI GB/s" >&2

# pair LABEL_A LABEL_B -- CMD_A... -- CMD_B...: both timed in this round, A first in odd rounds.
pair() {
  local la=$1 lb=$2; shift 3
  local a=() b=()
  while [ "$1" != -- ]; do a+=("$1"); shift; done
  shift
  b=("$@")
  if [ $((round % 2)) = 1 ]; then
    time_cmd "$la (round $round)" "${a[@]}"; time_cmd "$lb (round $round)" "${b[@]}"
  else
    time_cmd "$lb (round $round)" "${b[@]}"; time_cmd "$la (round $round)" "${a[@]}"
  fi
}
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
for round in $(seq 1 "$ROUNDS"); do
  echo "round $round/$ROUNDS" >&2
  # Warm: every file in the page cache.
  cat "$WORK/many/blobs"/*/* "$WORK/huge/blobs"/*/* "$WORK"/pkg.* > /dev/null
  c=$(sha_ceiling multi); record "ceiling multi" "$round" "$c"; echo "  sha256 ceiling, $CORES cores: $c GB/s" >&2
  # Each pair runs ferry first in odd rounds and the peer first in even ones: on a VM whose CPU
  # is throttled after a burst (the ceiling runs just before), neither always comes second.
  pair "many verify" "many xargs" \
    -- "$BIN/ferry-verify" "$WORK/many" \
    -- bash -c 'hash_files "$1"' _ "$WORK/many/blobs"
  pair "many fast" "many b3sum" \
    -- "$BIN/ferry-verify" --fast "$WORK/many" \
    -- bash -c '"$1" "$2"/blobs/*/* > /dev/null' _ "$B3SUM" "$WORK/many"
  c=$(sha_ceiling); record "ceiling one" "$round" "$c"; echo "  sha256 ceiling, 1 core: $c GB/s" >&2
  time_cmd "huge verify (round $round)" "$BIN/ferry-verify" "$WORK/huge"
  pair "huge fast" "huge b3sum" \
    -- "$BIN/ferry-verify" --fast "$WORK/huge" \
    -- bash -c '"$1" "$2"/blobs/*/* > /dev/null' _ "$B3SUM" "$WORK/huge"
  pair "zst verify" "zst decoder" \
    -- "$BIN/ferry-verify" "$WORK/pkg.tar.zst" \
    -- bash -c 'zstd -q -dc "$1" > /dev/null' _ "$WORK/pkg.tar.zst"
  pair "xz verify" "xz decoder" \
    -- "$BIN/ferry-verify" "$WORK/pkg.tar.xz" \
    -- bash -c 'xz -T0 -dc "$1" > /dev/null' _ "$WORK/pkg.tar.xz"
  # Cold: the same eviction before every run; the peer first in odd rounds, last in even ones.
  if [ $((round % 2)) = 1 ]; then order="cat verify fast"; else order="verify fast cat"; fi
  for s in many huge; do
    if [ $s = many ]; then n=$MANY_BYTES; p=cold; else n=$HUGE_BYTES; p="cold huge"; fi
    for t in $order; do
      evict "$WORK/$s" "$n"
      case $t in
        cat) time_cmd "$p cat (round $round)" bash -c 'cat "$1"/blobs/*/* > /dev/null' _ "$WORK/$s" ;;
        verify) time_cmd "$p verify (round $round)" "$BIN/ferry-verify" "$WORK/$s" ;;
        fast) time_cmd "$p fast (round $round)" "$BIN/ferry-verify" --fast "$WORK/$s" ;;
      esac
    done
  done
done
RESIDENT=$(evict "$WORK/many" "$MANY_BYTES"; cached_pct "$WORK/many")

# Per round: seconds (or GB/s for ceilings) of LABEL.
# (Labels are matched from the line's start: "huge fast" is not "cold huge fast".)
value() { awk -v l="$1 (round $2)" 'index($0, l) == 1 {print $(NF-1)}' "$BENCH_RESULTS"; }
median() { sort -n | awk '{v[NR]=$1} END{if (NR) print v[int((NR+1)/2)]; else print "n/a"}'; }
# ratio_peer FERRY PEER: median over rounds of peer seconds / ferry seconds.
ratio_peer() {
  for r in $(seq 1 "$ROUNDS"); do
    awk -v f="$(value "$1" "$r")" -v p="$(value "$2" "$r")" 'BEGIN{if (f > 0) printf "%.3f\n", p/f}'
  done | median
}
# ratio_ceiling FERRY CEILING BYTES: median over rounds of (BYTES / ferry seconds) / ceiling GB/s.
ratio_ceiling() {
  for r in $(seq 1 "$ROUNDS"); do
    awk -v f="$(value "$1" "$r")" -v c="$(value "$2" "$r")" -v b="$3" \
      'BEGIN{if (f > 0 && c > 0) printf "%.3f\n", b/f/1e9/c}'
  done | median
}
secs() { for r in $(seq 1 "$ROUNDS"); do value "$1" "$r"; done | median; }
gbs() { awk -v b="$1" -v s="$(secs "$2")" 'BEGIN{if (s > 0) printf "%.2f", b/s/1e9; else print "n/a"}'; }
ceil() { for r in $(seq 1 "$ROUNDS"); do value "$1" "$r"; done | median | awk '{printf "%.2f", $1}'; }
pct() { awk -v x="$1" 'BEGIN{printf "%.0f%%", 100*x}'; }
verdict() { awk -v v="$1" -v t="$2" 'BEGIN{if (v != "n/a" && v + 0 >= t) print "**met**"; else print "**not met**"}'; }
rss() { bench_rss_mib "$1"; }

R_MANY=$(ratio_ceiling "many verify" "ceiling multi" "$MANY_BYTES")
X_MANY=$(ratio_peer "many verify" "many xargs")
R_HUGE=$(ratio_ceiling "huge verify" "ceiling one" "$HUGE_BYTES")
X_FMANY=$(ratio_peer "many fast" "many b3sum")
X_FHUGE=$(ratio_peer "huge fast" "huge b3sum")
X_CFULL=$(ratio_peer "cold verify" "cold cat")
X_CFAST=$(ratio_peer "cold fast" "cold cat")
X_HFAST=$(ratio_peer "cold huge fast" "cold huge cat")
# One huge blob's sha256 is one core's work: its peer per round is the slower of `cat` and one
# core's ceiling over the same bytes.
for r in $(seq 1 "$ROUNDS"); do
  awk -v c="$(value "cold huge cat" "$r")" -v g="$(value "ceiling one" "$r")" -v b="$HUGE_BYTES" -v r="$r" \
    'BEGIN{h = b/1e9/g; if (h > c) c = h; printf "cold huge bound (round %s) %.3f 0\n", r, c}' >> "$BENCH_RESULTS"
done
X_HFULL=$(ratio_peer "cold huge verify" "cold huge bound")
X_ZST=$(ratio_peer "zst verify" "zst decoder")
X_XZ=$(ratio_peer "xz verify" "xz decoder")
NOTE=""
if [ "$SIZE_MIB" -lt 1024 ]; then NOTE=" **Smoke run (below 16 x 64 MiB): timings this short are not meaningful.**"; fi

cat <<MD
### ferry-verify against the machine's ceilings ($(date -u +%Y-%m-%d))

Command: \`scripts/bench-verify.sh $SIZE_MIB\` (huge blob ${HUGE_MIB} MiB) — machine: $(bench_machine) (\`lscpu\`: $(lscpu | awk -F: '/^Model name/ {gsub(/^ +/, "", $2); print $2}'), \`nproc\`: $CORES); load average before / after: $LOAD_BEFORE / $(cut -d' ' -f1-3 /proc/loadavg) (other work on the machine shares its cores).
Data: 16 incompressible blobs of ${LAYER_MIB} MiB (4 images x 4 layers; $((MANY_BYTES / 1000000)) MB with configs and manifests) exported by \`ferry-export\` (blake3 sidecar for \`--fast\`), the same images packed as \`.tar.zst\` and multi-block \`.tar.xz\` ($((PKG_BYTES / 1000000)) MB of tar each; xz stores random data uncompressed, as it does real gzipped layers), and a store of one ${HUGE_MIB} MiB layer.$NOTE
$ROUNDS rounds; every round measures the ceiling or peer next to ferry, and a ratio is the median of the per-round ratios (seconds are medians too). Ceilings are \`openssl speed -elapsed -bytes 1048576 -evp sha256\` (wall clock, as ferry is timed; by CPU time, \`-multi $CORES\` gave $CPU_MULTI GB/s). Cold runs follow ${BENCH_EVICT_METHOD:-no} eviction of the store (${RESIDENT}% of it resident afterwards); free page reporting to the hypervisor: $BENCH_PAGE_REPORTING.

| case | ceiling or peer | its figure | ferry | ferry | ratio | target |
|---|---|---|---|---|---|---|
| warm, 16 blobs, full | sha256 in memory, $CORES cores | $(ceil "ceiling multi") GB/s | \`ferry-verify STORE\` | $(secs "many verify") s, $(gbs "$MANY_BYTES" "many verify") GB/s, $(rss "many verify") MiB | $(pct "$R_MANY") of ceiling | ≥ 90%: $(verdict "$R_MANY" 0.9) |
| warm, 16 blobs, full | \`find \| xargs -P$CORES openssl dgst -sha256\` | $(secs "many xargs") s | same run | | ${X_MANY}x | ≥ 1.0x: $(verdict "$X_MANY" 1.0) |
| warm, one ${HUGE_MIB} MiB blob, full | sha256 in memory, 1 core | $(ceil "ceiling one") GB/s | \`ferry-verify STORE\` | $(secs "huge verify") s, $(gbs "$HUGE_BYTES" "huge verify") GB/s, $(rss "huge verify") MiB | $(pct "$R_HUGE") of ceiling | ≥ 90%: $(verdict "$R_HUGE" 0.9) |
| warm, 16 blobs, \`--fast\` | \`b3sum\` | $(secs "many b3sum") s | \`ferry-verify --fast\` | $(secs "many fast") s, $(gbs "$MANY_BYTES" "many fast") GB/s | ${X_FMANY}x | ≥ 1.0x: $(verdict "$X_FMANY" 1.0) |
| warm, one ${HUGE_MIB} MiB blob, \`--fast\` | \`b3sum\` | $(secs "huge b3sum") s | \`ferry-verify --fast\` | $(secs "huge fast") s, $(gbs "$HUGE_BYTES" "huge fast") GB/s | ${X_FHUGE}x | ≥ 1.0x: $(verdict "$X_FHUGE" 1.0) |
| cold, 16 blobs, full | \`cat\` to /dev/null | $(secs "cold cat") s, $(gbs "$MANY_BYTES" "cold cat") GB/s | \`ferry-verify STORE\` | $(secs "cold verify") s, $(gbs "$MANY_BYTES" "cold verify") GB/s | $(pct "$X_CFULL") of cat | ≥ 90%: $(verdict "$X_CFULL" 0.9) |
| cold, 16 blobs, \`--fast\` | \`cat\` to /dev/null | (same) | \`ferry-verify --fast\` | $(secs "cold fast") s, $(gbs "$MANY_BYTES" "cold fast") GB/s | $(pct "$X_CFAST") of cat | ≥ 90%: $(verdict "$X_CFAST" 0.9) |
| cold, one ${HUGE_MIB} MiB blob, full | slower of \`cat\` and one core's sha256 | $(secs "cold huge bound") s (\`cat\` $(secs "cold huge cat") s) | \`ferry-verify STORE\` | $(secs "cold huge verify") s, $(gbs "$HUGE_BYTES" "cold huge verify") GB/s | $(pct "$X_HFULL") of it | ≥ 90%: $(verdict "$X_HFULL" 0.9) |
| cold, one ${HUGE_MIB} MiB blob, \`--fast\` | \`cat\` to /dev/null | $(secs "cold huge cat") s, $(gbs "$HUGE_BYTES" "cold huge cat") GB/s | \`ferry-verify --fast\` | $(secs "cold huge fast") s, $(gbs "$HUGE_BYTES" "cold huge fast") GB/s | $(pct "$X_HFAST") of cat | ≥ 90%: $(verdict "$X_HFAST" 0.9) |
| package \`.tar.zst\` | \`zstd -dc >/dev/null\` | $(secs "zst decoder") s, $(gbs "$PKG_BYTES" "zst decoder") GB/s | \`ferry-verify PKG\` | $(secs "zst verify") s, $(gbs "$PKG_BYTES" "zst verify") GB/s, $(rss "zst verify") MiB | $(pct "$X_ZST") of decoder | ≥ 90%: $(verdict "$X_ZST" 0.9) |
| package \`.tar.xz\` (multi-block) | \`xz -T0 -dc >/dev/null\` | $(secs "xz decoder") s, $(gbs "$PKG_BYTES" "xz decoder") GB/s | \`ferry-verify PKG\` | $(secs "xz verify") s, $(gbs "$PKG_BYTES" "xz verify") GB/s, $(rss "xz verify") MiB | $(pct "$X_XZ") of decoder | ≥ 90%: $(verdict "$X_XZ" 0.9) |
MD
# What the machine allows for .tar.zst: zstd decodes one stream on one core, and every byte must
# also be hashed (sha256 on one core per entry): the two together, shared by every core, bound
# any verifier from below. Printed so a target above the hardware shows as such.
ZST_BOUND=$(awk -v d="$(secs "zst decoder")" -v b="$PKG_BYTES" -v c="$(ceil "ceiling one")" -v n="$CORES" \
  'BEGIN{h = b/1e9/c; t = (d + h)/n; if (t < d) t = d; if (t < h/n) t = h/n; printf "%.3f", t}')
cat <<MD

Bound for \`.tar.zst\` on this machine: decoding ($(secs "zst decoder") s, one core) plus sha256 of the
$((PKG_BYTES / 1000000)) MB of tar ($(awk -v b="$PKG_BYTES" -v c="$(ceil "ceiling one")" 'BEGIN{printf "%.3f", b/1e9/c}') s on one core at the in-run ceiling), shared by $CORES cores:
at least $ZST_BOUND s, i.e. at most $(awk -v d="$(secs "zst decoder")" -v t="$ZST_BOUND" 'BEGIN{printf "%.0f%%", 100*d/t}') of the decoder's speed for any verifier; ferry-verify took
$(secs "zst verify") s ($(awk -v f="$(secs "zst verify")" -v t="$ZST_BOUND" 'BEGIN{printf "%.0f%%", 100*t/f}') of that bound).
MD
