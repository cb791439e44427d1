#!/usr/bin/env bash
# Shared helpers for scripts/bench-*.sh (sourced, not run).

bench_machine() {
  printf '%s, %s cores, %s RAM, kernel %s' \
    "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')" "$(nproc)" \
    "$(free -h | awk '/^Mem:/{print $2}')" "$(uname -r)"
}

# time_cmd LABEL CMD...: runs CMD under GNU time; appends "LABEL seconds peak_rss_kib" to $BENCH_RESULTS.
time_cmd() {
  local label=$1; shift
  local t; t=$(mktemp)
  /usr/bin/time -f '%e %M' -o "$t" "$@" >/dev/null
  read -r secs rss < "$t"
  rm -f "$t"
  printf '%s %s %s\n' "$label" "$secs" "$rss" >> "$BENCH_RESULTS"
  printf '  %-40s %8.2f s  peak RSS %6d MiB\n' "$label" "$secs" "$((rss / 1024))" >&2
}

# drop_caches FILE...: evict files from the page cache (cold-cache runs).
drop_caches() {
  sync
  if [ -w /proc/sys/vm/drop_caches ]; then echo 3 > /proc/sys/vm/drop_caches; fi
}

# bench_median LABEL: median seconds of the "LABEL (round N)" lines in $BENCH_RESULTS
# (the lower middle one for an even count).
bench_median() {
  grep -F "$1 (round " "$BENCH_RESULTS" | awk '{print $(NF-1)}' | sort -n \
    | awk '{v[NR]=$1} END{if (NR) print v[int((NR+1)/2)]}'
}

# bench_rss_mib LABEL: highest peak RSS (MiB) of the "LABEL (round N)" lines in $BENCH_RESULTS.
bench_rss_mib() {
  awk -v l="$1 (round " 'index($0, l) == 1 {print $NF}' "$BENCH_RESULTS" | sort -n | tail -1 | awk '{printf "%d", $1/1024}'
}

# evict_cache PATH...: evict PATH (files, or directories recursively) from the page cache before
# a cold-cache run: drop_caches when /proc/sys/vm/drop_caches takes the write, else `vmtouch -e`,
# else posix_fadvise(POSIX_FADV_DONTNEED) on every file (python3). Sets BENCH_EVICT_METHOD.
# FERRY_BENCH_EVICT=drop_caches|vmtouch|fadvise forces one method (to test the fallbacks).
evict_cache() {
  local want=${FERRY_BENCH_EVICT:-auto}
  sync
  if { [ "$want" = auto ] || [ "$want" = drop_caches ]; } && [ -w /proc/sys/vm/drop_caches ] \
      && ( drop_caches ) 2>/dev/null; then
    BENCH_EVICT_METHOD=drop_caches
  elif { [ "$want" = auto ] || [ "$want" = vmtouch ]; } && command -v vmtouch >/dev/null 2>&1; then
    vmtouch -q -e "$@"
    BENCH_EVICT_METHOD="vmtouch -e"
  elif { [ "$want" = auto ] || [ "$want" = fadvise ]; } && command -v python3 >/dev/null 2>&1; then
    python3 - "$@" <<'PY'
import os, sys
def drop(p):
    fd = os.open(p, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)
for root in sys.argv[1:]:
    if os.path.isdir(root):
        for d, _, files in os.walk(root):
            for f in files:
                p = os.path.join(d, f)
                if os.path.isfile(p) and not os.path.islink(p):
                    drop(p)
    else:
        drop(root)
PY
    BENCH_EVICT_METHOD="posix_fadvise(DONTNEED)"
  else
    echo "evict_cache: cannot evict the page cache (method $want): cold runs are not cold" >&2
    BENCH_EVICT_METHOD=none
  fi
}

