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
#   - a 50 ms round trip: the same registry (same storage) in a network namespace this script
#     creates (ferrybench-PID), reached over a veth pair with 10.213.77.1/30 (host side) and
#     10.213.77.2/30 (namespace side); `tc netem delay 25ms` on both ends where the kernel has
#     netem, else (no sch_netem, e.g. a VM kernel without modules) a TCP relay inside the
#     namespace that holds every chunk 25 ms in each direction (the TCP handshake itself is then
#     not delayed, which favours the skopeo loop: it opens new connections for every image).
# Traffic never leaves this machine: loopback and the namespace this script owns.
#   scripts/bench-diff.sh [IMAGES]      (default 100: the size the targets are defined for)
# Prints a Markdown section to stdout (paste into BENCHMARKS.md); progress goes to stderr.
# FERRY_BENCH_DIR: work directory (default target/bench-diff); FERRY_BENCH_KEEP=1 keeps the bulk
# files. Needs root (network namespace, veth, tc).
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

stop_pid() { # VARNAME: stop the process whose PID is in VARNAME, then clear it
  local pid=${!1}
  if [ -n "$pid" ]; then
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    printf -v "$1" '%s' ""
  fi
}
cleanup() {
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
skopeo_cmd() { # HOST:PORT [CHECK] -> CMD
  local creds="$REG_USER:$REG_PASS"
  if [ "$AUTH" = none ]; then creds=""; fi
  CMD=(bash "$WORK/skopeo-inspect.sh" "$1/ns" "$REG/certs.d" "$creds" "$WORK/images.txt" "${2:-0}")
}
diff_cmd() { # HOST:PORT -> CMD (the password comes on stdin; ignored without auth)
  CMD=("$BIN/ferry-diff" --source "$STORE" --private-registry "$1/ns" --cacert "$REG/ca.crt")
  if [ "$AUTH" = none ]; then CMD+=(--need-credential=false); else CMD+=(--username "$REG_USER" --password-stdin); fi
}
# check_in_sync HOST:PORT: untimed ferry-diff --json; it must exit 0 with every image in sync.
check_in_sync() {
  local rc=0
  diff_cmd "$1"
  "${CMD[@]}" --json < "$REG/password" > "$WORK/diff.json" 2> "$WORK/diff.err" || rc=$?
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
    diff_cmd "$addr"; timed_with_log "ferry-diff $where" "$round" "$log" "$pid" "${CMD[@]}" < "$REG/password"
    skopeo_cmd "$addr"; timed_with_log "skopeo loop $where" "$round" "$log" "$pid" "${CMD[@]}"
  done
}
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }   # user + system clock ticks of PID
timed_with_log() { # LABEL ROUND LOG PID CMD...
  local label=$1 round=$2 log=$3 pid=$4 lines ticks; shift 4
  sleep 0.3; lines=$(wc -l < "$log"); ticks=$(cpu_ticks "$pid")
  time_cmd "$label (round $round)" "$@"
  sleep 0.3; tail -n +"$((lines + 1))" "$log" > "$WORK/requests/$label.$round.log"
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
: > "$WORK/requests.txt"; : > "$WORK/registry-cpu.txt"

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
  cat > "$WORK/delay-relay.py" <<'PY'
# delay-relay.py LISTEN_HOST LISTEN_PORT UPSTREAM_HOST UPSTREAM_PORT DELAY_S: a TCP relay that
# delivers every chunk DELAY_S after it arrived, in each direction, in order (latency, no
# bandwidth limit): what `tc netem delay` does per packet, for kernels without sch_netem.
import asyncio, sys

LH, LP, UH, UP, DELAY = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), float(sys.argv[5])

async def pump(reader, writer):
    loop = asyncio.get_running_loop()
    queue = asyncio.Queue()

    async def read():
        try:
            while True:
                data = await reader.read(65536)
                queue.put_nowait((loop.time() + DELAY, data))
                if not data:
                    return
        except Exception:
            queue.put_nowait((loop.time() + DELAY, b""))

    reading = asyncio.ensure_future(read())
    try:
        while True:
            due, data = await queue.get()
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            if not data:
                if writer.can_write_eof():
                    writer.write_eof()
                return
            writer.write(data)
            await writer.drain()
    except Exception:
        pass
    finally:
        reading.cancel()

