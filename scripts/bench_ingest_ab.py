#!/usr/bin/env python3
"""Builds of `convoscope serve` compared under one ingest load, a fresh `serve` per run.

`bench_ingest.py` sends every load to one `serve`, so a load's peak RSS includes the ids and
allocator pages the loads before it left. This runs one load against a fresh `serve` of each
build in turn, for several rounds (this VM drifts by ±20% between minutes, so builds are
compared within a round), and prints per run: accepted rate, peak RSS, p99, and CPU time of
`serve` per event stored (read 3 s after the load, so the flusher's work is counted).

    scripts/bench_ingest_ab.py --load 100 --bin old/convoscope --bin new/convoscope
    scripts/bench_ingest_ab.py --load events --rounds 3 --bin ...
"""

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import benchlib as b
import bench_ingest as bi


def run(binary, load, duration):
    work = Path(tempfile.mkdtemp(prefix="convoscope-bench-ingest-ab-"))
    serve, base = bi.start_collector(binary, work)
    try:
        run_id = str(int(time.time() * 1000))
        if load == "events":
            w = bi.events_load(base, run_id, duration)
            rate = (w["requests"] - w["non2xx"]) * 1000 / duration
        else:
            w = bi.statuses_load(base, int(load), run_id, duration, 64)
            rate = w["rps"]
        rss = b.peak_rss_mib(serve.pid)
        time.sleep(3)
        cpu_us = b.cpu_seconds(serve.pid) / max(b.metric(base, "convoscope_ingest_events_total"), 1) * 1e6
    finally:
        b.stop(serve)
    shutil.rmtree(work, ignore_errors=True)
    return rate, rss, w["p99"], cpu_us


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--load", default="10", help="statuses per webhook (1, 10, 100) or 'events' (/v1/events)")
    ap.add_argument("--duration", type=int, default=15)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--bin", action="append", required=True, help="a build to run; give two or more")
    args = ap.parse_args()
    unit = "events/s" if args.load == "events" else "req/s"
    print(f"machine: {b.machine()}; load {args.load}, {args.duration} s per run, a fresh serve per run\n")
    print(f"| round | build | {unit} | peak RSS MiB | p99 ms | CPU µs/event |\n| --- | --- | --- | --- | --- | --- |")
    for r in range(args.rounds):
        for binary in args.bin:
            rate, rss, p99, cpu = run(binary, args.load, args.duration)
            print(f"| {r + 1} | {binary} | {rate:,.0f} | {rss:.0f} | {p99:.1f} | {cpu:.2f} |", flush=True)


if __name__ == "__main__":
    main()
