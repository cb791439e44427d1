#!/usr/bin/env bash
# Benchmark: ferry-diff (is the private registry in sync with the package?) against what users
# do without ferry (one `skopeo inspect --raw` per image of the package), in the same run, on a
# generated package of many small images (default 100 images x 9 layers: 1,100 blobs with the
# configs and manifests) exported to a store and pushed in full to a real registry
# (distribution v2.8, TLS with a private CA, htpasswd bcrypt auth). Everything is in sync, so
# ferry-diff must exit 0. Measured three times, median of 3 rounds each:
#   - loopback: the registry on 127.0.0.1;
#   - loopback, no auth: the same registry and storage without htpasswd (what a mirror that
#     trusts its network runs, and the registry's floor: distribution checks a bcrypt hash on
#     every request of a Basic-auth client, about 4 ms of CPU each);
#   - loopback, token auth: the harness's registry (`ferry-test-registry --mode tls-token`, what
#     the end-to-end tests start: distribution with Bearer tokens from an ES256 token issuer, a
#     cheap signature check per request) on 127.0.0.1, filled by ferry-push;
#   - a 50 ms round trip: the same registry (same storage) in a network namespace this script
#     creates (ferrybench-PID), reached over a veth pair with 10.213.77.1/30 (host side) and
#     10.213.77.2/30 (namespace side); `tc netem delay 25ms` on both ends where the kernel has
#     netem, else (no sch_netem, e.g. a VM kernel without modules) a TCP relay inside the
#     namespace that holds every chunk 25 ms in each direction (the TCP handshake itself is then
#     not delayed, which favours the skopeo loop: it opens new connections for every image).
# Every case prints the registry's own CPU seconds per run (/proc/PID/stat, user + system) beside
# ferry-diff's wall time: on loopback the registry's CPU time divided by the cores is the floor of
# any client's wall time (every request costs the registry its CPU), and ferry's target is at most
# 1.25x that floor.
# Traffic never leaves this machine: loopback and the namespace this script owns.
#   scripts/bench-diff.sh [IMAGES]      (default 100: the size the targets are defined for)
# Prints a Markdown section to stdout (paste into BENCHMARKS.md); progress goes to stderr.
# FERRY_BENCH_DIR: work directory (default target/bench-diff); FERRY_BENCH_KEEP=1 keeps the bulk
# files; FERRY_BENCH_DIFF_JOBS=N runs ferry-diff with --jobs N (default: its own default). Needs root (network namespace, veth, tc).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bench-lib.sh

IMAGES=${1:-100}
LAYERS=9
LAYER_SIZE=8KiB
DELAY_MS=25            # each direction: a 50 ms round trip
NS_ADDR=10.213.77.2
HOST_ADDR=10.213.77.1
NS_PORT=5443           # the registry's (or relay's) port on $NS_ADDR inside the namespace
NS_INNER_PORT=5000     # relay mode: the registry on the namespace's own 127.0.0.1
if [ "$(id -u)" -ne 0 ]; then echo "bench-diff.sh needs root (ip netns, veth, tc)" >&2; exit 2; fi
bash scripts/install-deps.sh
cargo build --release --workspace --bins --locked -q
BIN="$PWD/target/release"
WORK="${FERRY_BENCH_DIR:-$PWD/target/bench-diff}"
REG="$WORK/registry"
STORE="$WORK/store"
LAYOUT="$WORK/layout"
NS="ferrybench-$$"
VETH_HOST="fbh$$"      # interface names: at most 15 characters
VETH_NS="fbn$$"
REG_USER=ferry-bench
REG_PID=""             # registry on 127.0.0.1 (root namespace)
NS_REG_PID=""          # registry inside the namespace
RELAY_PID=""           # delay relay inside the namespace (relay mode only)
NS_CREATED=0
VETH_CREATED=0
TOKEN_HARNESS_PID=""   # ferry-test-registry (token registry + issuer; stops when fd 7 closes)

