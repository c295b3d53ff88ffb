#!/usr/bin/env bash
# Fuzzes the parsers that read bytes from the network or the disk: Meta's webhook bodies (and
# 360dialog's and Gupshup's, which Meta's parser reads), Twilio's and UltraMsg's, first-party
# NDJSON, and the write-ahead log's frame decoder (targets in fuzz/).
#
#   scripts/fuzz.sh            # 300 s per target
#   scripts/fuzz.sh 20         # CI's short mode
#
# Each run starts from the fixtures (seeds) and fixtures/fuzz/<target>/ (seeds and every crash
# found so far, kept after its fix), so old crashes are replayed first. A new crash stops the
# script; libFuzzer writes the input to fuzz/artifacts/<target>/.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-300}"
TOOLS="$HOME/.cache/convoscope-tools"
export PATH="$TOOLS/bin:$PATH"
if ! command -v cargo-fuzz >/dev/null 2>&1; then
  echo "== installing cargo-fuzz from crates.io"
  CARGO_TARGET_DIR="$TOOLS/target" cargo install --quiet --locked --root "$TOOLS" cargo-fuzz --version 0.13.2
fi
# Separate from the main target dir: every crate here is built with coverage instrumentation.
export CARGO_TARGET_DIR="${CONVOSCOPE_FUZZ_TARGET_DIR:-$HOME/.cache/convoscope-fuzz-target}"
# cargo fuzz passes flags the stable compiler accepts only with this set; there is no nightly.
export RUSTC_BOOTSTRAP=1

declare -A seeds=(
  [meta]="fixtures/meta fixtures/collector"
  [twilio]=""
  [ultramsg]="fixtures/ultramsg"
  [ndjson]="fixtures/reports fixtures/bad"
  [wal_frames]=""
)
cd fuzz
# Safe Rust needs no AddressSanitizer; without it the instrumented build is much cheaper.
cargo fuzz build --dev --sanitizer none
for t in meta twilio ultramsg ndjson wal_frames; do
  corpus="$CARGO_TARGET_DIR/corpus/$t"
  mkdir -p "$corpus" "../fixtures/fuzz/$t"
  dirs=("$corpus" "../fixtures/fuzz/$t")
  for s in ${seeds[$t]}; do dirs+=("../$s"); done
  echo "== fuzz $t for ${secs}s"
  log="$CARGO_TARGET_DIR/fuzz-$t.log"
  if ! cargo fuzz run --dev --sanitizer none "$t" "${dirs[@]}" -- -max_total_time="$secs" -max_len=65536 \
      -print_final_stats=1 >"$log" 2>&1; then
    tail -60 "$log"
    echo "fuzz target $t failed; the input is in fuzz/artifacts/$t/"
    exit 1
  fi
  grep -E "stat::number_of_executed_units|stat::new_units_added|Done [0-9]+ runs" "$log" || tail -3 "$log"
done
