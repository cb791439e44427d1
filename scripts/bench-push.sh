#!/usr/bin/env bash
# Benchmark: ferry-push against the path users take without ferry (unpack the package with
# `xz -T0 -dc | tar -x`, then one `skopeo copy --all oci:DIR:REF docker://...` per image), in the
# same run, on a generated package of incompressible layers, pushed to a real local registry
# (distribution v2.8, TLS with a private CA, htpasswd bcrypt auth) on 127.0.0.1.
# Cold: empty registry (restarted on wiped storage before every cold run), ferry including its
# staging (PKG.ferry-store deleted first). Warm: the same commands again, everything present.
# Median of FERRY_BENCH_ROUNDS rounds (default 3).
#   scripts/bench-push.sh [SIZE_MIB]      (default 1100: a package of at least 1 GiB)
# Prints a Markdown section to stdout (paste into BENCHMARKS.md); progress goes to stderr.
# FERRY_BENCH_DIR: work directory (default target/bench-push); FERRY_BENCH_FORMAT: tar.xz-mt
# (default, as bmctl packages are .tar.xz) or tar.zst; FERRY_BENCH_KEEP=1 keeps the bulk files.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bench-lib.sh

SIZE_MIB=${1:-1100}
ROUNDS=${FERRY_BENCH_ROUNDS:-3}
FORMAT=${FERRY_BENCH_FORMAT:-tar.xz-mt}
case $FORMAT in
  tar.xz-mt) PKG_EXT=tar.xz; UNPACK_CMD='xz -T0 -dc' ;;
  tar.zst) PKG_EXT=tar.zst; UNPACK_CMD='zstd -dc' ;;
  *) echo "FERRY_BENCH_FORMAT must be tar.xz-mt or tar.zst, not $FORMAT" >&2; exit 2 ;;
esac
bash scripts/install-deps.sh
cargo build --release --workspace --bins --locked -q
BIN="$PWD/target/release"
WORK="${FERRY_BENCH_DIR:-$PWD/target/bench-push}"
REG="$WORK/registry"
PKG="$WORK/pkg.$PKG_EXT"
STAGING="$PKG.ferry-store"
UNPACK="$WORK/unpacked"
REG_PID=""

stop_registry() {
  if [ -n "$REG_PID" ]; then
    kill "$REG_PID" 2>/dev/null || true
    wait "$REG_PID" 2>/dev/null || true
    REG_PID=""
  fi
}
REG2_PID=""
stop_second_registry() {
  if [ -n "$REG2_PID" ]; then
    kill "$REG2_PID" 2>/dev/null || true
    wait "$REG2_PID" 2>/dev/null || true
    REG2_PID=""
  fi
}
cleanup() {
  stop_registry
  stop_second_registry
  if [ "${FERRY_BENCH_KEEP:-0}" != 1 ]; then rm -rf "$PKG" "$STAGING" "$UNPACK" "$REG/storage"; fi
}
trap cleanup EXIT

rm -rf "$WORK"; mkdir -p "$WORK" "$REG/certs.d"
export BENCH_RESULTS="$WORK/results.txt"
: > "$BENCH_RESULTS"

# Private CA, server certificate for IP:127.0.0.1, bcrypt htpasswd.
echo "registry: CA, certificate, htpasswd" >&2
openssl req -x509 -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 -sha256 -days 2 \
  -subj "/CN=ferry bench CA" -keyout "$REG/ca.key" -out "$REG/ca.crt" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 -sha256 \
  -subj "/CN=127.0.0.1" -keyout "$REG/server.key" -out "$REG/server.csr" 2>/dev/null
printf '%s\n' "subjectAltName=IP:127.0.0.1" "basicConstraints=critical,CA:FALSE" \
  "keyUsage=critical,digitalSignature" "extendedKeyUsage=serverAuth" > "$REG/server.ext"
openssl x509 -req -in "$REG/server.csr" -CA "$REG/ca.crt" -CAkey "$REG/ca.key" -CAcreateserial \
  -sha256 -days 2 -extfile "$REG/server.ext" -out "$REG/server.crt" 2>/dev/null
cp "$REG/ca.crt" "$REG/certs.d/ca.crt"          # skopeo --dest-cert-dir: only the CA
REG_USER=ferry-bench
REG_PASS=$(openssl rand -hex 16)
( umask 077; printf '%s\n' "$REG_PASS" > "$REG/password" )
htpasswd -B -C 5 -bn "$REG_USER" "$REG_PASS" > "$REG/htpasswd" 2>/dev/null

