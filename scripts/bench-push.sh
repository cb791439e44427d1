#!/usr/bin/env bash
# Benchmark: ferry-push against the path users take without ferry (unpack the package with
# `xz -T0 -dc | tar -x`, then one `skopeo copy --all oci:DIR:REF docker://...` per image), in the
# same run, on a generated package of incompressible layers, pushed to a real local registry
# (distribution v2.8, TLS with a private CA, htpasswd bcrypt auth) on 127.0.0.1.
# Cold: empty registry (restarted on wiped storage before every cold run), ferry including its
# staging (PKG.ferry-store deleted first). Warm: the same commands again, everything present.
# Median of FERRY_BENCH_ROUNDS rounds (default 3).
# WAN case (root only): a second package (FERRY_BENCH_WAN_MIB, default 512: >= 500 MB) pushed to a
# registry inside a network namespace this script creates (ferrypush-PID), reached over a veth pair
# (10.213.78.1/30 host side, 10.213.78.2/30 namespace side) with a 50 ms round trip and a 200 Mbit/s
# cap: `tc netem delay 25ms rate 200mbit` on both ends where the kernel has netem; else the cap is
# `tc tbf rate 200mbit` on both ends (or, without tbf either, paced by the relay) and the delay a
# TCP relay inside the namespace (scripts/bench-relay.py) that holds every chunk 25 ms in each
# direction. Peers in the same round: unpack + `skopeo copy` per image over the same link, and the
# link's own capacity (`iperf3 -P 4` through the same veth, qdiscs and relay). ferry's rate while
# blobs move is bytes uploaded / blob phase (`ferry-push --json`: summary.blob_seconds).
#   scripts/bench-push.sh [SIZE_MIB]      (default 1100: a package of at least 1 GiB)
# FERRY_BENCH_CASES: "loopback wan" (default), "loopback" or "wan".
# Prints a Markdown section to stdout (paste into BENCHMARKS.md); progress goes to stderr.
# FERRY_BENCH_DIR: work directory (default target/bench-push); FERRY_BENCH_FORMAT: tar.xz-mt
# (default, as bmctl packages are .tar.xz) or tar.zst; FERRY_BENCH_KEEP=1 keeps the bulk files.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bench-lib.sh

SIZE_MIB=${1:-1100}
ROUNDS=${FERRY_BENCH_ROUNDS:-3}
CASES=${FERRY_BENCH_CASES:-loopback wan}
WAN_MIB=${FERRY_BENCH_WAN_MIB:-512}
WAN_DELAY_MS=25          # each direction: a 50 ms round trip
WAN_RATE_MBIT=200
WAN_HOST_ADDR=10.213.78.1
WAN_NS_ADDR=10.213.78.2
WAN_PORT=5443            # the registry (or the relay in front of it) on $WAN_NS_ADDR
WAN_IPERF_PORT=5202      # iperf3 (or the relay in front of it) on $WAN_NS_ADDR
case " $CASES " in *" wan "*) WAN=1 ;; *) WAN=0 ;; esac
case " $CASES " in *" loopback "*) LOOPBACK=1 ;; *) LOOPBACK=0 ;; esac
if [ "$WAN" = 1 ] && [ "$(id -u)" -ne 0 ]; then
  echo "the WAN case needs root (ip netns, veth, tc): skipped" >&2
  WAN=0
