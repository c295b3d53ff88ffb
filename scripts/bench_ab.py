#!/usr/bin/env python3
"""Which of two or more forms of a report's SQL is faster, on one `serve` over an existing store.

    scripts/bench_ab.py --store /path/to/store queries/sla.sql /tmp/sla-variant.sql

Starts `convoscope serve` on the store (report cache and background compaction off), checks
that every form gives the first form's rows (numbers to 1e-9 relative), then runs the forms
through `POST /v1/query` in rounds, each round in the other order than the one before, and
prints each form's median time and the median over rounds of its time divided by the first
form's in the same round. On this shared machine a report's time moves by 20-35% from one
minute to the next; the ratio of two runs a second apart moves far less, so a change of 5-10%
shows in the paired ratio long before it shows in two separate benchmark runs.

`/v1/query` reads a CTE marked `AS MATERIALIZED` wherever it is referenced (a caller's
statement holds nothing outside the memory budget), while a report computes it once: timed
there, a form that reads such a CTE three times looks three times as slow as the report runs
it. So when a form marks a CTE `AS MATERIALIZED`, every form runs as the reports do, through
`convoscope query --materialize` (one process per run: its start and the file listing are in
every time, so ratios are a little nearer 1 than the queries' own).
"""

import argparse
import json
import statistics
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import bench_reports as br
import benchlib as b


def literal_sql(path):
    """The SQL of `path` with the cohort spliced in where it says `{{cohort}}` and the
    benchmark's parameters as literals (`/v1/query` takes no parameters). It reads the facts
    tables as `serve` has them: from the rollups where they cover the store."""
    sql = br.splice(Path(path).read_text())
    params = br.params_for(sql)
    for name in sorted(params, key=len, reverse=True):
        value = params[name]
        sql = sql.replace(f"${name}", repr(value) if isinstance(value, float) else f"'{value}'")
    return sql


def query_materialized(binary, env, sql):
    """The rows of `sql` as a report runs it: `convoscope query --materialize`, one process."""
    # After `--`: the SQL begins with a comment, `--`, which would read as a flag.
    out = subprocess.run([binary, "query", "--materialize", "--format", "json", "--", sql], env=env,
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"convoscope query failed: {out.stderr}")
    return json.loads(out.stdout)["rows"]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("forms", nargs="+", help="SQL files; the first is the baseline")
    ap.add_argument("--store", required=True, help="store directory (as written by generate or serve)")
    ap.add_argument("--rounds", type=int, default=25)
    ap.add_argument("--bin", default=b.default_bin())
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="convoscope-ab-"))
    env = b.serve_env(work, 0, CONVOSCOPE_TOKENS=f"read:{br.TOKEN}",
                      CONVOSCOPE_STORAGE=f"file://{Path(args.store).resolve()}")
    sqls = [literal_sql(f) for f in args.forms]
    materialize = any("AS MATERIALIZED" in sql.upper() for sql in sqls)
    serve, base = (None, None) if materialize else br.start_serve(args.bin, work, env, "ab")
    if materialize:
        print("a form marks a CTE AS MATERIALIZED: every form runs through `convoscope query --materialize`")
    try:
        def run(sql):
            if materialize:
                return query_materialized(args.bin, env, sql)
            req = urllib.request.Request(f"{base}/v1/query", data=json.dumps({"sql": sql}).encode(),
                                         headers={"Authorization": f"Bearer {br.TOKEN}",
                                                  "Content-Type": "application/json"})
            return json.load(urllib.request.urlopen(req, timeout=600))["rows"]

        first = run(sqls[0])
        for path, sql in zip(args.forms[1:], sqls[1:]):
            if not b.same_rows(run(sql), first):
                raise SystemExit(f"{path} gives other rows than {args.forms[0]}")
        times = [[] for _ in sqls]
        for r in range(args.rounds):
            order = range(len(sqls)) if r % 2 == 0 else reversed(range(len(sqls)))
            for i in order:
                if serve:
                    b.wait_idle(serve.pid)
                t = time.perf_counter()
                run(sqls[i])
                times[i].append(time.perf_counter() - t)
    finally:
        if serve:
            b.stop(serve)
    for path, ts in zip(args.forms, times):
        paired = statistics.median(t / t0 for t, t0 in zip(ts, times[0]))
        print(f"{path}: median {statistics.median(ts):.3f} s, paired ratio to the first {paired:.3f}")


if __name__ == "__main__":
    main()
