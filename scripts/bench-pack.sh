#!/usr/bin/env bash
# Benchmark: ferry-pack against what a user does without ferry, in the same run: one
# `skopeo copy --all docker://... oci:LAYOUT:REF` per image into one OCI layout, then
# `tar -cf - -C LAYOUT . | zstd -T0`. Images (incompressible layers, at least 1 GiB by default)
# sit in a real local registry (distribution v2.8, TLS with a private CA) on 127.0.0.1.
# Cold: ferry-pack with an empty --cache (every blob pulled); warm: the same command again (cache
# full: only the package is written). Median of FERRY_BENCH_ROUNDS rounds (default 3); peak RSS
# of every command; package sizes compared.
#   scripts/bench-pack.sh [SIZE_MIB]      (default 1100)
# Prints a Markdown section to stdout (paste into BENCHMARKS.md); progress goes to stderr.
# FERRY_BENCH_DIR: work directory (default target/bench-pack); FERRY_BENCH_KEEP=1 keeps files.
# Then runs scripts/bench-volumes.sh (volume sets with parity vs the single package) unless
# FERRY_BENCH_VOLUMES=0.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bench-lib.sh

SIZE_MIB=${1:-1100}
ROUNDS=${FERRY_BENCH_ROUNDS:-3}
bash scripts/install-deps.sh
cargo build --release --workspace --bins --locked -q
BIN="$PWD/target/release"
WORK="${FERRY_BENCH_DIR:-$PWD/target/bench-pack}"
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
  if [ "${FERRY_BENCH_KEEP:-0}" != 1 ]; then rm -rf "$WORK/layout" "$WORK/peer" "$WORK/cache" "$WORK"/*.tar.zst "$REG/storage" "$WORK/fixture"; fi
}
trap cleanup EXIT
rm -rf "$WORK"; mkdir -p "$WORK" "$REG/certs.d"
: > "$BENCH_RESULTS"

echo "registry: CA and certificate" >&2
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=ferry bench CA" \
  -keyout "$REG/ca.key" -out "$REG/ca.crt" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" -keyout "$REG/server.key" \
  -out "$REG/server.csr" 2>/dev/null
printf '%s\n' "subjectAltName=IP:127.0.0.1" "basicConstraints=CA:FALSE" \
  "keyUsage=critical,digitalSignature" "extendedKeyUsage=serverAuth" > "$REG/server.ext"
openssl x509 -req -in "$REG/server.csr" -CA "$REG/ca.crt" -CAkey "$REG/ca.key" -CAcreateserial \
  -sha256 -days 2 -extfile "$REG/server.ext" -out "$REG/server.crt" 2>/dev/null
cp "$REG/ca.crt" "$REG/certs.d/ca.crt"

mkdir -p "$REG/storage"
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
  secret: "ferry-bench-pack-secret-5d1c9e2f7a3b"
  tls:
    certificate: "$REG/server.crt"
    key: "$REG/server.key"
YML
/usr/bin/docker-registry serve "$REG/config.yml" > "$REG/registry.log" 2>&1 &
REG_PID=$!
for i in $(seq 1 100); do
  if curl -sf -o /dev/null --cacert "$REG/ca.crt" "https://127.0.0.1:$PORT/v2/"; then break; fi
  sleep 0.1
done
HOST="127.0.0.1:$PORT"

LAYER_MIB=16
LAYERS=4
IMAGES=$(( (SIZE_MIB + LAYER_MIB * LAYERS - 1) / (LAYER_MIB * LAYERS) ))
echo "seeding $HOST: $IMAGES images x $LAYERS incompressible ${LAYER_MIB} MiB layers (ferry-fixture + ferry-push)" >&2
"$BIN/ferry-fixture" --out "$WORK/fixture" --format dir --seed 21 --images "$IMAGES" --layers "$LAYERS" \
  --layer-size "${LAYER_MIB}MiB" --incompressible --no-shared-base > /dev/null
"$BIN/ferry-push" --source "$WORK/fixture" --private-registry "$HOST" --cacert "$REG/ca.crt" \
  --need-credential=false > /dev/null
rm -rf "$WORK/fixture"
LIST="$WORK/images.txt"
curl -sf --cacert "$REG/ca.crt" "https://$HOST/v2/_catalog?n=1000" \
  | python3 -c 'import json,sys; [print(r) for r in json.load(sys.stdin)["repositories"]]' \
  | while read -r repo; do echo "$HOST/$repo:1.8.0"; done > "$LIST"
echo "$(wc -l < "$LIST") images listed in $LIST" >&2

peer() {
  rm -rf "$WORK/peer"; mkdir -p "$WORK/peer"
  while read -r ref; do
    skopeo copy -q --all --src-cert-dir "$REG/certs.d" "docker://$ref" "oci:$WORK/peer:$ref"
  done < "$LIST"
  tar -cf - -C "$WORK/peer" . | zstd -q -T0 -o "$WORK/peer.tar.zst" -f
}
export -f peer
export WORK REG LIST

# `sync` (untimed) before every timed command: the peer leaves its 2.4 GB of writes in the page
# cache (nothing it runs fsyncs), and the next command would otherwise pay for their writeback.
for round in $(seq 1 "$ROUNDS"); do
  echo "round $round" >&2
  sync
  time_cmd "skopeo copy --all + tar | zstd -T0 (round $round)" bash -c peer
  rm -rf "$WORK/cache" "$WORK/ferry.tar.zst"
  sync
  time_cmd "ferry-pack cold (round $round)" "$BIN/ferry-pack" --out "$WORK/ferry.tar.zst" \
    --images "$LIST" --cache "$WORK/cache" --cacert "$REG/ca.crt" --need-credential=false
  sync
  time_cmd "dd conv=fsync of the package's size (round $round)" dd if=/dev/zero \
    of="$WORK/dd.bin" bs=1M count="$(( $(stat -c %s "$WORK/ferry.tar.zst") / 1048576 ))" conv=fsync status=none
  rm -f "$WORK/dd.bin"
  sync
  time_cmd "ferry-pack warm cache (round $round)" "$BIN/ferry-pack" --out "$WORK/ferry.tar.zst" \
    --images "$LIST" --cache "$WORK/cache" --cacert "$REG/ca.crt" --need-credential=false
done

"$BIN/ferry-verify" "$WORK/ferry.tar.zst" > /dev/null
PEER_S=$(bench_median "skopeo copy --all + tar | zstd -T0")
COLD_S=$(bench_median "ferry-pack cold")
WARM_S=$(bench_median "ferry-pack warm cache")
FLOOR_S=$(bench_median "dd conv=fsync of the package's size")
PEER_BYTES=$(stat -c %s "$WORK/peer.tar.zst")
FERRY_BYTES=$(stat -c %s "$WORK/ferry.tar.zst")
COLD_RSS=$(bench_rss_mib "ferry-pack cold")
WARM_RSS=$(bench_rss_mib "ferry-pack warm cache")
PEER_RSS=$(bench_rss_mib "skopeo copy --all + tar | zstd -T0")
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.2f", a / b}'; }
SIZE_PCT=$(awk -v f="$FERRY_BYTES" -v p="$PEER_BYTES" 'BEGIN{printf "%+.2f", (f - p) * 100 / p}')

cat <<MD
### Pack: ferry-pack vs skopeo copy --all + tar | zstd -T0 ($(date -u +%Y-%m-%d))

Command: \`scripts/bench-pack.sh $SIZE_MIB\` (median of $ROUNDS rounds). Machine: $(bench_machine).
Images: $(wc -l < "$LIST") images x $LAYERS incompressible ${LAYER_MIB} MiB layers in a local registry (distribution v2.8, TLS with a private CA) on 127.0.0.1.

| case | seconds | peak RSS | package bytes | vs peer |
|---|---|---|---|---|
| peer: \`skopeo copy --all\` per image into one OCI layout, then \`tar \| zstd -T0\` | $PEER_S | ${PEER_RSS} MiB (largest process) | $PEER_BYTES | 1.00x |
| ferry-pack, empty cache (every blob pulled) | $COLD_S | ${COLD_RSS} MiB | $FERRY_BYTES ($SIZE_PCT%) | **$(ratio "$PEER_S" "$COLD_S")x** faster |
| ferry-pack again, cache full (package written only) | $WARM_S | ${WARM_RSS} MiB | same bytes | $(ratio "$PEER_S" "$WARM_S")x faster |
| for scale: \`dd bs=1M conv=fsync\` of the package's size to the same disk | $FLOOR_S | | | (a virtual disk: its speed varies run to run) |

Targets: at least 2x faster than the peer, package within 2% of its size, peak RSS under 100 MiB.
ferry-pack's times include making the package durable (fsync); the peer's do not (\`zstd -o\` never
syncs): \`sync\` runs, untimed, before every command so none pays for another's writeback.
MD

# Volume sets (issue #13): packing with --volume-size and --parity 2 against packing one
# package, and pushing the set against pushing the package, same run (its own script, so it can
# also be run alone). FERRY_BENCH_VOLUMES=0 skips it.
if [ "${FERRY_BENCH_VOLUMES:-1}" != 0 ]; then
  echo
  bash scripts/bench-volumes.sh "$SIZE_MIB"
fi