# hold_page_reporting: on a VM whose balloon driver reports free memory to the host (free page
# reporting), stop the reports for the benchmark (release_page_reporting restores them). A page
# reported is handed back to the host; the next process to use it (page cache, here) pays for the
# host backing it again. Measured on this project's 2-vCPU VM: the same cold `--fast` audit at
# sys 0.57 s and 0.86-1.13 s with reports on, sys 0.14 s and 0.71-0.82 s held (`cat` of the same
# files 0.60-0.82 s and 0.64-0.76 s). Sets BENCH_PAGE_REPORTING (printed with the results).
hold_page_reporting() {
  local p=/sys/module/page_reporting/parameters/page_reporting_order
  BENCH_PAGE_REPORTING="not on this machine"
  if [ -e "$p" ]; then
    BENCH_PAGE_REPORTING="on (cannot be held without root)"
    if [ -w "$p" ]; then
      BENCH_PAGE_REPORTING_SAVED=$(cat "$p")
      # Above the largest buddy order (10): no free block is ever big enough to be reported.
      if echo 11 > "$p" 2>/dev/null; then
        BENCH_PAGE_REPORTING="held for the run (page_reporting_order $BENCH_PAGE_REPORTING_SAVED -> 11, restored after)"
      fi
    fi
  fi
}
release_page_reporting() {
  if [ -n "${BENCH_PAGE_REPORTING_SAVED:-}" ]; then
    echo "$BENCH_PAGE_REPORTING_SAVED" > /sys/module/page_reporting/parameters/page_reporting_order 2>/dev/null || true
  fi
}

# cached_pct DIR: percentage of DIR's file bytes resident in the page cache (fincore), or "?".
cached_pct() {
  if ! command -v fincore >/dev/null 2>&1; then echo '?'; return; fi
  find "$1" -type f -print0 | xargs -0 -r fincore -b -n -o RES,SIZE 2>/dev/null \
    | awk '{r+=$1; s+=$2} END{if (!s) print "?"; else if (r > s) print 100; else printf "%.0f\n", 100*r/s}'
}

# free_port: a free TCP port on 127.0.0.1 (the caller retries if it is taken before use).
free_port() {
  if command -v python3 >/dev/null 2>&1; then
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
  else
    local p
    while :; do
      p=$((20000 + RANDOM % 40000))
      (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }
    done
  fi
}

# bench_registry_pki DIR USER IP...: a private CA (DIR/ca.crt; also DIR/certs.d/ca.crt for skopeo's
# --cert-dir), a server certificate (DIR/server.crt, DIR/server.key) whose subjectAltName holds
# every IP given, and a bcrypt (cost 5) htpasswd for USER with a random password (DIR/htpasswd,
# DIR/password, mode 600). Sets BENCH_REG_PASS.
bench_registry_pki() {
  local dir=$1 user=$2; shift 2
  local san ip
  san=$(for ip in "$@"; do printf 'IP:%s,' "$ip"; done); san=${san%,}
  mkdir -p "$dir/certs.d"
  openssl req -x509 -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 -sha256 -days 2 \
    -subj "/CN=ferry bench CA" -keyout "$dir/ca.key" -out "$dir/ca.crt" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
  openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 -sha256 \
    -subj "/CN=$1" -keyout "$dir/server.key" -out "$dir/server.csr" 2>/dev/null
  printf '%s\n' "subjectAltName=$san" "basicConstraints=critical,CA:FALSE" \
    "keyUsage=critical,digitalSignature" "extendedKeyUsage=serverAuth" > "$dir/server.ext"
  openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" -CAcreateserial \
    -sha256 -days 2 -extfile "$dir/server.ext" -out "$dir/server.crt" 2>/dev/null
  cp "$dir/ca.crt" "$dir/certs.d/ca.crt"
  BENCH_REG_PASS=$(openssl rand -hex 16)
  ( umask 077; printf '%s\n' "$BENCH_REG_PASS" > "$dir/password" )
  htpasswd -B -C 5 -bn "$user" "$BENCH_REG_PASS" > "$dir/htpasswd" 2>/dev/null
}

# bench_access_log_requests LOG [METHOD]: number of requests (optionally only METHOD ones) in a
# registry log with the access log on (one `ADDR - USER [date] "METHOD /path HTTP/1.1" ...` line
# per request; the registry's other log lines do not count).
bench_access_log_requests() {
  local m=${2:-[A-Z]+}
  if [ ! -f "$1" ]; then echo 0; return; fi
  grep -cE "^[^ ]+ - [^ ]+ \[[^]]*\] \"$m /" "$1" || true
}
