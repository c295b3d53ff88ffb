#!/usr/bin/env python3
"""Report speed and storage size: convoscope vs DuckDB on the same Parquet files.

For each size: `convoscope generate` N events, then for every report:
  - convoscope hot: `GET /v1/reports/NAME` on a running `serve` (report cache off), after one
    warm-up, median of R runs;
  - convoscope cold: the whole `convoscope report NAME` command (process start, listing,
    planning, scan), one run;
  - DuckDB hot: in-process on the same files, after one warm-up, median of R runs, on every
    formulation of the report (the faster counts): the report's SQL from `queries/` over the
    facts views of `queries/facts/`, and the report as one query straight over the events
    (scripts/bench/duckdb/events/), with DuckDB's own CTEs from scripts/bench/duckdb/ where it
    has any. DuckDB reads the events files only, as a team without convoscope would;
    convoscope's reports read the facts from its rollups (src/rollup/), written when the
    events files were, so the check below also checks the rollups against the events;
and checks both engines give the same numbers (the benchmark fails if they differ). Then bytes
per event of convoscope's Parquet vs DuckDB's own `COPY ... (FORMAT parquet, COMPRESSION zstd)`
of the same rows (and the bytes of the rollups, listed apart); then `convoscope compact` (one file per day, as past days are in a deployment
that runs it), its bytes per event, and every report timed again on that layout; then every
report on the compacted events alone (hard links to its events files, no rollups, no kept
experiment table: a store another tool wrote, or before `serve` or `compact` ran on it); and how
report time grows with the number of events (as generated).

    scripts/bench_reports.py                                  # 1, 3 and 10 million events, 5 runs
    scripts/bench_reports.py --events 10000000 --runs 5
    scripts/bench_reports.py --smoke                          # 100,000 events, 1 run (CI)
"""

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
import urllib.request
from pathlib import Path

import duckdb

import benchlib as b

ROOT = b.ROOT
REPORTS = ["trends", "funnel", "delivery", "failures", "containment", "sla", "cost", "experiment", "engagement",
           "time_to_convert", "retention", "buttons", "templates", "pricing", "account"]
# Columns that exist in both outputs and must agree (convoscope adds statistics to experiment).
COMPARE_SKIP = {"experiment": {"revenue_sum", "revenue_sq_sum", "reads", "replies"}}
TOKEN = "bench-read-token"


# convoscope's own functions in the report SQL (src/analytics/): `id_key(text)`, ids as numbers
# to group and join on, `max_text` / `min_text`, MAX / MIN of few-valued text, and
# `earliest_text(x, t)`, the ordered first value (DuckDB's `first(x ORDER BY t, x)`; its
# `first_value` is a window function only). DuckDB gets them as macros (its own 64-bit
# `hash` for id_key, null staying null; its MAX, MIN and first), and is also timed on the same
# SQL in plain form (ids as strings, MAX, MIN, first), as the reports were written before: its
# faster time counts.
DUCKDB_MACROS = [
    "CREATE MACRO id_key(x) AS CASE WHEN x IS NULL THEN NULL ELSE hash(x) END",
    "CREATE MACRO max_text(x) AS max(x)",
    "CREATE MACRO min_text(x) AS min(x)",
    "CREATE MACRO earliest_text(x, t) AS first(x ORDER BY t, x) FILTER (WHERE x IS NOT NULL AND t IS NOT NULL)",
    "CREATE MACRO json_text(j, k) AS json_extract_string(j, '$.' || k)",
]
PLAIN_SQL = [
    (re.compile(r"\bid_key\(((?:[^()]|\([^()]*\))*)\)"), r"\1"),
    (re.compile(r"\bmax_text\("), "MAX("),
    (re.compile(r"\bmin_text\("), "MIN("),
    (re.compile(r"\bearliest_text\((\w+), (\w+)\)"),
     r"first(\1 ORDER BY \2, \1) FILTER (WHERE \1 IS NOT NULL AND \2 IS NOT NULL)"),
]


def plain(sql):
    """The SQL with convoscope's functions in standard SQL, reading the facts views in the same
    form (`<fact>_plain`: ids as strings, joined with the report's strings)."""
    for pattern, replacement in PLAIN_SQL:
        sql = pattern.sub(replacement, sql)
    return re.sub(r"\b(message_facts|conversation_facts|exposure_facts|contact_event_facts)\b", r"\1_plain", sql)


