#!/usr/bin/env bash
# Soak: many more crash and network-fault trials than the CI suite runs, bounded
# in time, against real registries on loopback. Prints the figures that go into
# RELIABILITY.md.
#   scripts/soak.sh [TRIALS=50] [SCHEDULES=100] [MINUTES=30]
# Replay one failing trial with FERRY_TRIAL_SEED=N or FERRY_FAULT_SEED=N (see the test output).
set -euo pipefail
cd "$(dirname "$0")/.."
TRIALS=${1:-50}
SCHEDULES=${2:-100}
MINUTES=${3:-30}

bash scripts/install-deps.sh
cargo build --workspace --bins --locked -q
export FERRY_SOAK_TRIALS=$TRIALS FERRY_SOAK_SCHEDULES=$SCHEDULES
LOG="target/soak-$(date -u +%Y%m%dT%H%M%SZ).log"
mkdir -p target
echo "soak: $TRIALS export crash trials, $TRIALS push crash trials, $SCHEDULES network-fault schedules (at most $MINUTES min); log: $LOG" >&2
status=0
timeout --signal=TERM "${MINUTES}m" \
  cargo test --locked -p ferry-e2e --test export_crash --test push_crash --test faults -- --test-threads=1 --nocapture \
  > "$LOG" 2>&1 || status=$?
grep -E '^(crash trials|resets injected|push crash|trials|test result|test .* (ok|FAILED))' "$LOG" || true
grep -iE 'trial|reset|kill|resum|fault' "$LOG" | grep -vE '^\s*(at |[0-9]+:)' | tail -n 20 || true
if [ "$status" -eq 124 ]; then echo "soak: stopped by the $MINUTES-minute bound" >&2; fi
exit "$status"
