#!/usr/bin/env bash
# Benchmark: ferry-export against the pipelines users would run instead
# (`xz -T0 -dc | tar -x`, `zstd -dc | tar -x`), in the same run, on a generated
# package of incompressible gzip-like layers. ferry also verifies every digest
# and fsyncs every blob; the pipelines do neither.
#   scripts/bench-export.sh [SIZE_MIB]      (default 1100)
# Prints a Markdown table to stdout (paste into BENCHMARKS.md).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bench-lib.sh

SIZE_MIB=${1:-1100}
bash scripts/install-deps.sh
cargo build --release --workspace --bins --locked -q
BIN="$PWD/target/release"
WORK="${FERRY_BENCH_DIR:-$PWD/target/bench-export}"
rm -rf "$WORK"; mkdir -p "$WORK"
export BENCH_RESULTS="$WORK/results.txt"
: > "$BENCH_RESULTS"

LAYER_MIB=16
LAYERS=4
IMAGES=$(( (SIZE_MIB + LAYER_MIB * LAYERS - 1) / (LAYER_MIB * LAYERS) ))
echo "generating ~${SIZE_MIB} MiB: $IMAGES images x $LAYERS layers x ${LAYER_MIB} MiB (incompressible)" >&2
"$BIN/ferry-fixture" --out "$WORK/layout" --format dir --seed 9 --images "$IMAGES" --layers "$LAYERS" \
  --layer-size "${LAYER_MIB}MiB" --incompressible --no-shared-base > /dev/null
tar -C "$WORK/layout" -cf "$WORK/pkg.tar" .
xz -T2 -0 -k -c "$WORK/pkg.tar" > "$WORK/pkg.tar.xz"       # multi-block, as `xz -T0` writes
zstd -q -T2 -3 -c "$WORK/pkg.tar" > "$WORK/pkg.tar.zst"
rm -rf "$WORK/layout"
TAR_BYTES=$(stat -c %s "$WORK/pkg.tar")
rm -f "$WORK/pkg.tar"
echo "package: $((TAR_BYTES / 1048576)) MiB tar; xz $(($(stat -c %s "$WORK/pkg.tar.xz") / 1048576)) MiB; zst $(($(stat -c %s "$WORK/pkg.tar.zst") / 1048576)) MiB" >&2

for round in 1 2 3; do
  for fmt in xz zst; do
    rm -rf "$WORK/out"; mkdir -p "$WORK/out"; sync
    if [ "$fmt" = xz ]; then
      time_cmd "xz -T0 -dc | tar -x (round $round)" bash -c "xz -T0 -dc '$WORK/pkg.tar.xz' | tar -x -C '$WORK/out' && sync"
    else
      time_cmd "zstd -dc | tar -x (round $round)" bash -c "zstd -dc '$WORK/pkg.tar.zst' | tar -x -C '$WORK/out' && sync"
    fi
    rm -rf "$WORK/out" "$WORK/store"; sync
    time_cmd "ferry-export tar.$fmt (round $round)" "$BIN/ferry-export" --source "$WORK/pkg.tar.$fmt" --to "$WORK/store"
  done
done
rm -rf "$WORK/out" "$WORK/store"

# Median of the three rounds per label.
median() { grep "^$1 (round" "$BENCH_RESULTS" | awk '{print $(NF-1)}' | sort -n | sed -n 2p; }
rss() { grep "^$1 (round" "$BENCH_RESULTS" | awk '{print $NF}' | sort -n | tail -1; }
XZP=$(median "xz -T0 -dc | tar -x"); ZSP=$(median "zstd -dc | tar -x")
FXZ=$(median "ferry-export tar.xz"); FZS=$(median "ferry-export tar.zst")
MB=$((TAR_BYTES / 1000000))
cat <<MD
### ferry-export ($(date -u +%Y-%m-%d))

Command: \`scripts/bench-export.sh $SIZE_MIB\` — machine: $(bench_machine).
Package: ${MB} MB tar of $IMAGES images x $LAYERS incompressible ${LAYER_MIB} MiB layers; \`.tar.xz\` written by \`xz -T2 -0\` (multi-block), \`.tar.zst\` by \`zstd -T2 -3\`. Median of 3 rounds, warm page cache for the input; every run ends with its output on disk (\`sync\` for the pipelines, fsync per blob for ferry).

| what | seconds | MB/s (tar bytes) | peak RSS | ratio to pipeline | target |
|---|---|---|---|---|---|
| \`xz -T0 -dc \| tar -x\` | $XZP | $(awk "BEGIN{printf \"%.0f\", $MB/$XZP}") | $(( $(rss "xz -T0 -dc | tar -x") / 1024 )) MiB | 1.00 | |
| \`ferry-export\` .tar.xz | $FXZ | $(awk "BEGIN{printf \"%.0f\", $MB/$FXZ}") | $(( $(rss "ferry-export tar.xz") / 1024 )) MiB | $(awk "BEGIN{printf \"%.2f\", $FXZ/$XZP}") | ≤ 1.05 |
| \`zstd -dc \| tar -x\` | $ZSP | $(awk "BEGIN{printf \"%.0f\", $MB/$ZSP}") | $(( $(rss "zstd -dc | tar -x") / 1024 )) MiB | 1.00 | |
| \`ferry-export\` .tar.zst | $FZS | $(awk "BEGIN{printf \"%.0f\", $MB/$FZS}") | $(( $(rss "ferry-export tar.zst") / 1024 )) MiB | $(awk "BEGIN{printf \"%.2f\", $FZS/$ZSP}") | ≤ 1.2 |
MD