# DuckDB's own formulations of some reports: scripts/bench/duckdb/NAME.sql holds CTEs that
# replace the report's CTEs of the same names (same rows, different SQL). Each formulation is
# timed next to the report's own; DuckDB's faster time is the one compared.
DUCKDB_DIR = ROOT / "scripts" / "bench" / "duckdb"


MATERIALIZED = re.compile(r"^(\w+) AS MATERIALIZED \(", re.MULTILINE)


def cte_spans(sql):
    """{name: (start, end)} of every `name AS (...)` CTE that starts a line, parentheses
    balanced outside comments and string literals."""
    spans = {}
    for m in re.finditer(r"^(\w+) AS (?:MATERIALIZED )?\(", sql, re.MULTILINE):
        depth, i = 0, m.end() - 1
        while i < len(sql):
            ch = sql[i]
            if sql.startswith("--", i):
                i = sql.find("\n", i)
                if i < 0:
                    break
            elif ch == "'":
                i = sql.index("'", i + 1)
            elif ch == "(":
                depth += 1
            elif ch == ")":
                depth -= 1
                if depth == 0:
                    spans[m.group(1)] = (m.start(), i + 1)
                    break
            i += 1
    return spans


def with_ctes(sql, overrides):
    """The report SQL with each CTE defined in `overrides` put in place of its namesake; a
    name the report lacks is an error, so renaming a CTE cannot silently drop DuckDB's form."""
    theirs = cte_spans(overrides)
    for name, (start, end) in sorted(cte_spans(sql).items(), key=lambda kv: -kv[1][0]):
        if name in theirs:
            a, b_ = theirs.pop(name)
            sql = sql[:start] + overrides[a:b_] + sql[end:]
    if theirs:
        raise SystemExit(f"DuckDB's CTEs {sorted(theirs)} are not in the report's SQL")
    return sql


def splice(sql):
    """`sql` with the shared pieces of queries/ spliced in where it names them (`{{cohort}}`,
    `{{priced}}`, `{{conversions}}`, `{{clicks}}`, `{{breakdown}}`, `{{experiment_contacts}}`), as
    convoscope does (src/analytics/reports/mod.rs)."""
    for piece in ["cohort", "priced", "conversions", "clicks", "breakdown", "experiment_contacts"]:
        sql = sql.replace("{{" + piece + "}}", (ROOT / "queries" / f"{piece}.sql").read_text())
    return sql


# The facts tables the reports read (src/analytics/facts.rs): DuckDB gets them as the views
# over the events that back them where a store has no rollups.
FACTS = ["message_facts", "conversation_facts", "exposure_facts", "contact_event_facts"]


def events_sql(name, report):
    """scripts/bench/duckdb/events/NAME.sql with its pieces in: `{{cohort}}` the cohort over the
    events, `{{report}}` the whole report (one that reads the events alone), `{{report_cte:X}}`
    the report's CTE X, `{{report_from:X}}` the report from its CTE X (or its final SELECT) to
    the end."""
    sql = (DUCKDB_DIR / "events" / f"{name}.sql").read_text()
    sql = sql.replace("{{cohort}}", (DUCKDB_DIR / "events" / "cohort.sql").read_text())
    sql = sql.replace("{{report}}", report)
    spans = cte_spans(report)
    final = [m.start() for m in re.finditer(r"^SELECT ", report, re.MULTILINE)][-1]

    def piece(m):
        kind, cte = m.group(1), m.group(2)
        if kind == "report_from":
            return report[final:] if cte == "SELECT" else report[spans[cte][0]:]
        start, end = spans[cte]
        return report[start:end]
    return re.sub(r"\{\{(report_cte|report_from):(\w+)\}\}", piece, sql)


