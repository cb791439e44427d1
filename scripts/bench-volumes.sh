#!/usr/bin/env bash
# Benchmark: volume sets against the single package, in the same run.
#  - pack: the same images written from a full cache (ferry-pack's writing half, through the
#    library: examples/pack_store.rs) as one .tar.zst, and as a volume set (--volume-size,
#    --parity 2). Ceiling: the set costs at most 1.3x the package.
#  - push: ferry-push of the package and of the set (read volume by volume, one pass), each into
#    a fresh local registry (distribution v2.8, plain HTTP, wiped storage). Ceiling: 1.1x.
#  - for information: the set pushed with one data volume missing (rebuilt from parity first).
# Median of FERRY_BENCH_ROUNDS rounds (default 3), runs interleaved; peak RSS of every command.
#   scripts/bench-volumes.sh [SIZE_MIB] [VOLUME_SIZE]      (defaults 1100, 128MiB)
# Prints a Markdown section to stdout (paste into BENCHMARKS.md); progress goes to stderr.
# FERRY_BENCH_DIR: work directory (default target/bench-volumes); FERRY_BENCH_KEEP=1 keeps files.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bench-lib.sh

SIZE_MIB=${1:-1100}
VOLUME_SIZE=${2:-128MiB}
ROUNDS=${FERRY_BENCH_ROUNDS:-3}
bash scripts/install-deps.sh
cargo build --release --workspace --bins --locked -q
cargo build --release -p ferry-package --example pack_store --locked -q
BIN="$PWD/target/release"
PACK="$BIN/examples/pack_store"
WORK="${FERRY_BENCH_DIR:-$PWD/target/bench-volumes}"
REG="$WORK/registry"
export BENCH_RESULTS="$WORK/results.txt"
REG_PID=""
stop_registry() {
  if [ -n "$REG_PID" ]; then
    kill "$REG_PID" 2>/dev/null || true
    wait "$REG_PID" 2>/dev/null || true
    REG_PID=""
  fi
}
cleanup() {
  stop_registry
  if [ "${FERRY_BENCH_KEEP:-0}" != 1 ]; then rm -rf "$WORK/cache" "$WORK/set" "$WORK/single.tar.zst" "$REG/storage" "$WORK/away"; fi
}
trap cleanup EXIT
rm -rf "$WORK"; mkdir -p "$WORK" "$REG"
: > "$BENCH_RESULTS"

# start_registry: a fresh registry on wiped storage; sets PORT, REG_PID.
start_registry() {
  stop_registry
  rm -rf "$REG/storage"; mkdir -p "$REG/storage"
  PORT=$(free_port)
  cat > "$REG/config.yml" <<YML
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: "$REG/storage"
http:
  addr: "127.0.0.1:$PORT"
  secret: "ferry-bench-volumes-secret-3e8a1c6d"
YML
  /usr/bin/docker-registry serve "$REG/config.yml" > "$REG/registry.log" 2>&1 &
  REG_PID=$!
  for _ in $(seq 1 100); do
    if curl -sf -o /dev/null "http://127.0.0.1:$PORT/v2/"; then return 0; fi
    sleep 0.1
  done
  echo "registry did not start" >&2; exit 2
}
push_to_fresh() { # LABEL SOURCE...
  local label=$1; shift
  start_registry
  local sources=()
  for s in "$@"; do sources+=(--source "$s"); done
  time_cmd "$label" "$BIN/ferry-push" "${sources[@]}" --private-registry "http://127.0.0.1:$PORT" \
    --need-credential=false
}

LAYER_MIB=16
LAYERS=4
IMAGES=$(( (SIZE_MIB + LAYER_MIB * LAYERS - 1) / (LAYER_MIB * LAYERS) ))
echo "cache: $IMAGES images x $LAYERS incompressible ${LAYER_MIB} MiB layers (ferry-fixture)" >&2
"$BIN/ferry-fixture" --out "$WORK/cache" --format dir --seed 23 --images "$IMAGES" --layers "$LAYERS" \
  --layer-size "${LAYER_MIB}MiB" --incompressible --no-shared-base > /dev/null

