#!/usr/bin/env bash
# The whole benchmark in one command (see BENCHMARKS.md): installs wrk (Debian) and duckdb
# (PyPI) if missing, builds the release binary, then runs
#   scripts/bench_ingest.py   webhook ingest vs a bare HTTP handler, /v1/events throughput, RSS,
#                             and webhook ingest beside serve's background compaction
#   scripts/bench_reports.py  every report vs DuckDB at 1, 3 and 10 million events, as generated
#                             and after `convoscope compact`; storage size
#   scripts/bench_readers.py  webhook p50/p99 under a steady 50/s alone and beside four heavy
#                             readers (queries, a report), as a ratio (target: p99 at most 2x)
#   scripts/bench_scale.py    every report on this process against a Ballista cluster of one
#                             and two executors at 10 million events; report time and peak
#                             memory at 1 and 10 million events (--sizes for more)
# and prints markdown tables. `--smoke` runs the four in their tiny CI mode (100,000 events,
# seconds of load), and scripts/bench_ab.py and scripts/bench_ingest_ab.py (builds compared on
# a fresh `serve` per run) for one round each on small inputs so they keep working; with
# CONVOSCOPE_BIN set it uses that binary instead of building release.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/convoscope-target}"
smoke=()
[ "${1:-}" = "--smoke" ] && smoke=(--smoke)

if ! command -v wrk >/dev/null 2>&1; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends wrk >/dev/null
fi
python3 -c 'import duckdb' 2>/dev/null || python3 -m pip install --quiet --disable-pip-version-check duckdb

if [ -z "${CONVOSCOPE_BIN:-}" ]; then
  cargo build --release --quiet --bin convoscope
  export CONVOSCOPE_BIN="$CARGO_TARGET_DIR/release/convoscope"
fi
echo "== ingest ($CONVOSCOPE_BIN)"
python3 scripts/bench_ingest.py "${smoke[@]}" --bin "$CONVOSCOPE_BIN"
echo "== reports"
python3 scripts/bench_reports.py "${smoke[@]}" --bin "$CONVOSCOPE_BIN"
echo "== webhooks beside readers"
python3 scripts/bench_readers.py "${smoke[@]}" --bin "$CONVOSCOPE_BIN"
echo "== engines and sizes"
python3 scripts/bench_scale.py "${smoke[@]}" --bin "$CONVOSCOPE_BIN"
if [ ${#smoke[@]} -gt 0 ]; then
  echo "== bench_ab (smoke)"
  ab="$(mktemp -d)"
  CONVOSCOPE_STORAGE="file://$ab/store" CONVOSCOPE_STATE_DIR="$ab/state" CONVOSCOPE_PII_KEY=bench-key \
    "$CONVOSCOPE_BIN" generate --events 20000 --days 3 --seed 1 >/dev/null
  python3 scripts/bench_ab.py --store "$ab/store" --bin "$CONVOSCOPE_BIN" --rounds 1 \
    queries/failures.sql queries/failures.sql
  echo "== bench_same_sql (smoke)"
  mkdir "$ab/events-alone" && cp -r "$ab/store/events" "$ab/events-alone/"
  for store in store events-alone; do
    python3 scripts/bench_same_sql.py experiment --store "$ab/$store" --bin "$CONVOSCOPE_BIN" --rounds 1
  done
  rm -rf "$ab"
  echo "== bench_ingest_ab (smoke)"
  python3 scripts/bench_ingest_ab.py --load 10 --duration 2 --rounds 1 --bin "$CONVOSCOPE_BIN"
fi