stop_pid() { # VARNAME: stop the process whose PID is in VARNAME, then clear it
  local pid=${!1}
  if [ -n "$pid" ]; then
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    printf -v "$1" '%s' ""
  fi
}
stop_token_registry() {
  if [ -n "$TOKEN_HARNESS_PID" ]; then
    exec 7>&- 2>/dev/null || true
    wait "$TOKEN_HARNESS_PID" 2>/dev/null || true
    TOKEN_HARNESS_PID=""
  fi
}
cleanup() {
  stop_token_registry
  stop_pid RELAY_PID
  stop_pid NS_REG_PID
  stop_pid REG_PID
  if [ "$VETH_CREATED" = 1 ]; then ip link del "$VETH_HOST" 2>/dev/null || true; fi
  if [ "$NS_CREATED" = 1 ]; then ip netns del "$NS" 2>/dev/null || true; fi
  if [ "${FERRY_BENCH_KEEP:-0}" != 1 ]; then rm -rf "$LAYOUT" "$STORE" "$REG/storage"; fi
}
trap cleanup EXIT

rm -rf "$WORK"; mkdir -p "$WORK" "$REG/storage"
export BENCH_RESULTS="$WORK/results.txt"
: > "$BENCH_RESULTS"

# One certificate for both addresses the registry is reached at.
echo "registry: CA, certificate for IP:127.0.0.1 and IP:$NS_ADDR, htpasswd" >&2
bench_registry_pki "$REG" "$REG_USER" 127.0.0.1 "$NS_ADDR"
REG_PASS=$BENCH_REG_PASS

# write_registry_config FILE ADDR [AUTH]: the registry's config, listening on ADDR, access log on
# (one line per request on stdout: the request counts below come from it); AUTH htpasswd
# (default) or none.
write_registry_config() {
  cat > "$1" <<YML
version: 0.1
log:
  level: warn
  accesslog:
    disabled: false
storage:
  filesystem:
    rootdirectory: "$REG/storage"
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: "$2"
  secret: "ferry-bench-http-secret-3f6a9c0e2b7d4d1a"
  tls:
    certificate: "$REG/server.crt"
    key: "$REG/server.key"
YML
  if [ "${3:-htpasswd}" = htpasswd ]; then
    cat >> "$1" <<YML
auth:
  htpasswd:
    realm: ferry-bench
    path: "$REG/htpasswd"
YML
  fi
}
# wait_registry HOST:PORT PIDVAR LOG: until /v2/ answers over TLS (401 auth required, or 200).
wait_registry() {
  local i code pid
  for i in $(seq 1 100); do
    code=$(curl -s -o /dev/null -w '%{http_code}' --cacert "$REG/ca.crt" "https://$1/v2/" || true)
    if [ "$code" = 401 ] || [ "$code" = 200 ]; then return 0; fi
    pid=${!2}
    if ! kill -0 "$pid" 2>/dev/null; then break; fi
    sleep 0.1
  done
  echo "registry did not answer on $1:" >&2
  tail -20 "$3" >&2
  return 1
}
# start_loopback_registry AUTH: the registry on a free 127.0.0.1 port, log in
# $REG/loopback-AUTH.log; sets PORT, REG_PID.
start_loopback_registry() {
  local attempt auth=$1
  for attempt in 1 2 3 4 5; do
    PORT=$(free_port)
    write_registry_config "$REG/config-loopback-$auth.yml" "127.0.0.1:$PORT" "$auth"
    /usr/bin/docker-registry serve "$REG/config-loopback-$auth.yml" > "$REG/loopback-$auth.log" 2>&1 &
    REG_PID=$!
    if wait_registry "127.0.0.1:$PORT" REG_PID "$REG/loopback-$auth.log" 2>/dev/null; then return 0; fi
    stop_pid REG_PID
    if ! grep -q 'address already in use' "$REG/loopback-$auth.log"; then
      echo "registry did not start on 127.0.0.1:$PORT:" >&2
      tail -20 "$REG/loopback-$auth.log" >&2
      exit 1
    fi
  done
  echo "registry: no free port after 5 attempts" >&2
  exit 1
}

echo "generating $IMAGES images x $LAYERS layers x $LAYER_SIZE (own layers, no shared base)" >&2
"$BIN/ferry-fixture" --out "$LAYOUT" --format dir --seed 17 --images "$IMAGES" --layers "$LAYERS" \
  --layer-size "$LAYER_SIZE" --no-shared-base > "$WORK/fixture.json"