for round in $(seq 1 "$ROUNDS"); do
  echo "pack round $round" >&2
  rm -f "$WORK/single.tar.zst"
  time_cmd "pack: one package (round $round)" "$PACK" --cache "$WORK/cache" --out "$WORK/single.tar.zst"
  rm -rf "$WORK/set"; mkdir -p "$WORK/set"
  time_cmd "pack: volume set, parity 2 (round $round)" "$PACK" --cache "$WORK/cache" \
    --out "$WORK/set/bundle" --volume-size "$VOLUME_SIZE" --parity 2
done
DATA_VOLS=$(ls "$WORK/set"/*.vol* | wc -l)
PAR_VOLS=$(ls "$WORK/set"/*.par* | wc -l)
case "$VOLUME_SIZE" in
  *iB) LIMIT=$(numfmt --from=iec-i "${VOLUME_SIZE%B}") ;;
  *B) LIMIT=$(numfmt --from=si "${VOLUME_SIZE%B}") ;;
  *) LIMIT=$VOLUME_SIZE ;;
esac
LARGEST=$(stat -c %s "$WORK/set"/* | sort -n | tail -1)
SINGLE_BYTES=$(stat -c %s "$WORK/single.tar.zst")
SET_BYTES=$(stat -c %s "$WORK/set"/*.vol* | awk '{s+=$1} END{print s}')
"$BIN/ferry-verify" "$WORK/set" > /dev/null
if [ "$LARGEST" -gt "$LIMIT" ]; then echo "a volume is over $LIMIT bytes" >&2; exit 1; fi

for round in $(seq 1 "$ROUNDS"); do
  echo "push round $round" >&2
  push_to_fresh "push: one package (round $round)" "$WORK/single.tar.zst"
  push_to_fresh "push: volume set (round $round)" "$WORK/set"
done
mkdir -p "$WORK/away"
mv "$WORK/set"/bundle.vol002-of-* "$WORK/away/"
push_to_fresh "push: volume set, volume 2 missing (round 1)" "$WORK/set"
stop_registry

ratio() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.2f", a/b}'; }
P1=$(bench_median "pack: one package"); P2=$(bench_median "pack: volume set, parity 2")
U1=$(bench_median "push: one package"); U2=$(bench_median "push: volume set")
U3=$(bench_median "push: volume set, volume 2 missing")
cat <<MD
### Volume sets ($(date -u +%Y-%m-%d), scripts/bench-volumes.sh $SIZE_MIB $VOLUME_SIZE)

$(bench_machine). $IMAGES images, $((IMAGES * LAYERS)) incompressible ${LAYER_MIB} MiB layers;
zstd level 3, 2 threads. Set: $DATA_VOLS data + $PAR_VOLS parity volumes of at most $LIMIT bytes
(largest file: $LARGEST bytes); data volumes total $SET_BYTES bytes vs $SINGLE_BYTES for the package.
Medians of $ROUNDS interleaved rounds, same run.

| case | median s | peak RSS MiB | ratio | ceiling |
|---|---:|---:|---:|---:|
| pack: one package (from a full cache) | $P1 | $(bench_rss_mib "pack: one package") | 1.00 | |
| pack: volume set, --parity 2 | $P2 | $(bench_rss_mib "pack: volume set, parity 2") | $(ratio "$P2" "$P1") | 1.3 |
| push: one package (fresh registry) | $U1 | $(bench_rss_mib "push: one package") | 1.00 | |
| push: volume set (fresh registry) | $U2 | $(bench_rss_mib "push: volume set") | $(ratio "$U2" "$U1") | 1.1 |
| push: volume set, volume 2 missing (rebuilt first; 1 run) | $U3 | $(bench_rss_mib "push: volume set, volume 2 missing") | $(ratio "$U3" "$U1") | (info) |
MD