# start_registry: a fresh registry on wiped storage and a free 127.0.0.1 port; sets PORT, REG_PID.
start_registry() {
  stop_registry
  rm -rf "$REG/storage"; mkdir -p "$REG/storage"
  local attempt i code
  for attempt in 1 2 3 4 5; do
    PORT=$(free_port)
    cat > "$REG/config.yml" <<YML
version: 0.1
log:
  level: info
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: "$REG/storage"
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: "127.0.0.1:$PORT"
  secret: "ferry-bench-http-secret-8c1e5d2f9a7b4e6c"
  tls:
    certificate: "$REG/server.crt"
    key: "$REG/server.key"
auth:
  htpasswd:
    realm: ferry-bench
    path: "$REG/htpasswd"
YML
    /usr/bin/docker-registry serve "$REG/config.yml" > "$REG/registry.log" 2>&1 &
    REG_PID=$!
    for i in $(seq 1 100); do
      code=$(curl -s -o /dev/null -w '%{http_code}' --cacert "$REG/ca.crt" "https://127.0.0.1:$PORT/v2/" || true)
      if [ "$code" = 401 ]; then return 0; fi
      if ! kill -0 "$REG_PID" 2>/dev/null; then break; fi
      sleep 0.1
    done
    stop_registry
    if ! grep -q 'address already in use' "$REG/registry.log"; then
      echo "registry did not start on 127.0.0.1:$PORT:" >&2
      tail -20 "$REG/registry.log" >&2
      exit 1
    fi
  done
  echo "registry: no free port after 5 attempts" >&2
  exit 1
}

# start_second_registry: a second fresh registry (same certificate and htpasswd, its own storage
# and port) beside the first; sets PORT2, REG2_PID.
start_second_registry() {
  stop_second_registry
  local first_reg=$REG first_port=$PORT first_pid=$REG_PID
  REG="$WORK/registry2"; REG_PID=""
  mkdir -p "$REG"
  cp "$first_reg/ca.crt" "$first_reg/server.crt" "$first_reg/server.key" "$first_reg/htpasswd" "$REG/"
  start_registry
  PORT2=$PORT; REG2_PID=$REG_PID
  REG=$first_reg; PORT=$first_port; REG_PID=$first_pid
}

LAYER_MIB=16
LAYERS=4
IMAGES=$(( (SIZE_MIB + LAYER_MIB * LAYERS - 1) / (LAYER_MIB * LAYERS) ))
if [ "$SIZE_MIB" -lt 1024 ]; then
  echo "note: ${SIZE_MIB} MiB is below the 1 GiB the targets are defined for: a smoke test only" >&2
fi
echo "generating ~${SIZE_MIB} MiB $FORMAT: $IMAGES images x $LAYERS layers x ${LAYER_MIB} MiB (incompressible)" >&2
"$BIN/ferry-fixture" --out "$PKG" --format "$FORMAT" --seed 13 --images "$IMAGES" --layers "$LAYERS" \
  --layer-size "${LAYER_MIB}MiB" --incompressible --no-shared-base > "$WORK/fixture.json"
# The same images with their blobs first and index.json last (what Hauler, Zarf and tar -c write).
PKG_LF="$WORK/pkg-layers-first.$PKG_EXT"
"$BIN/ferry-fixture" --out "$PKG_LF" --format "$FORMAT" --seed 13 --images "$IMAGES" --layers "$LAYERS" \
  --layer-size "${LAYER_MIB}MiB" --incompressible --no-shared-base --layers-first > /dev/null
PKG_BYTES=$(stat -c %s "$PKG")
# "reference digest" per image, from the fixture's JSON summary.
python3 - "$WORK/fixture.json" > "$WORK/images.txt" <<'PY'
import json, sys
for i in json.load(open(sys.argv[1]))["images"]:
    print(i["reference"], i["digest"])
PY
echo "package: $((PKG_BYTES / 1048576)) MiB, $(wc -l < "$WORK/images.txt") images" >&2

# Without ferry: unpack, then one skopeo copy per image (REF minus its host, under skopeo/).
cat > "$WORK/skopeo-copies.sh" <<'SH'
set -euo pipefail
# skopeo-copies.sh UNPACKED_DIR REGISTRY CERT_DIR CREDS IMAGES_TXT
while read -r ref _; do
  skopeo copy -q --all --dest-cert-dir "$3" --dest-creds "$4" "oci:$1:$ref" "docker://$2/skopeo/${ref#*/}" > /dev/null