python3 - "$WORK/fixture.json" > "$WORK/images.txt" <<'PY'
import json, sys
for i in json.load(open(sys.argv[1]))["images"]:
    print(i["reference"], i["digest"])
PY
echo "ferry-export into the store" >&2
"$BIN/ferry-export" --source "$LAYOUT" --to "$STORE" > /dev/null
rm -rf "$LAYOUT"
N_IMAGES=$(wc -l < "$WORK/images.txt")
BLOBS=$(find "$STORE/blobs" -type f | wc -l)
BYTES=$(find "$STORE/blobs" -type f -printf '%s\n' | awk '{s+=$1} END{printf "%d", s}')
echo "store: $N_IMAGES images, $BLOBS blobs (layers, configs, manifests), $((BYTES / 1024)) KiB" >&2
if [ "$IMAGES" -lt 100 ] || [ "$BLOBS" -lt 1000 ]; then
  echo "note: below the 100 images / 1,000 blobs the targets are defined for: a smoke test only" >&2
fi

# The baseline: one `skopeo inspect --raw` per image, one after the other. With CHECK=1 every
# manifest's sha256 must be the package's digest (the untimed warm-up run).
cat > "$WORK/skopeo-inspect.sh" <<'SH'
set -euo pipefail
# skopeo-inspect.sh REGISTRY/NS CERT_DIR CREDS IMAGES_TXT [CHECK]   (CREDS "": no --creds)
creds=(); if [ -n "$3" ]; then creds=(--creds "$3"); fi
while read -r ref digest; do
  if [ "${5:-0}" = 1 ]; then
    got="sha256:$(skopeo inspect --raw --cert-dir "$2" "${creds[@]}" "docker://$1/${ref#*/}" | sha256sum | cut -d' ' -f1)"
    if [ "$got" != "$digest" ]; then echo "$1/${ref#*/}: manifest $got, expected $digest" >&2; exit 1; fi
  else
    skopeo inspect --raw --cert-dir "$2" "${creds[@]}" "docker://$1/${ref#*/}" > /dev/null
  fi
done < "$4"
SH
AUTH=htpasswd          # what the registry being measured asks for: htpasswd or none
# The registry being measured: its CA (PEM, and a cert dir holding ca.crt for skopeo), user and
# password file (the token case switches these to the harness's).
CUR_CA="$REG/ca.crt"; CUR_CERT_DIR="$REG/certs.d"; CUR_USER=$REG_USER; CUR_PASS_FILE="$REG/password"
skopeo_cmd() { # HOST:PORT [CHECK] -> CMD
  local creds="$CUR_USER:$(cat "$CUR_PASS_FILE")"
  if [ "$AUTH" = none ]; then creds=""; fi
  CMD=(bash "$WORK/skopeo-inspect.sh" "$1/ns" "$CUR_CERT_DIR" "$creds" "$WORK/images.txt" "${2:-0}")
}
diff_cmd() { # HOST:PORT -> CMD (the password comes on stdin; ignored without auth)
  CMD=("$BIN/ferry-diff" --source "$STORE" --private-registry "$1/ns" --cacert "$CUR_CA")
  if [ -n "${FERRY_BENCH_DIFF_JOBS:-}" ]; then CMD+=(--jobs "$FERRY_BENCH_DIFF_JOBS"); fi
  if [ "$AUTH" = none ]; then CMD+=(--need-credential=false); else CMD+=(--username "$CUR_USER" --password-stdin); fi
}
# check_in_sync HOST:PORT: untimed ferry-diff --json; it must exit 0 with every image in sync.
check_in_sync() {
  local rc=0
  diff_cmd "$1"
  "${CMD[@]}" --json < "$CUR_PASS_FILE" > "$WORK/diff.json" 2> "$WORK/diff.err" || rc=$?
  if [ "$rc" != 0 ]; then
    echo "ferry-diff against $1 exited $rc (expected 0: everything was pushed):" >&2
    tail -20 "$WORK/diff.err" >&2; head -c 2000 "$WORK/diff.json" >&2
    exit 1
  fi
  python3 - "$WORK/diff.json" "$N_IMAGES" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))["summary"]