def duck_sqls(name):
    """(label, SQL) for every formulation DuckDB is timed on: the report's own SQL over the
    facts views, with the cohort spliced in as convoscope does; the report as a query straight
    over the events (scripts/bench/duckdb/events/, the form a team without convoscope would
    write), and that with DuckDB's own CTEs from scripts/bench/duckdb/ where it has any; each
    also in plain SQL where it uses convoscope's functions."""
    sql = (ROOT / "queries" / f"{name}.sql").read_text()
    events = events_sql(name, splice(sql))
    forms = [("report SQL", sql), ("events SQL", events)]
    own = DUCKDB_DIR / f"{name}.sql"
    if own.exists():
        forms.append((f"events SQL with {own.relative_to(ROOT)}", with_ctes(events, own.read_text())))
    # A CTE marked AS MATERIALIZED is computed once by both engines; DuckDB is also timed
    # without the hint, where it is faster on some reports (its own choice, then).
    for label, form in list(forms):
        if MATERIALIZED.search(form):
            forms.append((f"{label}, not materialized", MATERIALIZED.sub(r"\1 AS (", form)))
    out = []
    for label, form in forms:
        form = splice(form)
        out.append((label, form))
        standard = plain(form)
        if standard != form:
            out.append((f"{label}, plain", standard))
    return out


def measured_metrics():
    """`$metrics` as `serve` binds it for the benchmark's experiments.toml: every experiment's
    goals and guardrails, and the default goal (converted) for an experiment not defined."""
    defs = tomllib.loads((ROOT / "experiments.toml").read_text()).get("experiment", [])
    metrics = {"converted"}
    for e in defs:
        analysis = e.get("analysis", {})
        metrics.update(analysis.get("goals", ["converted"]))
        metrics.update(g["metric"] for g in analysis.get("guardrails", []))
    return "," + "".join(m + "," for m in sorted(metrics))


def params_for(sql):
    values = {"from": "0000-01-01", "to": "9999-12-31", "campaign": "", "experiment": "",
              "window_s": 7 * 86400.0, "bot_cost": 0.10, "agent_cost_per_hour": 20.0,
              "lookback_from": "0000-01-01", "lookback_s": 14 * 86400.0, "cap_q": 0.999, "by": "", "then_by": "",
              "interval": "day", "period_from": "0000-01-01", "metrics": measured_metrics()}
    return {k: v for k, v in values.items() if f"${k}" in sql}


def close(a, b_, column=""):
    # DataFusion's percentile_cont truncates its interpolation weight to 1e-6, so a percentile
    # may differ from DuckDB's by up to 1e-6 of the gap between the two neighbouring values;
    # allow that (bounded here by 1e-4 relative), nothing more.
    return b.close(a, b_, 1e-4 if column.startswith("p") and column[1:3].isdigit() else 1e-9)


def per_variant(ours, theirs, cols):
    """The experiment report's goal rows and DuckDB's rows as (experiment, variant, exposures,
    conversions): the report computes its statistics from sums per variant, slice and country
    (summed here, without the contacts met by more than one variant), the baseline per
    variant."""
    mine = [{"experiment": r["experiment"], "variant": r["variant"], "exposures": r["exposures"],
             "conversions": r["conversions"]}
            for r in ours if r.get("metric") == "converted" and r.get("slice") is None]
    sums = {}
    for row in theirs:
        r = dict(zip(cols, row))
        if r.get("multi"):
            continue
        k = (r["experiment"], r["variant"])
        e, c = sums.get(k, (0, 0))
        sums[k] = (e + r["exposures"], c + r["conversions"])
    theirs = [[k[0], k[1], e, c] for k, (e, c) in sorted(sums.items())]
    mine.sort(key=lambda r: (r["experiment"], r["variant"]))
    # A defined variant nobody was exposed to is a row of the report only.
    mine = [r for r in mine if r["exposures"] > 0]
    return mine, theirs, ["experiment", "variant", "exposures", "conversions"]


def active_weeks(ours, theirs, cols):
    """The retention report's rows with activity and the SQL's rows: the SQL gives each cohort's
    active weeks (one row with week null for a cohort never active), and the report fills the
    weeks between with 0 (src/analytics/reports/retention.rs)."""
    keep = ["cohort_week", "week", "contacts", "active"]
    mine = [r for r in ours if r["active"] > 0]
    theirs = [[r[cols.index(c)] for c in keep] for r in theirs if r[cols.index("week")] is not None]
    return mine, theirs, keep