done < "$5"
SH
cat > "$WORK/skopeo-two.sh" <<'SH'
set -euo pipefail
# skopeo-two.sh UNPACKED_DIR PACKAGE UNPACK_CMD REGISTRY1 REGISTRY2 CERT_DIR CREDS IMAGES_TXT
mkdir -p "$1"; $3 "$2" | tar -x -C "$1"
bash "$(dirname "$0")/skopeo-copies.sh" "$1" "$4" "$6" "$7" "$8"
bash "$(dirname "$0")/skopeo-copies.sh" "$1" "$5" "$6" "$7" "$8"
SH
skopeo_cmd() { # cold|warm -> CMD
  local copies=(bash "$WORK/skopeo-copies.sh" "$UNPACK" "127.0.0.1:$PORT" "$REG/certs.d" "$REG_USER:$REG_PASS" "$WORK/images.txt")
  if [ "$1" = cold ]; then
    CMD=(bash -c "set -euo pipefail; mkdir -p \"\$1\"; $UNPACK_CMD \"\$2\" | tar -x -C \"\$1\"; shift 2; \"\$@\"" _ "$UNPACK" "$PKG" "${copies[@]}")
  else
    CMD=("${copies[@]}")
  fi
}
push_cmd() { # [PACKAGE] -> CMD
  CMD=("$BIN/ferry-push" --source "${1:-$PKG}" --private-registry "127.0.0.1:$PORT/ferry" --cacert "$REG/ca.crt" \
    --username "$REG_USER" --password-stdin)
}
# check_pushed NAMESPACE: every image is in the registry under NAMESPACE with the fixture's digest.
check_pushed() {
  local ref digest got
  while read -r ref digest; do
    got=$(skopeo inspect --cert-dir "$REG/certs.d" --creds "$REG_USER:$REG_PASS" --format '{{.Digest}}' \
      "docker://127.0.0.1:$PORT/$1/${ref#*/}")
    if [ "$got" != "$digest" ]; then
      echo "127.0.0.1:$PORT/$1/${ref#*/}: digest $got, expected $digest" >&2
      exit 1
    fi
  done < "$WORK/images.txt"
  echo "  checked: every image in $1/ has its digest" >&2
}

cat "$PKG" "$PKG_LF" > /dev/null   # every side reads its package from a warm page cache
# Registry CPU (user + system) spent during a run: /proc/PID/stat ticks before and after.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
CPU_LOG="$WORK/registry-cpu.txt"; : > "$CPU_LOG"
for round in $(seq 1 "$ROUNDS"); do
  echo "round $round" >&2
  start_registry
  rm -rf "$STAGING"; sync
  c0=$(cpu_ticks "$REG_PID")
  push_cmd; time_cmd "ferry-push cold (round $round)" "${CMD[@]}" < "$REG/password"
  echo "one $(( $(cpu_ticks "$REG_PID") - c0 ))" >> "$CPU_LOG"
  if [ "$round" = 1 ]; then check_pushed ferry; fi
  push_cmd; time_cmd "ferry-push warm (round $round)" "${CMD[@]}" < "$REG/password"

  start_registry
  rm -rf "$PKG_LF.ferry-store"; sync
  push_cmd "$PKG_LF"; time_cmd "ferry-push layers-first cold (round $round)" "${CMD[@]}" < "$REG/password"
  if [ "$round" = 1 ]; then check_pushed ferry; test ! -e "$PKG_LF.ferry-store"; fi
  push_cmd "$PKG_LF"; time_cmd "ferry-push layers-first warm (round $round)" "${CMD[@]}" < "$REG/password"

  # Two registries at once from one read of the package.
  start_registry; start_second_registry
  a0=$(cpu_ticks "$REG_PID"); b0=$(cpu_ticks "$REG2_PID")
  push_cmd; CMD+=(--private-registry "127.0.0.1:$PORT2/ferry")
  time_cmd "ferry-push two registries cold (round $round)" "${CMD[@]}" < "$REG/password"
  echo "two $(( $(cpu_ticks "$REG_PID") - a0 + $(cpu_ticks "$REG2_PID") - b0 ))" >> "$CPU_LOG"
  if [ "$round" = 1 ]; then check_pushed ferry; PORT_SAVE=$PORT; PORT=$PORT2; check_pushed ferry; PORT=$PORT_SAVE; fi
  stop_second_registry

  start_registry
  rm -rf "$UNPACK"; sync
  skopeo_cmd cold; time_cmd "unpack + skopeo cold (round $round)" "${CMD[@]}"
  if [ "$round" = 1 ]; then check_pushed skopeo; fi
  skopeo_cmd warm; time_cmd "skopeo warm (round $round)" "${CMD[@]}"

  # Without ferry, two registries: one unpack, then the copy loop once per registry.
  start_registry; start_second_registry
  rm -rf "$UNPACK"; sync
  CMD=(bash "$WORK/skopeo-two.sh" "$UNPACK" "$PKG" "$UNPACK_CMD" "127.0.0.1:$PORT" "127.0.0.1:$PORT2" \
    "$REG/certs.d" "$REG_USER:$REG_PASS" "$WORK/images.txt")
  time_cmd "unpack + skopeo two registries cold (round $round)" "${CMD[@]}"
  stop_second_registry