assert s["images"] == int(sys.argv[2]) and s["in_sync"] == s["images"], s
print(f"  ferry-diff: {s['in_sync']}/{s['images']} images in sync ({s['seconds']:.2f}s by its own clock)", file=sys.stderr)
PY
}
# measure WHERE HOST:PORT LOG PID: 3 rounds of ferry-diff and the skopeo loop (after an untimed
# warm-up of both that checks the results); each run's slice of the access log goes to
# $WORK/requests/LABEL.log and its request count to $WORK/requests.txt, the registry's (PID's)
# CPU seconds during the run to $WORK/registry-cpu.txt.
measure() {
  local where=$1 addr=$2 log=$3 pid=$4 round
  echo "$where: warm-up (untimed, checked)" >&2
  check_in_sync "$addr"
  skopeo_cmd "$addr" 1; "${CMD[@]}"
  echo "  skopeo: every manifest has the package's digest" >&2
  for round in 1 2 3; do
    echo "$where: round $round" >&2
    diff_cmd "$addr"; timed_with_log "ferry-diff $where" "$round" "$log" "$pid" "${CMD[@]}" < "$CUR_PASS_FILE"
    skopeo_cmd "$addr"; timed_with_log "skopeo loop $where" "$round" "$log" "$pid" "${CMD[@]}"
  done
}
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }   # user + system clock ticks of PID
# Busy clock ticks of the whole machine, every core (user, nice, system, irq, softirq, steal).
machine_ticks() { awk '/^cpu /{print $2 + $3 + $4 + $7 + $8 + $9}' /proc/stat; }
timed_with_log() { # LABEL ROUND LOG PID CMD...
  local label=$1 round=$2 log=$3 pid=$4 lines ticks; shift 4
  local extra=0 busy
  sleep 0.3; lines=$(wc -l < "$log"); ticks=$(cpu_ticks "$pid"); busy=$(machine_ticks)
  if [ -n "$EXTRA_CPU_PID" ]; then extra=$(cpu_ticks "$EXTRA_CPU_PID"); fi
  time_cmd "$label (round $round)" "$@"
  echo "$label (round $round) $(awk -v a="$busy" -v b="$(machine_ticks)" -v hz="$(getconf CLK_TCK)" \
    'BEGIN{printf "%.2f", (b - a) / hz}')" >> "$WORK/machine-cpu.txt"
  sleep 0.3; tail -n +"$((lines + 1))" "$log" > "$WORK/requests/$label.$round.log"
  if [ -n "$EXTRA_CPU_PID" ]; then
    echo "$label (round $round) $(awk -v a="$extra" -v b="$(cpu_ticks "$EXTRA_CPU_PID")" -v hz="$(getconf CLK_TCK)" \
      'BEGIN{printf "%.2f", (b - a) / hz}')" >> "$WORK/issuer-cpu.txt"
  fi
  echo "$label (round $round) $(awk -v a="$ticks" -v b="$(cpu_ticks "$pid")" -v hz="$(getconf CLK_TCK)" \
    'BEGIN{printf "%.2f", (b - a) / hz}')" >> "$WORK/registry-cpu.txt"
  echo "$label (round $round) $(bench_access_log_requests "$WORK/requests/$label.$round.log")" >> "$WORK/requests.txt"
}
# requests LABEL: request counts of the rounds of LABEL ("N" if all equal, else "N–M").
requests() {
  grep -F "$1 (round " "$WORK/requests.txt" | awk '{print $NF}' | sort -n | uniq \
    | awk '{v[NR]=$1} END{if (NR == 1) print v[1]; else if (NR) print v[1] "–" v[NR]; else print "?"}'
}
# request_kinds LOG: "N METHOD kind (status), ..." for the requests in an access-log slice.
request_kinds() {
  python3 - "$1" <<'PY'
import collections, re, sys
c = collections.Counter()
for line in open(sys.argv[1], errors="replace"):
    m = re.match(r'^\S+ - \S+ \[[^]]*\] "([A-Z]+) (\S+) HTTP[^"]*" (\d+)', line)
    if not m:
        continue
    method, path, code = m.groups()
    path = path.split("?")[0]
    kind = ("manifest" if "/manifests/" in path else "blob" if "/blobs/" in path
            else "tags/list" if path.endswith("/tags/list") else "/v2/" if path in ("/v2/", "/v2") else path)
    c[(method, kind, code)] += 1
print(", ".join(f"{n} {m} {k} ({code})" for (m, k, code), n in sorted(c.items(), key=lambda x: -x[1])) or "none")
PY
}
mkdir -p "$WORK/requests"
: > "$WORK/requests.txt"; : > "$WORK/registry-cpu.txt"; : > "$WORK/issuer-cpu.txt"; : > "$WORK/machine-cpu.txt"
EXTRA_CPU_PID=""       # token case: the harness process (its token issuer) is measured as well