def compare(name, ours, theirs, cols, label="report SQL"):
    if name == "experiment":
        ours, theirs, cols = per_variant(ours, theirs, cols)
    if name == "retention":
        ours, theirs, cols = active_weeks(ours, theirs, cols)
    skip = COMPARE_SKIP.get(name, set())
    if len(theirs) != len(ours):
        return [f"{name}: {len(ours)} rows vs DuckDB {len(theirs)} ({label})"]
    for i, (o, t_row) in enumerate(zip(ours, theirs)):
        for c, v in zip(cols, t_row):
            if c in skip or c not in o:
                continue
            v = duck_value(v)
            if not close(o[c], v, c):
                return [f"{name} row {i} {c}: convoscope {o[c]!r} vs DuckDB {v!r} ({label})"]
    return []


def start_serve(binary, work, env, label):
    """`convoscope serve` for timing reports, on a free port: no report cache, and no background
    compaction changing the files under the timings. Returns (process, base URL); `env` must
    hold the store and a read token."""
    conf = work / "bench.toml"
    conf.write_text("report_cache_secs = 0\ncompact_every_secs = 0\n")
    port = b.free_port()
    env = dict(env, CONVOSCOPE_LISTEN=f"127.0.0.1:{port}")
    serve = b.start([binary, "--config", str(conf), "serve"], env=env, log=work / f"serve-{label}.log")
    base = f"http://127.0.0.1:{port}"
    try:
        b.wait_for(base + "/healthz")
    except BaseException:
        b.stop(serve)
        raise
    return serve, base


def duck_connection(store, rollup_dirs=None):
    """DuckDB over `store`: convoscope's functions as macros, `events`, `rate_card` and every
    facts table, as the view of queries/facts/ over the events (and its plain form,
    `<fact>_plain`) or, where `rollup_dirs` names its rollup's directory under `rollups/`, as
    that rollup's files."""
    con = duckdb.connect()
    con.execute(f"SET threads TO {os.cpu_count()}")
    for macro in DUCKDB_MACROS:
        con.execute(macro)
    con.execute(f"CREATE VIEW events AS SELECT * FROM read_parquet('{store}/events/*/*.parquet', hive_partitioning = true)")
    for fact in FACTS:
        if rollup_dirs:
            files = Path(store) / "rollups" / rollup_dirs[fact]
            if not any(files.glob("*/*.parquet")):
                raise SystemExit(f"{files} has no files: run `convoscope compact` (it writes them)")
            con.execute(f"CREATE VIEW {fact} AS SELECT * FROM read_parquet('{files}/*/*.parquet', hive_partitioning = true)")
            continue
        view = (ROOT / "queries" / "facts" / f"{fact}.sql").read_text()
        con.execute(f"CREATE VIEW {fact} AS {view}")
        con.execute(f"CREATE VIEW {fact}_plain AS {plain(view)}")
    con.execute(f"CREATE TABLE rate_card AS SELECT * FROM read_csv('{ROOT / 'queries' / 'rate_card.csv'}', header = true)")
    return con


def duck_value(v):
    """A DuckDB value as convoscope's JSON gives it: a UTC time in RFC 3339 with Z (DuckDB's
    has +00:00)."""
    return v.isoformat().replace("+00:00", "Z") if hasattr(v, "isoformat") else v