done
stop_registry

# Markdown.
FC=$(bench_median "ferry-push cold"); FW=$(bench_median "ferry-push warm")
SC=$(bench_median "unpack + skopeo cold"); SW=$(bench_median "skopeo warm")
LC=$(bench_median "ferry-push layers-first cold"); LW=$(bench_median "ferry-push layers-first warm")
TC=$(bench_median "ferry-push two registries cold"); STC=$(bench_median "unpack + skopeo two registries cold")
FRSS=$(printf '%s\n' "$(bench_rss_mib "ferry-push cold")" "$(bench_rss_mib "ferry-push warm")" \
  "$(bench_rss_mib "ferry-push layers-first cold")" "$(bench_rss_mib "ferry-push layers-first warm")" \
  "$(bench_rss_mib "ferry-push two registries cold")" | sort -n | tail -1)
mbs() { awk -v b="$PKG_BYTES" -v s="$1" 'BEGIN{if (s > 0) printf "%.0f", b/s/1e6; else print "n/a"}'; }
speedup() { awk -v a="$1" -v b="$2" 'BEGIN{if (b > 0) printf "%.2f", a/b; else print "n/a"}'; }
meets() { awk -v v="$1" -v t="$2" 'BEGIN{if (v != "n/a" && v + 0 >= t) print "**met**"; else print "**not met**"}'; }
COLD_X=$(speedup "$SC" "$FC"); WARM_X=$(speedup "$SW" "$FW")
LF_X=$(speedup "$SC" "$LC"); LF_RATIO=$(speedup "$LC" "$FC")
TWO_X=$(speedup "$STC" "$TC"); TWO_RATIO=$(speedup "$TC" "$FC")
CLK=$(getconf CLK_TCK); CORES=$(nproc)
reg_cpu() { grep "^$1 " "$CPU_LOG" | awk '{print $2}' | sort -n | awk -v c="$CLK" '{v[NR]=$1} END{if (NR) printf "%.2f", v[int((NR+1)/2)]/c}'; }
RC1=$(reg_cpu one); RC2=$(reg_cpu two)
FLOOR=$(awk -v r="$RC2" -v n="$CORES" 'BEGIN{printf "%.2f", r/n}')
FLOOR_X=$(speedup "$FLOOR" "$FC")
at_most() { awk -v v="$1" -v t="$2" 'BEGIN{if (v != "n/a" && v + 0 <= t) print "**met**"; else print "**not met**"}'; }
ROUND_RATIOS=$(for r in $(seq 1 "$ROUNDS"); do
  f=$(grep -F "ferry-push cold (round $r)" "$BENCH_RESULTS" | awk '{print $(NF-1)}')
  k=$(grep -F "unpack + skopeo cold (round $r)" "$BENCH_RESULTS" | awk '{print $(NF-1)}')
  printf '%s / %s = %sx; ' "$k" "$f" "$(speedup "$k" "$f")"
done | sed 's/; $//')
if [ "$FRSS" -lt 100 ]; then RSS_OK="**met**"; else RSS_OK="**not met**"; fi
NOTE=""
if [ "$SIZE_MIB" -lt 1024 ]; then NOTE=" **Smoke test: below the 1 GiB the targets are defined for; timings this short are not meaningful.**"; fi
PKG_NAME=$(basename "$PKG")

cat <<MD
### ferry-push ($(date -u +%Y-%m-%d))