# --- Fill the registry on loopback, then measure there. ---
start_loopback_registry htpasswd
echo "registry on 127.0.0.1:$PORT; ferry-push of the whole store" >&2
PUSH_START=$(date +%s.%N)
"$BIN/ferry-push" --source "$STORE" --private-registry "127.0.0.1:$PORT/ns" --cacert "$REG/ca.crt" \
  --username "$REG_USER" --password-stdin < "$REG/password" > "$WORK/push.out" 2> "$WORK/push.err" \
  || { echo "ferry-push failed:" >&2; tail -20 "$WORK/push.err" >&2; exit 1; }
PUSH_SECS=$(awk -v a="$PUSH_START" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}')
echo "  pushed in ${PUSH_SECS}s" >&2
measure loopback "127.0.0.1:$PORT" "$REG/loopback-htpasswd.log" "$REG_PID"
stop_pid REG_PID

# --- The same storage served without auth, on loopback. ---
AUTH=none
start_loopback_registry none
echo "registry without auth on 127.0.0.1:$PORT (same storage)" >&2
measure loopback-noauth "127.0.0.1:$PORT" "$REG/loopback-none.log" "$REG_PID"
stop_pid REG_PID
AUTH=htpasswd

# --- Token auth: the test harness's registry (Bearer tokens), filled by ferry-push. ---
echo "token-auth registry: ferry-test-registry --mode tls-token" >&2
mkfifo "$WORK/token-registry.in"
"$BIN/ferry-test-registry" --mode tls-token < "$WORK/token-registry.in" > "$WORK/token-registry.json" \
  2> "$WORK/token-registry.err" &
TOKEN_HARNESS_PID=$!
exec 7> "$WORK/token-registry.in"      # the harness serves until this is closed
for i in $(seq 1 200); do
  if [ -s "$WORK/token-registry.json" ]; then break; fi
  if ! kill -0 "$TOKEN_HARNESS_PID" 2>/dev/null; then cat "$WORK/token-registry.err" >&2; exit 1; fi
  sleep 0.1
done
token_field() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$WORK/token-registry.json" "$1"; }
TOKEN_HOST=$(token_field host); TOKEN_REG_PID=$(token_field pid); TOKEN_LOG=$(token_field log)
CUR_CA=$(token_field ca_cert); CUR_CERT_DIR=$(token_field cert_dir); CUR_USER=$(token_field user)
( umask 077; token_field password > "$WORK/token-password" ); CUR_PASS_FILE="$WORK/token-password"
"$BIN/ferry-push" --source "$STORE" --private-registry "$TOKEN_HOST/ns" --cacert "$CUR_CA" \
  --username "$CUR_USER" --password-stdin < "$CUR_PASS_FILE" > "$WORK/push-token.out" 2> "$WORK/push-token.err" \
  || { echo "ferry-push to the token registry failed:" >&2; tail -20 "$WORK/push-token.err" >&2; exit 1; }
EXTRA_CPU_PID=$TOKEN_HARNESS_PID
measure loopback-token "$TOKEN_HOST" "$TOKEN_LOG" "$TOKEN_REG_PID"
EXTRA_CPU_PID=""
stop_token_registry
CUR_CA="$REG/ca.crt"; CUR_CERT_DIR="$REG/certs.d"; CUR_USER=$REG_USER; CUR_PASS_FILE="$REG/password"

# --- The same registry behind a 50 ms round trip, in a network namespace of our own. ---
if ip -o addr show to "${HOST_ADDR%.*}.0/30" | grep -q . || ip route show "${HOST_ADDR%.*}.0/30" | grep -q .; then
  echo "${HOST_ADDR%.*}.0/30 is already in use on this machine (a leftover of a killed run? see" \
    "'ip -o addr', 'ip netns list'): not touching it" >&2
  exit 1