def time_reports(binary, store, runs, work, env, label):
    """Times every report on `store` with both engines; (results, failures, DuckDB connection,
    number of events). results: {report: (convoscope hot, convoscope whole command, DuckDB hot,
    DuckDB's faster SQL)}."""
    serve, base = start_serve(binary, work, env, label)

    con = duck_connection(store)
    n_events = con.execute("SELECT count(*) FROM events").fetchone()[0]

    results, failures = {}, []
    for name in REPORTS:
        def hot():
            req = urllib.request.Request(f"{base}/v1/reports/{name}?format=json",
                                         headers={"Authorization": f"Bearer {TOKEN}"})
            return json.load(urllib.request.urlopen(req, timeout=600))["rows"]

        def cold():
            return subprocess.run([binary, "report", name, "--format", "json"], env=env, check=True,
                                  capture_output=True, text=True).stdout

        # Once: it differs from hot by process start, file listing and a cold page cache.
        t = time.perf_counter()
        cold()
        cold_s = time.perf_counter() - t
        forms = duck_sqls(name)
        cursors = {}

        def duck(i):
            # DuckDB's execute returns the connection itself: its description is the last
            # query's, so each form's columns are taken as its rows are.
            sql = forms[i][1]
            cur = con.execute(sql, params_for(sql))
            rows = cur.fetchall()
            cursors[i] = [d[0] for d in cur.description]
            return rows

        # Interleaved: each round runs convoscope, then every DuckDB form (in turn, first form
        # rotating), so a slow minute on this shared machine slows both engines, not one. DuckDB
        # starts once `serve` is idle: it may still be freeing the query's memory after answering.
        ours, theirs = hot(), [duck(i) for i in range(len(forms))]
        ours_t, duck_t = [], [[] for _ in forms]
        for r in range(runs):
            b.wait_idle(serve.pid)
            t = time.perf_counter()
            hot()
            ours_t.append(time.perf_counter() - t)
            b.wait_idle(serve.pid)
            for k in range(len(forms)):
                i = (r + k) % len(forms)
                t = time.perf_counter()
                duck(i)
                duck_t[i].append(time.perf_counter() - t)
        hot_s = statistics.median(ours_t)
        duck_s, duck_label = None, None
        for i, (form, _) in enumerate(forms):
            # Every formulation must give convoscope's rows, not only the faster one.
            cols = cursors[i]
            failures += compare(name, ours, theirs[i], cols, f"{form}, {label}")
            s = statistics.median(duck_t[i])
            if duck_s is None or s < duck_s:
                duck_s, duck_label = s, form
        results[name] = (hot_s, cold_s, duck_s, duck_label)
    b.stop(serve)
    return results, failures, con, n_events


def store_files(store):
    """(events files, their bytes, bytes of the rollups beside them)."""
    files = list((store / "events").rglob("*.parquet"))
    rollups = list((store / "rollups").rglob("*.parquet")) if (store / "rollups").exists() else []
    return len(files), sum(f.stat().st_size for f in files), sum(f.stat().st_size for f in rollups)


def bench_size(binary, n, runs, work):
    store = work / "store"
    env = b.serve_env(work, 0, CONVOSCOPE_TOKENS=f"read:{TOKEN}")
    t = time.time()
    subprocess.run([binary, "generate", "--events", str(n), "--days", "30", "--seed", "1"], env=env, check=True,
                   stdout=subprocess.DEVNULL)
    gen_s = time.time() - t

    results, failures, con, n_events = time_reports(binary, store, runs, work, env, "as generated")
    files, parquet_bytes, rollup_bytes = store_files(store)
    duck_file = work / "duckdb.parquet"
    con.execute(f"COPY (SELECT * EXCLUDE (date) FROM events) TO '{duck_file}' (FORMAT parquet, COMPRESSION zstd)")
    duck_bytes = duck_file.stat().st_size
    con.close()

    # The same store after `convoscope compact`, the layout past days have in a deployment that
    # runs it: one file per day instead of one per day and flush.
    t = time.time()
    proc = subprocess.Popen([binary, "compact"], env=env, stdout=subprocess.DEVNULL)
    # The kernel's high-water mark, read until the process exits (getrusage of a child counts
    # the pages it shared with this process between fork and exec).
    compact_rss = 0.0
    while proc.poll() is None:
        try:
            compact_rss = max(compact_rss, b.peak_rss_mib(proc.pid))
        except (OSError, ValueError):
            pass
        time.sleep(0.02)
    if proc.returncode != 0:
        raise SystemExit(f"convoscope compact failed ({proc.returncode})")
    compact_s = time.time() - t
    compacted, more, con, n_after = time_reports(binary, store, runs, work, env, "compacted")
    con.close()
    if n_after != n_events:
        more.append(f"compact left {n_after} events of {n_events}")
    files_c, bytes_c, rollup_c = store_files(store)

    # The same events alone: what reports compute where nothing was written beside them.
    alone = work / "events-alone"
    shutil.copytree(store / "events", alone / "events", copy_function=os.link)
    alone_env = dict(env, CONVOSCOPE_STORAGE=f"file://{alone}")
    events_alone, rest, con, n_alone = time_reports(binary, alone, runs, work, alone_env, "events alone")
    con.close()
    if n_alone != n_events:
        rest.append(f"the events alone hold {n_alone} events of {n_events}")
    more += rest
    return dict(n=n_events, gen_s=gen_s, results=results, failures=failures + more, files=files,
                ours_bpe=parquet_bytes / n_events, duck_bpe=duck_bytes / n_events,
                rollup_bpe=rollup_bytes / n_events, rollup_bpe_c=rollup_c / n_events,
                compacted=compacted, files_c=files_c, bpe_c=bytes_c / n_events, compact_s=compact_s,
                compact_rss=compact_rss, events_alone=events_alone)