async def handle(client_reader, client_writer):
    try:
        up_reader, up_writer = await asyncio.open_connection(UH, UP)
    except Exception:
        client_writer.close()
        return
    await asyncio.gather(pump(client_reader, up_writer), pump(up_reader, client_writer),
                         return_exceptions=True)
    for w in (client_writer, up_writer):
        w.close()

async def main():
    server = await asyncio.start_server(handle, LH, LP, backlog=256)
    async with server:
        await server.serve_forever()

asyncio.run(main())
PY
  ip netns exec "$NS" python3 "$WORK/delay-relay.py" "$NS_ADDR" "$NS_PORT" 127.0.0.1 "$NS_INNER_PORT" \
    "$(awk -v d="$DELAY_MS" 'BEGIN{print d/1000}')" > "$REG/relay.log" 2>&1 &
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
FL=$(bench_median "ferry-diff loopback"); SL=$(bench_median "skopeo loop loopback")
FR=$(bench_median "ferry-diff rtt50"); SR=$(bench_median "skopeo loop rtt50")
FN=$(bench_median "ferry-diff loopback-noauth"); SN=$(bench_median "skopeo loop loopback-noauth")
speedup() { awk -v a="$1" -v b="$2" 'BEGIN{if (b > 0) printf "%.1f", a/b; else print "n/a"}'; }
atleast() { awk -v v="$1" -v t="$2" 'BEGIN{if (v != "n/a" && v + 0 >= t) print "**met**"; else print "**not met**"}'; }
below() { awk -v v="$1" -v t="$2" 'BEGIN{if (v + 0 < t) print "**met**"; else print "**not met**"}'; }
XL=$(speedup "$SL" "$FL"); XR=$(speedup "$SR" "$FR"); XN=$(speedup "$SN" "$FN")
cpu() { # LABEL: median registry CPU seconds of LABEL's rounds
  grep -F "$1 (round " "$WORK/registry-cpu.txt" | awk '{print $NF}' | sort -n \
    | awk '{v[NR]=$1} END{if (NR) print v[int((NR+1)/2)]; else print "?"}'
}
RQ_L=$(requests "ferry-diff loopback"); RQ_R=$(requests "ferry-diff rtt50")
SQ_L=$(requests "skopeo loop loopback"); SQ_R=$(requests "skopeo loop rtt50")
RQ_N=$(requests "ferry-diff loopback-noauth"); SQ_N=$(requests "skopeo loop loopback-noauth")
# What the requests of one run were (round 1 of each).
KIND_FL=$(request_kinds "$WORK/requests/ferry-diff loopback.1.log")
KIND_FR=$(request_kinds "$WORK/requests/ferry-diff rtt50.1.log")
KIND_SL=$(request_kinds "$WORK/requests/skopeo loop loopback.1.log")
NOTE=""
if [ "$IMAGES" -lt 100 ] || [ "$BLOBS" -lt 1000 ]; then NOTE=" **Smoke test: below the 100 images / 1,000 blobs the targets are defined for.**"; fi
if [ "$DELAY_MODE" = netem ]; then
  RTT_SETUP="\`tc qdisc add dev VETH root netem delay ${DELAY_MS}ms\` on both ends of the veth pair; \`ping -c 3\`: avg ${PING_AVG} ms; one HTTP request on a kept-alive TLS connection: ${HTTP_RTT} ms"
else
  RTT_SETUP="this kernel has no \`sch_netem\` (\`tc qdisc add ... netem\`: $(head -1 "$WORK/tc.err" | sed 's/`//g')), so the registry listens on the namespace's own 127.0.0.1 and a TCP relay inside the namespace on $NS_ADDR:$NS_PORT delivers every chunk ${DELAY_MS} ms after it arrived, in each direction (\`ping -c 3\`, ICMP, is not delayed: avg ${PING_AVG} ms; one HTTP request on a kept-alive TLS connection: ${HTTP_RTT} ms). TCP handshakes are not delayed: this undercounts new connections by one round trip each, which favours the skopeo loop (new connections for every image)"
