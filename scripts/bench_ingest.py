#!/usr/bin/env python3
"""Ingest speed: the collector against this machine's ceiling, under the same wrk load.

1. Signed Meta status webhooks of 1, 10 and 100 statuses per request, 64 connections, against
   (a) `convoscope bench-ceiling` (an axum handler that reads the body and answers 200) and
   (b) `convoscope serve`, which verifies, normalises, deduplicates and fsyncs before it
   answers. Requests/s, events/s, p50/p99 latency, peak RSS of serve, ratio b/a.
2. First-party NDJSON batches of 1,000 events to /v1/events: events/s.
   Then what bounds the ratio at 10 statuses: CPU time per request of each server and of
   everything else on the machine (wrk, the kernel), and the ratio a floor of the collector's
   cost would allow: the ceiling's handler plus 10 events at what an event costs under
   /v1/events.
3. What `serve`'s background compaction costs ingest: the 10-status load against a fresh
   `serve` whose store holds a finished day in 10 generated files, with compaction every 3 s
   (it merges them during the load) and off. Requests/s, p50/p99, peak RSS, files left.

Every request body is new (fresh message ids, signed per request by the wrk script), so the
collector stores every event. Afterwards the script checks that the collector stored what it
acknowledged (no refusals, no duplicates) and fails otherwise. No time is asserted.

    scripts/bench_ingest.py                  # 30 s per load
    scripts/bench_ingest.py --smoke          # 5 s per load (CI)
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import benchlib as b

HERE = Path(__file__).resolve().parent
SECRET = "bench-app-secret"
TOKEN = "bench-ingest-token"
UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def parse_wrk(out):
    """Requests, requests/s, p50 and p99 in ms, and non-2xx count from wrk --latency output."""
    def ms(text):
        m = re.match(r"([\d.]+)(us|ms|s|m)$", text)
        return float(m.group(1)) * UNITS[m.group(2)] if m else float("nan")
    res = {"non2xx": 0, "errors": 0}
    for line in out.splitlines():
        s = line.strip()
        if m := re.match(r"(\d+) requests in", s):
            res["requests"] = int(m.group(1))
        elif s.startswith("Requests/sec:"):
            res["rps"] = float(s.split()[1])
        elif m := re.match(r"(50|99)\.000%\s+(\S+)", s) or re.match(r"(50|99)%\s+(\S+)", s):
            res[f"p{m.group(1)}"] = ms(m.group(2))
        elif s.startswith("Non-2xx or 3xx responses:"):
            res["non2xx"] = int(s.split()[-1])
        elif s.startswith("Socket errors:"):
            res["errors"] = sum(int(x) for x in re.findall(r"\d+", s))
    return res


def wrk(url, script, args, duration, conns, threads=2):
    cmd = ["wrk", f"-t{threads}", f"-c{conns}", f"-d{duration}s", "--timeout", "10s", "--latency",
           "-s", str(HERE / "bench" / script), url, "--", *map(str, args)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    r = parse_wrk(out)
    if "rps" not in r:
        raise SystemExit(f"could not read wrk's output:\n{out}")
    return r


def start_collector(binary, work, args=()):
    """A `serve` storing under `work` with the benchmark's Meta secret and ingest token, once it
    answers its health check, its peak-RSS mark reset. Returns the process and its base URL."""
    port = b.free_port()
    env = b.serve_env(work, port, CONVOSCOPE_META_APP_SECRET=SECRET, CONVOSCOPE_TOKENS=f"ingest:{TOKEN}")
    serve = b.start([binary, *args, "serve"], env=env, log=work / "serve.log")
    base = f"http://127.0.0.1:{port}"
    b.wait_for(base + "/healthz")
    b.reset_peak_rss(serve.pid)
    return serve, base


def statuses_load(base, n, run_id, duration, conns):
    """Signed Meta webhooks of `n` statuses each, new message ids per request."""
    return wrk(base + "/webhooks/meta", "meta_statuses.lua", [n, SECRET, run_id], duration, conns)


def events_load(base, run_id, duration):
    """First-party NDJSON batches of 1,000 events to /v1/events, 8 connections."""
    return wrk(base + "/v1/events", "events_ndjson.lua", [1000, TOKEN, run_id], duration, 8)


def compaction_load(binary, work, duration, conns, every, day_events, run_id):
    """The 10-status load against a fresh `serve` whose store holds one finished day in 10
    files (`generate` with 10 seeds), background compaction every `every` seconds (0: off)."""
    work.mkdir()
    env = b.serve_env(work, 0, CONVOSCOPE_META_APP_SECRET=SECRET)
    for seed in range(1, 11):
        subprocess.run([binary, "generate", "--events", str(day_events // 10), "--days", "1", "--seed", str(seed)],
                       env=env, check=True, stdout=subprocess.DEVNULL)
    today = time.strftime("date=%Y-%m-%d", time.gmtime())

    def files():
        """Files of finished days (the load's own events are today's)."""
        return sum(1 for f in (work / "store").rglob("*.parquet") if f.parent.name < today)

    before = files()
    conf = work / "c.toml"
    # Replaced files are kept the longest request, query or report time and a second: 1 s
    # each (webhooks take ms, and nothing else runs here) keeps them 2 s instead of 301, so
    # the merges' deletes happen within the load too.
    conf.write_text(f"compact_every_secs = {every}\nrequest_timeout_secs = 1.0\n"
                    "query_timeout_secs = 1.0\nreport_timeout_secs = 1.0\n")
    serve, base = start_collector(binary, work, ["--config", str(conf)])
    r = statuses_load(base, 10, f"d{run_id}-{every}", duration, conns)
    r["rss"] = b.peak_rss_mib(serve.pid)
    r["exit"] = b.stop(serve)
    r["files"] = (before, files())
    # Merges the round made (a round that runs into the stop leaves the replaced files).
    r["merges"] = (work / "serve.log").read_text(errors="replace").count("merged files")
    return r


def settled_cpu(pid, meter):
    """`meter`'s reading once `pid` is idle after a load (at most 5 s), so the flusher's work on
    the load's sealed segments is counted. The open segment is flushed later (on seal or age),
    so this counts a little less than the load's whole cost."""
    b.wait_idle(pid, quiet=0.2, limit=5.0)
    return meter.stop()


