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