fi
echo "network namespace $NS, veth $VETH_HOST ($HOST_ADDR/30) <-> $VETH_NS ($NS_ADDR/30)" >&2
ip netns add "$NS"; NS_CREATED=1
ip link add "$VETH_HOST" type veth peer name "$VETH_NS"; VETH_CREATED=1
ip link set "$VETH_NS" netns "$NS"
ip addr add "$HOST_ADDR/30" dev "$VETH_HOST"
ip link set "$VETH_HOST" up
ip -n "$NS" addr add "$NS_ADDR/30" dev "$VETH_NS"
ip -n "$NS" link set "$VETH_NS" up
ip -n "$NS" link set lo up
if tc qdisc add dev "$VETH_HOST" root netem delay "${DELAY_MS}ms" 2> "$WORK/tc.err" \
    && ip netns exec "$NS" tc qdisc add dev "$VETH_NS" root netem delay "${DELAY_MS}ms" 2>> "$WORK/tc.err"; then
  DELAY_MODE=netem
  REG_ADDR="$NS_ADDR:$NS_PORT"
else
  DELAY_MODE=relay
  REG_ADDR="127.0.0.1:$NS_INNER_PORT"
  echo "  tc netem unavailable ($(tr '\n' ' ' < "$WORK/tc.err")): a ${DELAY_MS} ms-per-direction TCP relay" \
    "inside the namespace instead" >&2
fi
write_registry_config "$REG/config-ns.yml" "$REG_ADDR"
ip netns exec "$NS" /usr/bin/docker-registry serve "$REG/config-ns.yml" > "$REG/ns.log" 2>&1 &
NS_REG_PID=$!
if [ "$DELAY_MODE" = relay ]; then
  ip netns exec "$NS" python3 scripts/bench-relay.py "$NS_ADDR" 127.0.0.1 \
    "$(awk -v d="$DELAY_MS" 'BEGIN{print d/1000}')" 0 "$NS_PORT:$NS_INNER_PORT" > "$REG/relay.log" 2>&1 &
  RELAY_PID=$!
fi
wait_registry "$NS_ADDR:$NS_PORT" NS_REG_PID "$REG/ns.log"
if [ -n "$RELAY_PID" ] && ! kill -0 "$RELAY_PID" 2>/dev/null; then cat "$REG/relay.log" >&2; exit 1; fi

# The round trip, as ICMP sees it (ping) and as an HTTP request on a kept-alive TLS connection
# sees it (curl: time to the first byte of a second request on the same connection).
PING_AVG=$(ping -c 3 -i 0.2 -q "$NS_ADDR" | awk -F/ '/^rtt|^round-trip/{printf "%.2f", $5}')
HTTP_RTT=$(curl -s --cacert "$REG/ca.crt" -o /dev/null -o /dev/null -o /dev/null \
  -w '%{time_starttransfer}\n' "https://$NS_ADDR:$NS_PORT/v2/" "https://$NS_ADDR:$NS_PORT/v2/" \
  "https://$NS_ADDR:$NS_PORT/v2/" | tail -1 | awk '{printf "%.1f", $1 * 1000}')
echo "  ping $NS_ADDR: avg ${PING_AVG} ms; HTTP request round trip: ${HTTP_RTT} ms ($DELAY_MODE)" >&2
if [ "$DELAY_MODE" = netem ]; then RTT_CHECK=$PING_AVG; else RTT_CHECK=$HTTP_RTT; fi
if ! awk -v r="$RTT_CHECK" -v d="$DELAY_MS" 'BEGIN{exit !(r >= 2*d*0.9 && r <= 2*d*1.5)}'; then
  echo "the round trip is ${RTT_CHECK} ms, not ~$((2 * DELAY_MS)) ms: not measuring" >&2
  exit 1
fi
measure rtt50 "$NS_ADDR:$NS_PORT" "$REG/ns.log" "$NS_REG_PID"
stop_pid RELAY_PID
stop_pid NS_REG_PID