fi
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
PKG_LF="$WORK/pkg-layers-first.$PKG_EXT"
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
WAN_NS="ferrypush-$$"
WAN_VETH_HOST="fph$$"    # interface names: at most 15 characters
WAN_VETH_NS="fpn$$"
WAN_NS_CREATED=0; WAN_VETH_CREATED=0
WAN_REG_PID=""; WAN_RELAY_PID=""; WAN_IPERF_PID=""
stop_pid() { # VARNAME: stop the process whose PID is in VARNAME, then clear it
  local pid=${!1}
  if [ -n "$pid" ]; then
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    printf -v "$1" '%s' ""
  fi
}
cleanup() {
  stop_registry
  stop_second_registry
  stop_pid WAN_REG_PID; stop_pid WAN_RELAY_PID; stop_pid WAN_IPERF_PID
  if [ "$WAN_VETH_CREATED" = 1 ]; then ip link del "$WAN_VETH_HOST" 2>/dev/null || true; fi
  if [ "$WAN_NS_CREATED" = 1 ]; then ip netns del "$WAN_NS" 2>/dev/null || true; fi
  if [ "${FERRY_BENCH_KEEP:-0}" != 1 ]; then
    rm -rf "$PKG" "$PKG_LF" "$STAGING" "$PKG_LF.ferry-store" "$UNPACK" "$REG/storage" "$WORK/registry2/storage" \
      "$WORK/pkg-wan.$PKG_EXT" "$WORK/pkg-wan.$PKG_EXT.ferry-store" "$WORK/registry-wan/storage"
  fi
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
printf '%s\n' "subjectAltName=IP:127.0.0.1,IP:$WAN_NS_ADDR" "basicConstraints=critical,CA:FALSE" \
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
# images_of FIXTURE_JSON: "reference digest" per image, from ferry-fixture's JSON summary.
images_of() {
  python3 - "$1" <<'PY'
import json, sys
for i in json.load(open(sys.argv[1]))["images"]:
    print(i["reference"], i["digest"])
PY
}
if [ "$LOOPBACK" = 1 ]; then
if [ "$SIZE_MIB" -lt 1024 ]; then
  echo "note: ${SIZE_MIB} MiB is below the 1 GiB the targets are defined for: a smoke test only" >&2
fi
echo "generating ~${SIZE_MIB} MiB $FORMAT: $IMAGES images x $LAYERS layers x ${LAYER_MIB} MiB (incompressible)" >&2
"$BIN/ferry-fixture" --out "$PKG" --format "$FORMAT" --seed 13 --images "$IMAGES" --layers "$LAYERS" \
  --layer-size "${LAYER_MIB}MiB" --incompressible --no-shared-base > "$WORK/fixture.json"
# The same images with their blobs first and index.json last (what Hauler, Zarf and tar -c write).
"$BIN/ferry-fixture" --out "$PKG_LF" --format "$FORMAT" --seed 13 --images "$IMAGES" --layers "$LAYERS" \
  --layer-size "${LAYER_MIB}MiB" --incompressible --no-shared-base --layers-first > /dev/null
PKG_BYTES=$(stat -c %s "$PKG")
images_of "$WORK/fixture.json" > "$WORK/images.txt"
echo "package: $((PKG_BYTES / 1048576)) MiB, $(wc -l < "$WORK/images.txt") images" >&2
fi

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

# Registry CPU (user + system) spent during a run: /proc/PID/stat ticks before and after.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
CPU_LOG="$WORK/registry-cpu.txt"; : > "$CPU_LOG"
if [ "$LOOPBACK" = 1 ]; then
cat "$PKG" "$PKG_LF" > /dev/null   # every side reads its package from a warm page cache
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
fi

# Markdown.
if [ "$LOOPBACK" = 1 ]; then
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
fi

# --- WAN: the same kind of push over a 50 ms, 200 Mbit/s link to a registry in a namespace. ---
if [ "$WAN" = 1 ]; then
WAN_IMAGES=$(( (WAN_MIB + LAYER_MIB * LAYERS - 1) / (LAYER_MIB * LAYERS) ))
PKG_WAN="$WORK/pkg-wan.$PKG_EXT"
REG_WAN="$WORK/registry-wan"
echo "WAN: generating ~${WAN_MIB} MiB $FORMAT: $WAN_IMAGES images x $LAYERS layers x ${LAYER_MIB} MiB (incompressible)" >&2
"$BIN/ferry-fixture" --out "$PKG_WAN" --format "$FORMAT" --seed 29 --images "$WAN_IMAGES" --layers "$LAYERS" \
  --layer-size "${LAYER_MIB}MiB" --incompressible --no-shared-base > "$WORK/fixture-wan.json"
images_of "$WORK/fixture-wan.json" > "$WORK/images-wan.txt"
PKG_WAN_BYTES=$(stat -c %s "$PKG_WAN")
if [ "$PKG_WAN_BYTES" -lt 500000000 ]; then
  echo "note: the WAN package is $((PKG_WAN_BYTES / 1000000)) MB, below the 500 MB the targets are defined for" >&2
fi
mkdir -p "$REG_WAN"

if ip -o addr show to "${WAN_HOST_ADDR%.*}.0/30" | grep -q . || ip route show "${WAN_HOST_ADDR%.*}.0/30" | grep -q .; then
  echo "${WAN_HOST_ADDR%.*}.0/30 is already in use on this machine (a leftover of a killed run? see" \
    "'ip -o addr', 'ip netns list'): not touching it" >&2
  exit 1
fi
echo "WAN: network namespace $WAN_NS, veth $WAN_VETH_HOST ($WAN_HOST_ADDR/30) <-> $WAN_VETH_NS ($WAN_NS_ADDR/30)" >&2
ip netns add "$WAN_NS"; WAN_NS_CREATED=1
ip link add "$WAN_VETH_HOST" type veth peer name "$WAN_VETH_NS"; WAN_VETH_CREATED=1
ip link set "$WAN_VETH_NS" netns "$WAN_NS"
ip addr add "$WAN_HOST_ADDR/30" dev "$WAN_VETH_HOST"
ip link set "$WAN_VETH_HOST" up
ip -n "$WAN_NS" addr add "$WAN_NS_ADDR/30" dev "$WAN_VETH_NS"
ip -n "$WAN_NS" link set "$WAN_VETH_NS" up
ip -n "$WAN_NS" link set lo up
# wan_qdisc KIND ARGS...: the same qdisc on both ends of the veth pair (each shapes what it sends).
wan_qdisc() {
  tc qdisc add dev "$WAN_VETH_HOST" root "$@" 2>> "$WORK/tc.err" \
    && ip netns exec "$WAN_NS" tc qdisc add dev "$WAN_VETH_NS" root "$@" 2>> "$WORK/tc.err" && return 0
  tc qdisc del dev "$WAN_VETH_HOST" root 2>/dev/null || true
  ip netns exec "$WAN_NS" tc qdisc del dev "$WAN_VETH_NS" root 2>/dev/null || true
  return 1
}
: > "$WORK/tc.err"
modprobe sch_netem 2>/dev/null || true
RELAY_RATE=0
if wan_qdisc netem delay "${WAN_DELAY_MS}ms" rate "${WAN_RATE_MBIT}mbit" limit 100000; then
  WAN_MODE=netem
  WAN_SETUP="\`tc qdisc add dev VETH root netem delay ${WAN_DELAY_MS}ms rate ${WAN_RATE_MBIT}mbit\` on both ends of the veth pair"
else
  # 256 KiB burst: at least the kernel's 64 KiB GSO packets, a few ms of the rate.
  if wan_qdisc tbf rate "${WAN_RATE_MBIT}mbit" burst 256kb latency 25ms; then
    WAN_MODE="relay + tbf"
    WAN_SETUP="this kernel has no \`sch_netem\` (\`tc qdisc add ... netem\`: $(head -1 "$WORK/tc.err" | sed 's/`//g')): the cap is \`tc qdisc add dev VETH root tbf rate ${WAN_RATE_MBIT}mbit burst 256kb latency 25ms\` on both ends of the veth pair, the delay a TCP relay inside the namespace (\`scripts/bench-relay.py\`) that delivers every chunk ${WAN_DELAY_MS} ms after it arrived, in each direction, holding at most 4 MiB per connection and direction (the sender's TCP window closes as on a real link; TCP handshakes are not delayed and the sender's congestion window is not slowed by the round trip)"
  else
    WAN_MODE="relay (paced)"
    RELAY_RATE=$WAN_RATE_MBIT
    WAN_SETUP="this kernel has neither \`sch_netem\` nor \`sch_tbf\` ($(head -1 "$WORK/tc.err" | sed 's/`//g')): a TCP relay inside the namespace (\`scripts/bench-relay.py\`) is the link: one FIFO of ${WAN_RATE_MBIT} Mbit/s per direction shared by every connection, and every chunk delivered ${WAN_DELAY_MS} ms after it left that FIFO, holding at most 4 MiB per connection and direction (TCP handshakes are not delayed)"
  fi
fi
echo "  link: $WAN_MODE" >&2
if [ "$WAN_MODE" = netem ]; then
  WAN_REG_LISTEN="$WAN_NS_ADDR:$WAN_PORT"
  ip netns exec "$WAN_NS" iperf3 -s -B "$WAN_NS_ADDR" -p "$WAN_IPERF_PORT" > "$WORK/iperf3-server.log" 2>&1 &
  WAN_IPERF_PID=$!
else
  WAN_REG_LISTEN="127.0.0.1:5000"
  ip netns exec "$WAN_NS" iperf3 -s -B 127.0.0.1 -p 5201 > "$WORK/iperf3-server.log" 2>&1 &
  WAN_IPERF_PID=$!
  ip netns exec "$WAN_NS" python3 scripts/bench-relay.py "$WAN_NS_ADDR" 127.0.0.1 \
    "$(awk -v d="$WAN_DELAY_MS" 'BEGIN{print d/1000}')" "$RELAY_RATE" "$WAN_PORT:5000" "$WAN_IPERF_PORT:5201" \
    > "$WORK/relay.log" 2>&1 &
  WAN_RELAY_PID=$!
fi
WAN_ADDR="$WAN_NS_ADDR:$WAN_PORT"

# start_wan_registry: a fresh registry on wiped storage inside the namespace; sets WAN_REG_PID.
start_wan_registry() {
  stop_pid WAN_REG_PID
  rm -rf "$REG_WAN/storage"; mkdir -p "$REG_WAN/storage"
  cat > "$REG_WAN/config.yml" <<YML
version: 0.1
log:
  level: info
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: "$REG_WAN/storage"
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: "$WAN_REG_LISTEN"
  secret: "ferry-bench-http-secret-5d0c7a3e91b24f68"
  tls:
    certificate: "$REG/server.crt"
    key: "$REG/server.key"
auth:
  htpasswd:
    realm: ferry-bench
    path: "$REG/htpasswd"
YML
  ip netns exec "$WAN_NS" /usr/bin/docker-registry serve "$REG_WAN/config.yml" > "$REG_WAN/registry.log" 2>&1 &
  WAN_REG_PID=$!
  local i code
  for i in $(seq 1 100); do
    code=$(curl -s -o /dev/null -w '%{http_code}' --cacert "$REG/ca.crt" "https://$WAN_ADDR/v2/" || true)
    if [ "$code" = 401 ]; then return 0; fi
    if ! kill -0 "$WAN_REG_PID" 2>/dev/null; then break; fi
    sleep 0.1
  done
  echo "WAN registry did not answer on $WAN_ADDR:" >&2
  tail -20 "$REG_WAN/registry.log" >&2
  if [ -n "$WAN_RELAY_PID" ]; then tail -5 "$WORK/relay.log" >&2; fi
  exit 1
}
start_wan_registry

# The round trip as an HTTP request on a kept-alive TLS connection sees it (the second request).
HTTP_RTT=$(curl -s --cacert "$REG/ca.crt" -o /dev/null -o /dev/null -o /dev/null \
  -w '%{time_starttransfer}\n' "https://$WAN_ADDR/v2/" "https://$WAN_ADDR/v2/" "https://$WAN_ADDR/v2/" \
  | tail -1 | awk '{printf "%.1f", $1 * 1000}')
echo "  one HTTP request round trip: ${HTTP_RTT} ms" >&2
if ! awk -v r="$HTTP_RTT" -v d="$WAN_DELAY_MS" 'BEGIN{exit !(r >= 2*d*0.9 && r <= 2*d*1.6)}'; then
  echo "the round trip is ${HTTP_RTT} ms, not ~$((2 * WAN_DELAY_MS)) ms: not measuring" >&2
  exit 1
fi

# check_pushed_wan NAMESPACE: every WAN image is in the namespace's registry with the fixture's digest.
check_pushed_wan() {
  local ref digest got
  while read -r ref digest; do
    got=$(skopeo inspect --cert-dir "$REG/certs.d" --creds "$REG_USER:$REG_PASS" --format '{{.Digest}}' \
      "docker://$WAN_ADDR/$1/${ref#*/}")
    if [ "$got" != "$digest" ]; then
      echo "$WAN_ADDR/$1/${ref#*/}: digest $got, expected $digest" >&2
      exit 1
    fi
  done < "$WORK/images-wan.txt"
  echo "  checked: every image in $1/ has its digest" >&2
}
# link_capacity ROUND: iperf3 through the same link (4 streams, 8 s, client to registry side);
# the receiver's Mbit/s goes to $WORK/wan-link.txt.
link_capacity() {
  local mbit
  iperf3 -c "$WAN_NS_ADDR" -p "$WAN_IPERF_PORT" -P 4 -t 8 -J > "$WORK/iperf3.$1.json"
  mbit=$(python3 -c 'import json,sys; print("%.1f" % (json.load(open(sys.argv[1]))["end"]["sum_received"]["bits_per_second"] / 1e6))' \
    "$WORK/iperf3.$1.json")
  echo "link (round $1) $mbit" >> "$WORK/wan-link.txt"
  echo "  link capacity (iperf3 -P 4 -t 8): $mbit Mbit/s" >&2
}
: > "$WORK/wan-link.txt"; : > "$WORK/wan-ferry.txt"
cat "$PKG_WAN" > /dev/null
for round in $(seq 1 "$ROUNDS"); do
  echo "WAN round $round" >&2
  link_capacity "$round"

  start_wan_registry
  rm -rf "$PKG_WAN.ferry-store"; sync
  c0=$(cpu_ticks "$WAN_REG_PID")
  CMD=("$BIN/ferry-push" --source "$PKG_WAN" --private-registry "$WAN_ADDR/ferry" --cacert "$REG/ca.crt" \
    --username "$REG_USER" --password-stdin --json)
  time_cmd "ferry-push WAN cold (round $round)" bash -c 'out=$1; shift; exec "$@" > "$out"' _ \
    "$WORK/wan-ferry.$round.json" "${CMD[@]}" < "$REG/password"
  echo "wan $(( $(cpu_ticks "$WAN_REG_PID") - c0 ))" >> "$CPU_LOG"
  python3 - "$WORK/wan-ferry.$round.json" "$round" >> "$WORK/wan-ferry.txt" <<'PY'
import json, sys
s = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
s = [e["summary"] for e in s if e.get("event") == "summary"][-1]
mbit = s["bytes_uploaded"] * 8 / s["blob_seconds"] / 1e6 if s["blob_seconds"] > 0 else 0
print(f'blob (round {sys.argv[2]}) {s["bytes_uploaded"]} {s["blob_seconds"]:.3f} {s["seconds"]:.3f} {mbit:.1f}')
PY
  tail -1 "$WORK/wan-ferry.txt" | awk '{printf "  ferry: %s bytes in a %s s blob phase (%s s in all): %s Mbit/s\n", $4, $5, $6, $7}' >&2
  if [ "$round" = 1 ]; then check_pushed_wan ferry; fi

  start_wan_registry
  rm -rf "$UNPACK"; sync
  c0=$(cpu_ticks "$WAN_REG_PID")
  CMD=(bash -c "set -euo pipefail; mkdir -p \"\$1\"; $UNPACK_CMD \"\$2\" | tar -x -C \"\$1\"; shift 2; \"\$@\"" _ \
    "$UNPACK" "$PKG_WAN" bash "$WORK/skopeo-copies.sh" "$UNPACK" "$WAN_ADDR" "$REG/certs.d" "$REG_USER:$REG_PASS" \
    "$WORK/images-wan.txt")
  time_cmd "unpack + skopeo WAN cold (round $round)" "${CMD[@]}"
  echo "wan-skopeo $(( $(cpu_ticks "$WAN_REG_PID") - c0 ))" >> "$CPU_LOG"
  if [ "$round" = 1 ]; then check_pushed_wan skopeo; fi
  rm -rf "$UNPACK"
done
stop_pid WAN_REG_PID

# Markdown.
med() { sort -n | awk '{v[NR]=$1} END{if (NR) print v[int((NR+1)/2)]; else print "n/a"}'; }
div() { awk -v a="$1" -v b="$2" -v f="${3:-%.2f}" 'BEGIN{if (b > 0) printf f, a/b; else print "n/a"}'; }
ge() { awk -v v="$1" -v t="$2" 'BEGIN{if (v != "n/a" && v + 0 >= t) print "**met**"; else print "**not met**"}'; }
WF=$(bench_median "ferry-push WAN cold"); WS=$(bench_median "unpack + skopeo WAN cold")
LINK=$(awk '{print $NF}' "$WORK/wan-link.txt" | med)
BLOB_MBIT=$(awk '{print $NF}' "$WORK/wan-ferry.txt" | med)
BLOB_S=$(awk '{print $5}' "$WORK/wan-ferry.txt" | med)
UP_BYTES=$(awk '{print $4}' "$WORK/wan-ferry.txt" | med)
WAN_X=$(div "$WS" "$WF")
LINK_PCT=$(div "$BLOB_MBIT" "$LINK" "%.3f"); LINK_PCT_SHOW=$(awk -v p="$LINK_PCT" 'BEGIN{printf "%.0f%%", p*100}')
WALL_MBIT=$(awk -v b="$UP_BYTES" -v s="$WF" 'BEGIN{if (s > 0) printf "%.0f", b*8/s/1e6; else print "n/a"}')
SKOPEO_MBIT=$(awk -v b="$UP_BYTES" -v s="$WS" 'BEGIN{if (s > 0) printf "%.0f", b*8/s/1e6; else print "n/a"}')
# The fastest any client could be: every uploaded byte at the link's measured capacity, nothing else.
FLOOR_S=$(awk -v b="$UP_BYTES" -v l="$LINK" 'BEGIN{if (l > 0) printf "%.2f", b*8/l/1e6; else print "n/a"}')
MAX_X=$(div "$WS" "$FLOOR_S")
reg_cpu_wan() { grep "^$1 " "$CPU_LOG" | awk '{print $2}' | med | awk -v c="$(getconf CLK_TCK)" '{printf "%.2f", $1/c}'; }
WAN_ROUNDS=$(for r in $(seq 1 "$ROUNDS"); do
  f=$(grep -F "ferry-push WAN cold (round $r)" "$BENCH_RESULTS" | awk '{print $(NF-1)}')
  k=$(grep -F "unpack + skopeo WAN cold (round $r)" "$BENCH_RESULTS" | awk '{print $(NF-1)}')
  l=$(grep -F "link (round $r)" "$WORK/wan-link.txt" | awk '{print $NF}')
  b=$(grep -F "blob (round $r)" "$WORK/wan-ferry.txt" | awk '{print $NF}')
  printf '%s / %s = %sx, blobs at %s of %s Mbit/s; ' "$k" "$f" "$(div "$k" "$f")" "$b" "$l"
done | sed 's/; $//')
WAN_NAME=$(basename "$PKG_WAN")

cat <<MD

### ferry-push over a slow link: 50 ms round trip, ${WAN_RATE_MBIT} Mbit/s ($(date -u +%Y-%m-%d))

Command: \`scripts/bench-push.sh\` (WAN case; \`FERRY_BENCH_CASES=wan\` runs it alone) — machine: $(bench_machine).
Package: \`$WAN_NAME\`, $((PKG_WAN_BYTES / 1000000)) MB ($FORMAT from \`ferry-fixture\`) of $WAN_IMAGES images x $LAYERS incompressible ${LAYER_MIB} MiB layers.
Link: the registry (same version, TLS, htpasswd, fresh storage before every run) runs in a network namespace the script creates, reached over a veth pair ($WAN_HOST_ADDR/30 <-> $WAN_NS_ADDR/30); $WAN_SETUP. One HTTP request on a kept-alive TLS connection: ${HTTP_RTT} ms. Link capacity: \`iperf3 -c $WAN_NS_ADDR -P 4 -t 8\` through the same veth, qdiscs and relay, receiver side, every round. Median of $ROUNDS rounds; each package in the page cache.
- ferry: \`ferry-push --source $WAN_NAME --private-registry $WAN_NS_ADDR:$WAN_PORT/ferry --cacert ca.crt --username $REG_USER --password-stdin --json\` (default \`--jobs\`); blob phase = \`summary.blob_seconds\` (first upload's start to last upload's end), rate = \`summary.bytes_uploaded\` x 8 / blob phase.
- without ferry: \`$UNPACK_CMD $WAN_NAME | tar -x -C DIR\`, then one \`skopeo copy --all\` per image over the same link.

| what | seconds | Mbit/s (uploaded bytes / time) | peak RSS | ratio | target |
|---|---|---|---|---|---|
| link capacity, \`iperf3 -P 4\` (nominal ${WAN_RATE_MBIT}) | | $LINK | | 1.00 | |
| unpack + \`skopeo copy\`, cold | $WS | $SKOPEO_MBIT | $(bench_rss_mib "unpack + skopeo WAN cold") MiB | 1.00 | |
| \`ferry-push\`, cold, whole run | $WF | $WALL_MBIT | $(bench_rss_mib "ferry-push WAN cold") MiB | ${WAN_X}x faster than skopeo | ≥ 3x: $(ge "$WAN_X" 3) |
| \`ferry-push\`, blob phase | $BLOB_S | $BLOB_MBIT | | $LINK_PCT_SHOW of the link | ≥ 90%: $(ge "$LINK_PCT" 0.9) |
| every uploaded byte at the link's capacity, nothing else (the floor for any client) | $FLOOR_S | $LINK | | ${MAX_X}x faster than skopeo: the highest ratio the link allows | |

Round by round (unpack + skopeo seconds / ferry-push seconds = x; ferry's blob-phase rate of the link measured that round): $WAN_ROUNDS.
Registry CPU (user + system, median): $(reg_cpu_wan wan) s during a ferry push, $(reg_cpu_wan wan-skopeo) s during unpack + skopeo.
MD
fi
