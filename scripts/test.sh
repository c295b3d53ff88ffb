#!/usr/bin/env bash
# Installs what the tests need on a fresh Debian machine with the Rust toolchain and Python 3,
# then runs every check: formatting, clippy, the Rust tests (unit + one integration binary)
# and the Python cross-checks in tests/python.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/convoscope-target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

# Debian packages: a real Prometheus (scrape test, promtool), Chromium (page test) and wrk
# (benchmark smoke run).
need_apt=()
command -v prometheus >/dev/null 2>&1 || need_apt+=(prometheus)
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
command -v wrk >/dev/null 2>&1 || need_apt+=(wrk)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "== installing ${need_apt[*]} from Debian"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

# Python packages for the cross-checks (DuckDB reads our Parquet independently).
if ls tests/python/test_*.py >/dev/null 2>&1; then
  if ! python3 -c 'import duckdb' 2>/dev/null; then
    echo "== installing Python duckdb"
    python3 -m pip install --quiet --disable-pip-version-check duckdb
  fi
fi

# A real S3-compatible server for the object-store outage test, built once from crates.io.
TOOLS="$HOME/.cache/convoscope-tools"
if [ ! -x "$TOOLS/bin/s3s-fs" ]; then
  echo "== installing s3s-fs (S3 server for the outage test) from crates.io"
  CARGO_TARGET_DIR="$TOOLS/target" cargo install --quiet --locked --root "$TOOLS" s3s-fs --version 0.14.1 --features binary
fi
export PATH="$TOOLS/bin:$PATH"

# The disk-trouble test mounts a small tmpfs as the log directory; that needs root (or
# CAP_SYS_ADMIN). Where mounting is refused it is skipped, loudly, rather than failed.
probe_dir="$(mktemp -d)"
if ! mount -t tmpfs -o size=64k tmpfs "$probe_dir" 2>/dev/null; then
  echo "!! cannot mount a tmpfs here: tests/it/disk.rs (full and read-only log) will be SKIPPED"
  export CONVOSCOPE_NO_MOUNT_TESTS=1
else
  umount "$probe_dir"
fi
rmdir "$probe_dir"

# Every test keeps its data directories and server logs here, for the privacy scan at the end.
export CONVOSCOPE_TEST_ROOT
CONVOSCOPE_TEST_ROOT="$(mktemp -d "${TMPDIR:-/tmp}/convoscope-tests.XXXXXX")"

echo "== promtool check rules, test rules (must-fire and must-not-fire cases of every alert)"
promtool check rules dashboards/alerts.yml dashboards/slo.yml
promtool test rules dashboards/tests/rules_test.yml

echo "== import layers (data flows down: scripts/check_imports.py)"
python3 scripts/check_imports.py

echo "== cargo fmt --check"
cargo fmt --check
echo "== cargo clippy"
cargo clippy --all-targets --quiet -- -D warnings
echo "== cargo test"
cargo test --all-targets

if ls tests/python/test_*.py >/dev/null 2>&1; then
  echo "== python tests (DuckDB cross-check, Prometheus scrape, Chromium page, S3 outage)"
  cargo build --quiet --bin convoscope
  CONVOSCOPE_BIN="$CARGO_TARGET_DIR/debug/convoscope" python3 -m unittest discover -s tests/python -p 'test_*.py' -v
fi

echo "== fuzzing, short mode (20 s per target; scripts/fuzz.sh 300 for a real run)"
scripts/fuzz.sh 20

echo "== privacy scan (no fixture phone number or message text in any data dir, log dir or server log)"
python3 scripts/privacy_scan.py "$CONVOSCOPE_TEST_ROOT"
rm -rf "$CONVOSCOPE_TEST_ROOT"

echo "== benchmark smoke run (100,000 events, 5 s of load; proves the benchmark works, times mean nothing here)"
CONVOSCOPE_BIN="$CARGO_TARGET_DIR/debug/convoscope" scripts/bench.sh --smoke