# --- Markdown. ---
speedup() { awk -v a="$1" -v b="$2" 'BEGIN{if (b > 0) printf "%.1f", a/b; else print "n/a"}'; }
ratio2() { awk -v a="$1" -v b="$2" 'BEGIN{if (b > 0) printf "%.2f", a/b; else print "n/a"}'; }
atleast() { awk -v v="$1" -v t="$2" 'BEGIN{if (v != "n/a" && v + 0 >= t) print "**met**"; else print "**not met**"}'; }
atmost() { awk -v v="$1" -v t="$2" 'BEGIN{if (v != "n/a" && v + 0 <= t) print "**met**"; else print "**not met**"}'; }
below() { awk -v v="$1" -v t="$2" 'BEGIN{if (v + 0 < t) print "**met**"; else print "**not met**"}'; }
median_of() { # FILE LABEL: median last field of LABEL's rounds in FILE
  grep -F "$2 (round " "$1" | awk '{print $NF}' | sort -n \
    | awk '{v[NR]=$1} END{if (NR) print v[int((NR+1)/2)]; else print "?"}'
}
cpu() { median_of "$WORK/registry-cpu.txt" "$1"; }
CORES=$(nproc)
# row WHERE TITLE TARGET_CEIL TARGET_X: two table rows (skopeo loop, ferry-diff) for case WHERE.
row() {
  local where=$1 title=$2 ceil_target=$3 x_target=$4 f s x rc floor fx busy extra=""
  f=$(bench_median "ferry-diff $where"); s=$(bench_median "skopeo loop $where")
  x=$(speedup "$s" "$f"); rc=$(cpu "ferry-diff $where")
  floor=$(awk -v c="$rc" -v n="$CORES" 'BEGIN{printf "%.2f", c/n}')
  fx=$(ratio2 "$f" "$floor")
  if grep -qF "ferry-diff $where (round " "$WORK/issuer-cpu.txt"; then
    extra=" (+ token issuer $(median_of "$WORK/issuer-cpu.txt" "ferry-diff $where"))"
  fi
  busy=$(awk -v c="$(median_of "$WORK/machine-cpu.txt" "ferry-diff $where")" -v f="$f" -v n="$CORES" \
    'BEGIN{if (f > 0) printf "%.0f%%", 100*c/(f*n); else print "?"}')
  printf '| `skopeo inspect --raw` loop, %s | %s | 1.0 | %s | %s | | | | %s MiB | |\n' "$title" "$s" \
    "$(requests "skopeo loop $where")" "$(cpu "skopeo loop $where")" "$(bench_rss_mib "skopeo loop $where")"
  local t=""
  if [ -n "$ceil_target" ]; then t="≤ ${ceil_target}x registry CPU / cores: $(atmost "$fx" "$ceil_target")"; fi
  if [ -n "$x_target" ]; then
    t="${t:+$t; }≥ ${x_target}x skopeo: $(atleast "$x" "$x_target") (the registry's floor allows at most $(speedup "$s" "$floor")x: skopeo s / floor s)"
  fi
  printf '| `ferry-diff`, %s | %s | %s | %s | %s%s | %s | %s | %s | %s MiB | %s |\n' "$title" "$f" "$x" \
    "$(requests "ferry-diff $where")" "$rc" "$extra" "$floor" "$fx" "$busy" "$(bench_rss_mib "ferry-diff $where")" "$t"
}
# What the requests of one run were (round 1 of each).
KIND_FL=$(request_kinds "$WORK/requests/ferry-diff loopback.1.log")
KIND_FT=$(request_kinds "$WORK/requests/ferry-diff loopback-token.1.log")
KIND_FR=$(request_kinds "$WORK/requests/ferry-diff rtt50.1.log")
KIND_SL=$(request_kinds "$WORK/requests/skopeo loop loopback.1.log")
NOTE=""
if [ "$IMAGES" -lt 100 ] || [ "$BLOBS" -lt 1000 ]; then NOTE=" **Smoke test: below the 100 images / 1,000 blobs the targets are defined for.**"; fi
if [ "$DELAY_MODE" = netem ]; then
  RTT_SETUP="\`tc qdisc add dev VETH root netem delay ${DELAY_MS}ms\` on both ends of the veth pair; \`ping -c 3\`: avg ${PING_AVG} ms; one HTTP request on a kept-alive TLS connection: ${HTTP_RTT} ms"