def report_table(results):
    print("| report | convoscope hot (API) | DuckDB hot (in-process) | ratio | convoscope whole command "
          "| DuckDB's faster SQL |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, (hot_s, cold_s, duck_s, label) in results.items():
        print(f"| {name} | {hot_s:.3f} | {duck_s:.3f} | {hot_s / duck_s:.2f} | {cold_s:.3f} | {label} |")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--events", default="1000000,3000000,10000000", help="comma-separated sizes")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--smoke", action="store_true", help="100,000 events, 1 run")
    ap.add_argument("--bin", default=b.default_bin())
    ap.add_argument("--reports", default=",".join(REPORTS), help="comma-separated reports (default: all)")
    args = ap.parse_args()
    REPORTS[:] = [r for r in args.reports.split(",") if r]
    if args.smoke:
        args.events, args.runs = "100000", 1
    sizes = [int(s) for s in args.events.split(",")]
    root = Path(tempfile.mkdtemp(prefix="convoscope-bench-reports-"))
    done = []
    for n in sizes:
        work = root / str(n)
        work.mkdir()
        done.append(bench_size(args.bin, n, args.runs, work))
        print(f"{n:,} events done", file=sys.stderr)

    print(f"\nmachine: {b.machine()}; medians of {args.runs} run(s), seconds")
    for d in done:
        print(f"\n### {d['n']:,} events ({d['files']} files, generated in {d['gen_s']:.1f} s)\n")
        report_table(d["results"])
        print(f"\n| storage | bytes/event |\n| --- | --- |\n| convoscope Parquet | {d['ours_bpe']:.1f} |"
              f"\n| DuckDB COPY zstd | {d['duck_bpe']:.1f} |\n| ratio | {d['ours_bpe'] / d['duck_bpe']:.2f} |"
              f"\n| convoscope Parquet after `compact` | {d['bpe_c']:.1f} |"
              f"\n| rollups beside it (as generated / compacted) | {d['rollup_bpe']:.1f} / {d['rollup_bpe_c']:.1f} |"
              f"\n| events and rollups, compacted, over DuckDB's file | {(d['bpe_c'] + d['rollup_bpe_c']) / d['duck_bpe']:.2f} |")
        rss = f"peak RSS {d['compact_rss']:.0f} MiB" if d["compact_rss"] else "too short to sample its RSS"
        print(f"\nAfter `convoscope compact` ({d['compact_s']:.1f} s, {rss}; {d['files_c']} files):\n")
        report_table(d["compacted"])
        print(f"\nOn the compacted events alone ({d['files_c']} files, no rollups, no kept experiment table):\n")
        report_table(d["events_alone"])
    if len(done) > 1:
        first = done[0]
        print(f"\n### How report time grows (convoscope hot, seconds; last column: time ratio / size ratio "
              f"against {first['n']:,} events, 1.0 = linear)\n")
        print("| report | " + " | ".join(f"{d['n'] / 1e6:g}M" for d in done) + " | growth vs linear |")
        print("| --- |" + " --- |" * (len(done) + 1))
        for name in REPORTS:
            ts = [d["results"][name][0] for d in done]
            growth = (ts[-1] / ts[0]) / (done[-1]["n"] / first["n"])
            print(f"| {name} | " + " | ".join(f"{t:.3f}" for t in ts) + f" | {growth:.2f} |")
    failures = [f for d in done for f in d["failures"]]
    if failures:
        print(f"\nRESULTS DIFFER (data kept in {root}):\n  " + "\n  ".join(failures[:20]), file=sys.stderr)
        sys.exit(1)
    print("\nboth engines gave the same numbers")
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