Command: \`scripts/bench-push.sh $SIZE_MIB\` — machine: $(bench_machine).
Package: \`$PKG_NAME\`, $((PKG_BYTES / 1000000)) MB ($FORMAT from \`ferry-fixture\`) of $IMAGES images x $LAYERS incompressible ${LAYER_MIB} MiB layers.$NOTE
Registry: distribution $(/usr/bin/docker-registry --version | awk '{print $NF}') on 127.0.0.1, TLS with a private CA, htpasswd (bcrypt cost 5), filesystem storage on the same disk; restarted on empty storage before every cold run. Median of $ROUNDS rounds; the package is in the page cache for every run. MB/s = package bytes / seconds (10^6 bytes).
- ferry: \`ferry-push --source $PKG_NAME --private-registry 127.0.0.1:PORT/ferry --cacert ca.crt --username $REG_USER --password-stdin\`; cold streams the package straight to the registry (its index comes first; any staging dir \`$PKG_NAME.ferry-store\` is deleted first; every blob hashed on the way); warm is the same command again (one tag HEAD per image).
- layers-first: the same images written blobs first and \`index.json\` last (\`ferry-fixture --layers-first\`, as Hauler, Zarf and \`tar -c\` write them), pushed with the same command: one read, blobs into \`ferry/ferry-holding\` as they are read, then mounted; no staging directory (checked).
- two registries: the index-first package with \`--private-registry\` given twice (two fresh registries, same certificate and credentials, both checked with skopeo): one read of the package for both.
- without ferry: \`$UNPACK_CMD $PKG_NAME | tar -x -C DIR\`, then for each image \`skopeo copy --all --dest-cert-dir CERTS --dest-creds U:P oci:DIR:REF docker://127.0.0.1:PORT/skopeo/PATH:TAG\` (one after the other); warm is the copies again.

| what | seconds | MB/s | peak RSS | x faster than skopeo | target |
|---|---|---|---|---|---|
| unpack + \`skopeo copy\`, cold | $SC | $(mbs "$SC") | $(bench_rss_mib "unpack + skopeo cold") MiB | 1.00 | |
| \`ferry-push\`, cold | $FC | $(mbs "$FC") | $(bench_rss_mib "ferry-push cold") MiB | $COLD_X | ≥ 2: $(meets "$COLD_X" 2) |
| \`skopeo copy\`, warm | $SW | $(mbs "$SW") | $(bench_rss_mib "skopeo warm") MiB | 1.00 | |
| \`ferry-push\`, warm | $FW | $(mbs "$FW") | $(bench_rss_mib "ferry-push warm") MiB | $WARM_X | ≥ 10: $(meets "$WARM_X" 10) |
| \`ferry-push\`, layers-first package, cold | $LC | $(mbs "$LC") | $(bench_rss_mib "ferry-push layers-first cold") MiB | $LF_X | ≥ 2: $(meets "$LF_X" 2) |
| unpack + \`skopeo copy\` to two registries (one unpack, a copy loop per registry), cold | $STC | $(mbs "$STC") | $(bench_rss_mib "unpack + skopeo two registries cold") MiB | 1.00 | |
| \`ferry-push\` to two registries at once (one read), cold | $TC | $(mbs "$TC") | $(bench_rss_mib "ferry-push two registries cold") MiB | $TWO_X | ≥ 2: $(meets "$TWO_X" 2) |
| \`ferry-push\`, layers-first package, warm | $LW | $(mbs "$LW") | $(bench_rss_mib "ferry-push layers-first warm") MiB | $(speedup "$SW" "$LW") | |

| target | measured | |
|---|---|---|
| cold ≥ 2x faster than unpack + skopeo | ${COLD_X}x | $(meets "$COLD_X" 2) |
| warm ≥ 10x faster than warm skopeo | ${WARM_X}x | $(meets "$WARM_X" 10) |
| layers-first cold within 1.15x of index-first cold (one read, holding repository, no staging) | ${LF_RATIO}x | $(at_most "$LF_RATIO" 1.15) |
| two registries at once within 1.4x of one registry (same package, one read) | ${TWO_RATIO}x | $(at_most "$TWO_RATIO" 1.4) |
| ferry-push peak RSS < 100 MiB | $FRSS MiB | $RSS_OK |

Cold, round by round (unpack + skopeo seconds / ferry-push seconds = x): $ROUND_RATIOS.
Registry CPU (user + system, /proc/PID/stat, median of the rounds): one registry during a cold push $RC1 s; both registries during the two-registry push $RC2 s. On $CORES cores the two registries alone need at least $FLOOR s of wall time, ${FLOOR_X}x one registry's cold push, whatever the client does.
MD
