#!/usr/bin/env python3
"""Where one machine stops, and what a cluster costs on it.

1. Engines: `convoscope generate` N events (default 10 million) into a fresh store; a Ballista
   scheduler and two executors on loopback (`convoscope scheduler`, `convoscope executor`).
   Every report, whole command (`convoscope report NAME --format json`), in rounds that
   alternate the engines so a slow minute hits all of them: this process (`local`), the
   cluster with one executor (the second stopped), the cluster with both. Each answer must
   equal the local one (numbers to 1e-9). Prints the median seconds per engine and the
   cluster's time over the local one.
2. Sizes (`--sizes 1000000,10000000,100000000`): for each size, a fresh store of that many
   events (over 30 days at 1 M, then ten days more for each tenfold, so days grow with the
   data as a brand's do), each report once warm and then timed once more, whole command, with
   its peak RSS (the kernel's high-water mark of the process, from wait4). Prints seconds and
   MiB per report and size, and the growth per tenfold.

    scripts/bench_scale.py                                   # both parts, 10 M events, 3 rounds
    scripts/bench_scale.py --part sizes --sizes 1000000,10000000,100000000
    scripts/bench_scale.py --smoke                           # CI: 100,000 events, one round

The cluster runs on the same two cores as everything else: it cannot be faster here; what
it shows is its overhead, and that the answers are the same.
"""

import argparse
import json
import os
import math
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import benchlib as b

REPORTS = ["funnel", "delivery", "failures", "containment", "sla", "cost", "experiment", "engagement"]


def env_for(store: Path, state: Path):
    env = dict(os.environ)
    env.update(
        CONVOSCOPE_STORAGE=f"file://{store}",
        CONVOSCOPE_STATE_DIR=str(state),
        CONVOSCOPE_PII_KEY="bench-key",
        CONVOSCOPE_EXPERIMENTS=str(b.ROOT / "experiments.toml"),
        CONVOSCOPE_LOG="warn",
    )
    return env


def run_report(binary, name, env, engine=None):
    """(seconds, parsed JSON) of one whole `convoscope report` command."""
    args = [binary, "report", name, "--format", "json"]
    if engine:
        args += ["--engine", engine]
    t = time.perf_counter()
    p = subprocess.run(args, env=env, capture_output=True)
    secs = time.perf_counter() - t
    if p.returncode != 0:
        raise SystemExit(f"report {name} ({engine or 'local'}) failed: {p.stderr.decode()[-2000:]}")
    return secs, json.loads(p.stdout)