def bound_table(ceiling, collector, fp_us_per_event_s, n=10):
    """Markdown: CPU time per request of both sides at `n` statuses/request, and the ratio a
    floor of the collector's cost would allow. Both runs keep the 2 cores busy, so each side's
    rate is the cores divided by the CPU time per request of the server and of everything else
    (wrk, the kernel); the floor is the ceiling's handler plus `n` events at what an event costs
    the collector under /v1/events, whose batches of 1,000 spread the per-request work thin."""
    def per_request(r):
        done = max(r["requests"] - r.get("non2xx", 0), 1)
        return r["cpu"][0] / done * 1e6, r["cpu"][1] / done * 1e6
    a_srv, a_else = per_request(ceiling)
    b_srv, b_else = per_request(collector)
    floor = a_srv + n * fp_us_per_event_s * 1e6
    return (f"\n| CPU µs per request at {n} statuses/request (/proc) | server | everything else on the machine (wrk, kernel, any other process) |\n"
            f"| --- | --- | --- |\n"
            f"| ceiling | {a_srv:.1f} | {a_else:.1f} |\n"
            f"| collector | {b_srv:.1f} | {b_else:.1f} |\n"
            f"| floor: the ceiling's handler + {n} events at /v1/events' {fp_us_per_event_s * 1e6:.2f} µs/event "
            f"| {floor:.1f} | |\n\n"
            f"ratio the floor allows, everything else at the ceiling's cost: "
            f"({a_srv:.1f} + {a_else:.1f}) / ({floor:.1f} + {a_else:.1f}) = {(a_srv + a_else) / (floor + a_else):.2f}; "
            f"measured {collector['rps'] / ceiling['rps']:.2f}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--duration", type=int, default=30)
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--smoke", action="store_true", help="5 s per load")
    ap.add_argument("--bin", default=b.default_bin())
    args = ap.parse_args()
    if args.smoke:
        args.duration = 5
    sizes = [1, 10, 100]
    work = Path(tempfile.mkdtemp(prefix="convoscope-bench-ingest-"))
    run_id = str(int(time.time() * 1000))
    failures = []

    # (a) the ceiling
    port = b.free_port()
    ceiling = b.start([args.bin, "bench-ceiling", "--listen", f"127.0.0.1:{port}"], log=work / "ceiling.log")
    b.wait_for(f"http://127.0.0.1:{port}/")
    base_a = {}
    for n in sizes:
        meter = b.CpuMeter(ceiling.pid).start()
        base_a[n] = wrk(f"http://127.0.0.1:{port}/webhooks/meta", "meta_statuses.lua", [n, SECRET, f"a{run_id}-{n}"],
                        args.duration, args.connections)
        base_a[n]["cpu"] = meter.stop()
    b.stop(ceiling)

    # (b) the collector, fsync before every acknowledgement (the only mode it has)
    serve, base = start_collector(args.bin, work)
    rows = []
    collector = {}
    sent_events = 0
    for n in sizes:
        b.reset_peak_rss(serve.pid)
        meter = b.CpuMeter(serve.pid).start()
        r = statuses_load(base, n, f"b{run_id}-{n}", args.duration, args.connections)
        r["rss"] = b.peak_rss_mib(serve.pid)
        r["cpu"] = settled_cpu(serve.pid, meter)
        collector[n] = r
        a = base_a[n]
        if r["non2xx"] or r["errors"]:
            failures.append(f"{n} statuses/request: {r['non2xx']} non-2xx answers, {r['errors']} socket errors")
        sent_events += (r["requests"] - r["non2xx"]) * n
        rows.append(f"| {n} | {a['rps']:,.0f} | {r['rps']:,.0f} | {r['rps'] * n:,.0f} | {r['p50']:.1f} / {r['p99']:.1f} "
                    f"| {a['p50']:.1f} / {a['p99']:.1f} | {r['rss']:.0f} | {r['rps'] / a['rps']:.2f} |")

    # 2. first-party batches
    b.reset_peak_rss(serve.pid)
    meter = b.CpuMeter(serve.pid).start()
    fp = events_load(base, f"c{run_id}", args.duration)
    fp_rss = b.peak_rss_mib(serve.pid)
    fp_cpu = settled_cpu(serve.pid, meter)
    # A 503 here is back-pressure (the log's budget is full because the flusher is behind), the
    # documented answer; the sustained rate is what was accepted over the whole run.
    fp_accepted = (fp["requests"] - fp["non2xx"]) * 1000
    if fp["errors"]:
        failures.append(f"/v1/events: {fp['errors']} socket errors")

    # What the collector says it took. wrk counts requests it saw answered; a request in flight
    # when wrk stops may be stored without being counted, so stored >= counted.
    ingested = b.metric(base, "convoscope_ingest_events_total")
    dups = b.metric(base, "convoscope_ingest_duplicates_total")
    counted = sent_events + fp_accepted
    if dups:
        failures.append(f"{dups:.0f} events were duplicates: the load generator repeated ids")
    if ingested < counted:
        failures.append(f"collector stored {ingested:.0f} events but acknowledged {counted}")
    code = b.stop(serve)
    if code != 0:
        failures.append(f"serve exited {code} on SIGTERM")

    # 3. background compaction beside the load
    day_events = 20_000 if args.smoke else 330_000
    compaction = {every: compaction_load(args.bin, work / f"compact-{every}", args.duration, args.connections,
                                         every, day_events, run_id) for every in (0, 3)}
    for every, r in compaction.items():
        if r["non2xx"] or r["errors"] or r["exit"]:
            failures.append(f"beside compaction every {every} s: {r['non2xx']} non-2xx answers, "
                            f"{r['errors']} socket errors, serve exited {r['exit']}")
    if compaction[3]["merges"] == 0:
        failures.append(f"background compaction merged nothing: files {compaction[3]['files']}")

    print(f"\nmachine: {b.machine()}; {args.duration} s per load, {args.connections} connections, wrk -t2\n")
    print("| statuses/request | ceiling req/s | collector req/s | collector events/s | collector p50 / p99 ms "
          "| ceiling p50 / p99 ms | serve peak RSS MiB | ratio |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    print("\n".join(rows))
    print(f"\n| /v1/events, NDJSON batches of 1,000, 8 connections | value |\n| --- | --- |\n"
          f"| events/s accepted, sustained over the run | {fp_accepted / args.duration:,.0f} |\n"
          f"| batches refused with 503 (log budget full: the flusher is behind) | {fp['non2xx']:,} of {fp['requests']:,} |\n"
          f"| p50 / p99 ms per batch | {fp['p50']:.1f} / {fp['p99']:.1f} |\n"
          f"| serve peak RSS MiB | {fp_rss:.0f} |")
    print(f"\nstored {ingested:,.0f} events; acknowledged at least {counted:,}; duplicates {dups:.0f}")
    print(bound_table(base_a[10], collector[10], fp_cpu[0] / max(fp_accepted, 1)))
    print(f"\n| 10 statuses/request, the store holding {day_events:,} generated events of one day in 10 files "
          "(and their late events' days) | compaction off "
          "| compaction every 3 s |\n| --- | --- | --- |")
    off, on = compaction[0], compaction[3]
    print(f"| requests/s | {off['rps']:,.0f} | {on['rps']:,.0f} |\n"
          f"| p50 / p99 ms | {off['p50']:.1f} / {off['p99']:.1f} | {on['p50']:.1f} / {on['p99']:.1f} |\n"
          f"| serve peak RSS MiB | {off['rss']:.0f} | {on['rss']:.0f} |\n"
          f"| Parquet files of finished days, before → after | {off['files'][0]} → {off['files'][1]} "
          f"| {on['files'][0]} → {on['files'][1]} |\n"
          f"| merges | {off['merges']} | {on['merges']} |")
    if failures:
        print(f"\nFAILED (data and logs kept in {work}):\n  " + "\n  ".join(failures), file=sys.stderr)
        sys.exit(1)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
