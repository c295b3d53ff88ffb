#!/usr/bin/env python3
"""A report's own SQL in both engines, over the same files: is a gap the engine's or the work's?

    scripts/bench_same_sql.py --store /path/to/store experiment

`bench_reports.py` holds each report to DuckDB computing what a team would compute, from the
events. When a report computes more than that baseline (`experiment`: every metric's
pre-exposure period, per slice and country), the ratio mixes two things: how fast the engine
runs the report's plan, and how much more the plan does. This script separates them. It runs
the report's SQL (the benchmark's parameters as literals, as `bench_ab.py` does) through
`convoscope query --materialize`, as the report runs it, and the same SQL in DuckDB with
convoscope's functions as macros and the facts tables read the way convoscope reads them on
that store: from the rollup files where the store has them (`rollups/`), else through the
views of `queries/facts/` over the events (a store of events alone: copy a store's `events/`
to a new directory). It checks that both give the same rows (rollups that do not cover every
events file make convoscope read the views, and the rows differ), then times them and the benchmark's baseline (DuckDB's events
SQL, `scripts/bench/duckdb/events/`) in interleaved rounds, and prints each median and the
medians of the ratios within a round.
"""

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import bench_ab as ab
import bench_reports as br
import benchlib as b

# The directory of each facts table's rollup (src/rollup/mod.rs, `Kind::dir`).
ROLLUP_DIRS = {
    "message_facts": "messages-v3",
    "conversation_facts": "conversations-v3",
    "exposure_facts": "exposures-v3",
    "contact_event_facts": "contact-events",
}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("report", help="a report of queries/ (experiment, funnel, ...)")
    ap.add_argument("--store", required=True, help="store directory (as written by generate or serve)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--bin", default=b.default_bin())
    args = ap.parse_args()

    store = Path(args.store).resolve()
    facts = "rollups" if (store / "rollups").is_dir() else "views"
    sql = ab.literal_sql(br.ROOT / "queries" / f"{args.report}.sql")
    work = Path(tempfile.mkdtemp(prefix="convoscope-same-sql-"))
    env = b.serve_env(work, 0, CONVOSCOPE_STORAGE=f"file://{store}")
    con = br.duck_connection(store, ROLLUP_DIRS if facts == "rollups" else None)

    def ours():
        return ab.query_materialized(args.bin, env, sql)

    def theirs():
        return [[br.duck_value(v) for v in r] for r in con.execute(sql).fetchall()]

    a, d = ours(), theirs()
    if not b.same_rows(a, d):
        raise SystemExit(f"the engines disagree ({len(a)} rows against {len(d)}; first {a[:1]} / {d[:1]}); "
                         "do the rollups cover every events file? (`convoscope compact` writes the missing)")

    baseline = dict(br.duck_sqls(args.report))["events SQL"]

    def duck_baseline():
        return con.execute(baseline, br.params_for(baseline)).fetchall()

    runs = {"convoscope, the report's SQL": ours, "DuckDB, the report's SQL": theirs,
            "DuckDB, the baseline (events SQL)": duck_baseline}
    times = {name: [] for name in runs}
    ratios = {"convoscope / DuckDB, the same SQL": [], "convoscope / the baseline": [],
              "DuckDB's report SQL / the baseline": []}
    for r in range(args.rounds):
        names = list(runs)
        cur = {}
        for name in names[r % 3:] + names[:r % 3]:
            t = time.perf_counter()
            runs[name]()
            cur[name] = time.perf_counter() - t
            times[name].append(cur[name])
        ours_t, same_t, base_t = (cur[n] for n in names)
        for key, ratio in zip(ratios, [ours_t / same_t, ours_t / base_t, same_t / base_t]):
            ratios[key].append(ratio)
    print(f"{args.report}, facts from {facts}, {len(a)} rows alike, {args.rounds} rounds:")
    for name, ts in times.items():
        print(f"  {name}: median {statistics.median(ts):.3f} s")
    for name, rs in ratios.items():
        print(f"  {name}, paired: {statistics.median(rs):.2f}")


if __name__ == "__main__":
    main()
