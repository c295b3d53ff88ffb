#!/usr/bin/env python3
"""Report speed and storage size: convoscope vs DuckDB on the same Parquet files.

Generates N events with `convoscope generate`, then for every report times `convoscope report`
(the whole command: process start, planning, scan) and DuckDB running the same SQL from
`queries/` (in-process, after one warm-up), median of R runs each, and checks both engines give
the same numbers (the benchmark fails if they differ). Then compares bytes per event of
convoscope's Parquet with DuckDB's own `COPY ... (FORMAT parquet, COMPRESSION zstd)`.

    scripts/bench_reports.py --events 10000000 --runs 5     # full
    scripts/bench_reports.py --smoke                         # 100,000 events, 1 run (CI)
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb

ROOT = Path(__file__).resolve().parents[1]
REPORTS = ["funnel", "delivery", "failures", "containment", "sla", "cost", "experiment", "engagement"]
# Columns that exist in both outputs and must agree (convoscope adds statistics to experiment).
COMPARE_SKIP = {"experiment": {"revenue_sum", "revenue_sq_sum", "reads", "replies"}}


def duck_sql(name):
    sql = (ROOT / "queries" / f"{name}.sql").read_text()
    sql = sql.replace("{{cohort}}", (ROOT / "queries" / "cohort.sql").read_text())
    # The one spelling difference: DataFusion's to_char is DuckDB's strftime.
    return sql.replace("to_char(", "strftime(")


def params_for(sql):
    values = {"from": "0000-01-01", "to": "9999-12-31", "campaign": "", "experiment": "",
              "window_s": 7 * 86400.0, "bot_cost": 0.10, "agent_cost_per_hour": 20.0}
    return {k: v for k, v in values.items() if f"${k}" in sql}


def close(a, b, column=""):
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        # DataFusion's percentile_cont truncates its interpolation weight to 1e-6, so a
        # percentile may differ from DuckDB's by up to 1e-6 of the gap between the two
        # neighbouring values; allow that (bounded here by 1e-4 relative), nothing more.
        rel = 1e-4 if column.startswith("p") and column[1:3].isdigit() else 1e-9
        return abs(a - b) <= rel * max(1.0, abs(a), abs(b))
    return str(a) == str(b)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=10_000_000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--bin", default=os.environ.get("CONVOSCOPE_BIN", str(ROOT / "target" / "release" / "convoscope")))
    args = ap.parse_args()
    if args.smoke:
        args.events, args.runs = 100_000, 1
    work = Path(tempfile.mkdtemp(prefix="convoscope-bench-"))
    store = work / "store"
    env = dict(os.environ, CONVOSCOPE_STORAGE=f"file://{store}", CONVOSCOPE_EXPERIMENTS=str(ROOT / "experiments.toml"),
               CONVOSCOPE_STATE_DIR=str(work / "state"))
    t = time.time()
    subprocess.run([args.bin, "generate", "--events", str(args.events), "--days", "30", "--seed", "1"], env=env, check=True)
    gen_s = time.time() - t

    con = duckdb.connect()
    con.execute(f"SET threads TO {os.cpu_count()}")
    con.execute(f"CREATE VIEW events AS SELECT * FROM read_parquet('{store}/events/*/*.parquet', hive_partitioning = true)")
    con.execute(f"CREATE TABLE rate_card AS SELECT * FROM read_csv('{ROOT / 'queries' / 'rate_card.csv'}', header = true)")
    n_events = con.execute("SELECT count(*) FROM events").fetchone()[0]

    rows_md, failures = [], []
    for name in REPORTS:
        times = []
        ours = None
        for _ in range(args.runs):
            t = time.perf_counter()
            out = subprocess.run([args.bin, "report", name, "--format", "json"], env=env, check=True, capture_output=True, text=True).stdout
            times.append(time.perf_counter() - t)
            ours = json.loads(out)["rows"]
        sql = duck_sql(name)
        p = params_for(sql)
        con.execute(sql, p).fetchall()  # warm-up
        dtimes = []
        for _ in range(args.runs):
            t = time.perf_counter()
            cur = con.execute(sql, p)
            theirs = cur.fetchall()
            dtimes.append(time.perf_counter() - t)
        cols = [d[0] for d in cur.description]
        # Compare: same row count, and every shared column equal row by row.
        skip = COMPARE_SKIP.get(name, set())
        if len(theirs) != len(ours):
            failures.append(f"{name}: {len(ours)} rows vs DuckDB {len(theirs)}")
        else:
            for i, (o, t_row) in enumerate(zip(ours, theirs)):
                for c, v in zip(cols, t_row):
                    if c in skip or c not in o:
                        continue
                    v = v.isoformat() if hasattr(v, "isoformat") else v
                    if not close(o[c], v, c):
                        failures.append(f"{name} row {i} {c}: convoscope {o[c]!r} vs DuckDB {v!r}")
                        break
        ours_s, duck_s = statistics.median(times), statistics.median(dtimes)
        rows_md.append(f"| {name} | {ours_s:.3f} | {duck_s:.3f} | {ours_s / duck_s:.2f} |")

    parquet_bytes = sum(f.stat().st_size for f in store.rglob("*.parquet"))
    duck_file = work / "duckdb.parquet"
    con.execute(f"COPY (SELECT * EXCLUDE (date) FROM events) TO '{duck_file}' (FORMAT parquet, COMPRESSION zstd)")
    duck_bytes = duck_file.stat().st_size

    print(f"\n{n_events:,} events generated in {gen_s:.1f}s; medians of {args.runs} run(s), seconds\n")
    print("| report | convoscope (whole command) | DuckDB (in-process) | ratio |")
    print("| --- | --- | --- | --- |")
    print("\n".join(rows_md))
    print(f"\n| storage | bytes/event |\n| --- | --- |\n| convoscope Parquet | {parquet_bytes / n_events:.1f} |"
          f"\n| DuckDB COPY zstd | {duck_bytes / n_events:.1f} |\n| ratio | {parquet_bytes / duck_bytes:.2f} |")
    if failures:
        print("\nRESULTS DIFFER:\n  " + "\n  ".join(failures[:20]), file=sys.stderr)
        sys.exit(1)
    print("\nboth engines gave the same numbers")


if __name__ == "__main__":
    main()