else
  RTT_SETUP="this kernel has no \`sch_netem\` (\`tc qdisc add ... netem\`: $(head -1 "$WORK/tc.err" | sed 's/`//g')), so the registry listens on the namespace's own 127.0.0.1 and a TCP relay inside the namespace on $NS_ADDR:$NS_PORT (\`scripts/bench-relay.py\`) delivers every chunk ${DELAY_MS} ms after it arrived, in each direction (\`ping -c 3\`, ICMP, is not delayed: avg ${PING_AVG} ms; one HTTP request on a kept-alive TLS connection: ${HTTP_RTT} ms). TCP handshakes are not delayed: this undercounts new connections by one round trip each, which favours the skopeo loop (new connections for every image)"
fi

cat <<MD
### ferry-diff ($(date -u +%Y-%m-%d))

Command: \`scripts/bench-diff.sh $IMAGES\` — machine: $(bench_machine).
Package: $N_IMAGES images x $LAYERS layers of ~$LAYER_SIZE (\`ferry-fixture --format dir --images $IMAGES --layers $LAYERS --layer-size $LAYER_SIZE --no-shared-base\`), $BLOBS blobs (layers, configs, manifests; $((BYTES / 1024)) KiB), \`ferry-export\`ed to a store and pushed in full with \`ferry-push\` (${PUSH_SECS} s); everything in sync, every ferry-diff run exited 0.$NOTE
Registries: distribution $(/usr/bin/docker-registry --version | awk '{print $NF}'), TLS with a private CA, filesystem storage, access log on. Loopback: on 127.0.0.1 with htpasswd (bcrypt cost 5: distribution checks the hash on every request of a Basic-auth client). Loopback, no auth: the same storage served without the \`auth:\` section (ferry-diff with \`--need-credential=false\`, skopeo without \`--creds\`). Loopback, token: the test harness's registry (\`ferry-test-registry --mode tls-token\`, as the end-to-end tests start it: Bearer tokens from its ES256 token issuer, one signature check per request), filled by \`ferry-push\`. 50 ms RTT: the htpasswd registry on the same storage inside a network namespace created by the script, reached from the host over a veth pair ($HOST_ADDR/30 <-> $NS_ADDR/30); $RTT_SETUP. Median of 3 rounds after an untimed, checked warm-up.
- ferry: \`ferry-diff --source STORE --private-registry HOST:PORT/ns --cacert ca.crt --username U --password-stdin\` (\`--jobs\` ${FERRY_BENCH_DIFF_JOBS:-64, its default}).
- without ferry: for each image, one after the other, \`skopeo inspect --raw --cert-dir CERTS --creds U:P docker://HOST:PORT/ns/PATH:TAG\` (the manifest only: it checks less than ferry-diff, which also checks every child manifest and blob).
- registry CPU: the registry process's user + system seconds during the run (/proc/PID/stat; median); floor = registry CPU / $CORES cores, the least wall time in which the registry can answer those requests, whatever the client; ferry / floor is ferry-diff's wall time over that floor (target ≤ 1.25 on loopback); machine busy = every process's CPU time on the machine during the ferry-diff run (/proc/stat, median) over wall time x $CORES cores: near 100%, the cores were saturated and the registry did not have them to itself (this VM is shared: other builds run beside the benchmark).

| what | seconds | x faster than the skopeo loop | HTTP requests per run | registry CPU s | floor s (CPU / $CORES cores) | ferry / floor | machine busy | peak RSS | target |
|---|---|---|---|---|---|---|---|---|---|
$(row loopback "loopback, htpasswd" 1.25 "")
$(row loopback-noauth "loopback, no auth" 1.25 "")
$(row loopback-token "loopback, token auth" 1.25 10)
$(row rtt50 "50 ms RTT, htpasswd" "" 10)

HTTP requests are counted from the registry's access log (one line per request) around each run; peak RSS is the client's (highest of the 3 rounds; the skopeo loop's is one \`skopeo\` process). Token case: the token issuer runs in the harness process, its CPU seconds are shown in brackets. One \`ferry-diff\` run, loopback htpasswd: $KIND_FL; token: $KIND_FT; 50 ms RTT: $KIND_FR. One skopeo loop, loopback: $KIND_SL.
MD