def timed_with_peak(binary, name, env):
    """Seconds and peak RSS (MiB, the kernel's high-water mark from wait4) of one report."""
    t = time.perf_counter()
    p = subprocess.Popen([binary, "report", name, "--format", "json"], env=env, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(p.pid, 0)
    secs = time.perf_counter() - t
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode != 0:
        raise SystemExit(f"report {name} failed")
    return secs, usage.ru_maxrss / 1024


def same(a, b_):
    """Whether two reports' rows (lists of objects) are equal, numbers to 1e-9 (`b.close`)."""
    if isinstance(a, dict):
        return a.keys() == b_.keys() and all(same(a[k], b_[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b_) and all(same(x, y) for x, y in zip(a, b_))
    return b.close(a, b_)


def canonical(rows):
    def key(v):
        if isinstance(v, float):
            return f"{v:.9e}"
        if isinstance(v, dict):
            return ";".join(f"{k}={key(x)}" for k, x in sorted(v.items()))
        return json.dumps(v)
    return sorted(rows, key=key)


def generate(binary, env, events, days):
    t = time.perf_counter()
    subprocess.run([binary, "generate", "--events", str(events), "--days", str(days), "--seed", "1"],
                   env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t


class Cluster:
    """A scheduler and executors on loopback, logs under `work`."""

    def __init__(self, binary, env, work: Path, executors=2, slots=2):
        # Info logs: an executor says there when the scheduler has it.
        self.binary, self.env, self.work, self.slots = binary, dict(env, CONVOSCOPE_LOG="info"), work, slots
        self.port = b.free_port()
        self.engine = f"ballista://127.0.0.1:{self.port}"
        self.scheduler = b.start([binary, "scheduler", "--bind", f"127.0.0.1:{self.port}"], self.env,
                                 work / "scheduler.log")
        self.executors = [None] * executors
        for n in range(executors):
            self.start_executor(n)

    def start_executor(self, n):
        """Starts executor `n` and waits until the scheduler has it."""
        flight, grpc = b.free_port(), b.free_port()
        log = self.work / f"executor-{n}.log"
        log.write_text("")
        p = b.start([self.binary, "executor", "--scheduler", f"127.0.0.1:{self.port}", "--bind",
                     f"127.0.0.1:{flight}", "--grpc-port", str(grpc), "--slots", str(self.slots),
                     "--work-dir", str(self.work / f"executor-{n}")], self.env, log)
        self.executors[n] = p
        deadline = time.time() + 60
        while "Executor registration succeed" not in log.read_text(errors="replace"):
            if time.time() > deadline:
                raise SystemExit(f"executor did not register: {log}")
            time.sleep(0.1)

    def stop_executor(self, n):
        """Stops one executor the way a supervisor does (SIGTERM: it tells the scheduler)."""
        b.stop(self.executors[n])

    def stop(self):
        for p in self.executors:
            b.stop(p)
        b.stop(self.scheduler)


def engines(args, binary, work: Path):
    store, state = work / "store", work / "state"
    env = env_for(store, state)
    # Two executors on one machine: each its share of the memory, not Ballista's default.
    env["CONVOSCOPE_QUERY_MEMORY_BYTES"] = str(4 << 30)
    secs = generate(binary, env, args.events, args.days)
    print(f"generated {args.events:,} events over {args.days} days in {secs:.1f}s")
    cluster = Cluster(binary, env, work)
    times = {r: {"local": [], "cluster of 1": [], "cluster of 2": []} for r in REPORTS}
    try:
        for rnd in range(args.rounds + 1):  # the first round warms up
            for setup in ("cluster of 2", "cluster of 1"):
                if setup == "cluster of 1":
                    cluster.stop_executor(1)
                    time.sleep(1)
                for name in REPORTS:
                    local_s, local = run_report(binary, name, env)
                    remote_s, remote = run_report(binary, name, env, cluster.engine)
                    if not same(canonical(local["rows"]), canonical(remote["rows"])):
                        raise SystemExit(f"{name}: the cluster ({setup}) answered differently")
                    if rnd > 0:
                        times[name]["local"].append(local_s)
                        times[name][setup].append(remote_s)
                if setup == "cluster of 1":
                    cluster.start_executor(1)
            print(f"round {rnd}{' (warm-up)' if rnd == 0 else ''} done", file=sys.stderr)
    finally:
        cluster.stop()
    print(f"\n### Engines at {args.events:,} events (median of {args.rounds} rounds, whole command)\n")
    print("| report | local s | cluster of 1 s | cluster of 2 s | 1 / local | 2 / local |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name in REPORTS:
        l, c1, c2 = (statistics.median(times[name][k]) for k in ("local", "cluster of 1", "cluster of 2"))
        print(f"| {name} | {l:.3f} | {c1:.3f} | {c2:.3f} | {c1 / l:.2f} | {c2 / l:.2f} |")


def sizes(args, binary, work: Path):
    rows = {}
    for n in [int(x) for x in args.sizes.split(",")]:
        store, state = work / f"store-{n}", work / f"state-{n}"
        env = env_for(store, state)
        days = 30 + 10 * max(0, round(math.log10(max(n, 1) / 1_000_000)))
        secs = generate(binary, env, n, days)
        size = sum(f.stat().st_size for f in store.rglob("*.parquet"))
        print(f"generated {n:,} events over {days} days in {secs:.1f}s, {size / 2**30:.2f} GiB", file=sys.stderr)
        for name in REPORTS:
            timed_with_peak(binary, name, env)  # warm the page cache
            rows.setdefault(name, {})[n] = timed_with_peak(binary, name, env)
        shutil.rmtree(store, ignore_errors=True)
        shutil.rmtree(state, ignore_errors=True)
    ns = sorted({n for r in rows.values() for n in r})
    print("\n### One process by size (seconds / peak RSS MiB, whole command)\n")
    print("| report | " + " | ".join(f"{n:,}" for n in ns) + " | growth per tenfold (time) |")
    print("| --- | " + " | ".join("---" for _ in ns) + " | --- |")
    for name in REPORTS:
        cells = [f"{rows[name][n][0]:.2f} s / {rows[name][n][1]:.0f}" for n in ns]
        growth = ""
        if len(ns) > 1:
            ratios = [rows[name][b_][0] / rows[name][a][0] for a, b_ in zip(ns, ns[1:])]
            growth = ", ".join(f"{r:.1f}x" for r in ratios)
        print(f"| {name} | " + " | ".join(cells) + f" | {growth} |")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default=b.default_bin())
    ap.add_argument("--part", choices=["engines", "sizes", "both"], default="both")
    ap.add_argument("--events", type=int, default=10_000_000)
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--sizes", default="1000000,10000000")
    ap.add_argument("--smoke", action="store_true")
    args = ap.parse_args()
    if args.smoke:
        args.events, args.days, args.rounds, args.sizes = 100_000, 5, 1, "100000"
    print(b.machine())
    work = Path(tempfile.mkdtemp(prefix="convoscope-scale-"))
    try:
        if args.part in ("engines", "both"):
            engines(args, args.bin, work)
        if args.part in ("sizes", "both"):
            sizes(args, args.bin, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