fi

cat <<MD
### ferry-diff ($(date -u +%Y-%m-%d))

Command: \`scripts/bench-diff.sh $IMAGES\` — machine: $(bench_machine).
Package: $N_IMAGES images x $LAYERS layers of ~$LAYER_SIZE (\`ferry-fixture --format dir --images $IMAGES --layers $LAYERS --layer-size $LAYER_SIZE --no-shared-base\`), $BLOBS blobs (layers, configs, manifests; $((BYTES / 1024)) KiB), \`ferry-export\`ed to a store and pushed in full with \`ferry-push\` (${PUSH_SECS} s); everything in sync, every ferry-diff run exited 0.$NOTE
Registry: distribution $(/usr/bin/docker-registry --version | awk '{print $NF}'), TLS with a private CA, htpasswd (bcrypt cost 5), filesystem storage, access log on. Loopback: on 127.0.0.1. Loopback, no auth: the same storage served without the \`auth:\` section (ferry-diff with \`--need-credential=false\`, skopeo without \`--creds\`). 50 ms RTT: the same registry on the same storage inside a network namespace created by the script, reached from the host over a veth pair ($HOST_ADDR/30 <-> $NS_ADDR/30); $RTT_SETUP. Median of 3 rounds after an untimed, checked warm-up.
- ferry: \`ferry-diff --source STORE --private-registry HOST:PORT/ns --cacert ca.crt --username $REG_USER --password-stdin\` (default \`--jobs\` 16).
- without ferry: for each image, one after the other, \`skopeo inspect --raw --cert-dir CERTS --creds U:P docker://HOST:PORT/ns/PATH:TAG\` (the manifest only: it checks less than ferry-diff, which also checks every child manifest and blob).

| what | seconds | x faster than the skopeo loop | HTTP requests per run | registry CPU s | peak RSS | target |
|---|---|---|---|---|---|---|
| \`skopeo inspect --raw\` loop, loopback | $SL | 1.0 | $SQ_L | $(cpu "skopeo loop loopback") | $(bench_rss_mib "skopeo loop loopback") MiB | |
| \`ferry-diff\`, loopback | $FL | $XL | $RQ_L | $(cpu "ferry-diff loopback") | $(bench_rss_mib "ferry-diff loopback") MiB | < 2 s: $(below "$FL" 2); ≥ 10x: $(atleast "$XL" 10) |
| \`skopeo inspect --raw\` loop, loopback, no auth | $SN | 1.0 | $SQ_N | $(cpu "skopeo loop loopback-noauth") | $(bench_rss_mib "skopeo loop loopback-noauth") MiB | |
| \`ferry-diff\`, loopback, no auth | $FN | $XN | $RQ_N | $(cpu "ferry-diff loopback-noauth") | $(bench_rss_mib "ferry-diff loopback-noauth") MiB | < 2 s: $(below "$FN" 2); ≥ 10x: $(atleast "$XN" 10) |
| \`skopeo inspect --raw\` loop, 50 ms RTT | $SR | 1.0 | $SQ_R | $(cpu "skopeo loop rtt50") | $(bench_rss_mib "skopeo loop rtt50") MiB | |
| \`ferry-diff\`, 50 ms RTT | $FR | $XR | $RQ_R | $(cpu "ferry-diff rtt50") | $(bench_rss_mib "ferry-diff rtt50") MiB | < 10 s: $(below "$FR" 10); ≥ 10x: $(atleast "$XR" 10) |

HTTP requests are counted from the registry's access log (one line per request) around each run; registry CPU is the registry process's user + system time during the run (median; /proc/PID/stat), peak RSS the client's (highest of the 3 rounds; the skopeo loop's is one \`skopeo\` process). One \`ferry-diff\` run, loopback: $KIND_FL; 50 ms RTT: $KIND_FR. One skopeo loop, loopback: $KIND_SL.
MD
