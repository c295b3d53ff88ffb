#!/usr/bin/env python3
"""Webhook latency beside heavy readers: p50/p99 of a steady webhook load alone and with four
heavy readers on the same `serve`, as a ratio in one run (target: p99 with readers at most 2x
alone).

1. `convoscope generate` N events over 30 days into a fresh store.
2. One `convoscope serve` over it: a Meta app secret, read/ingest/admin tokens, no report cache
   and no background compaction (config file), at most 4 queries at once, 10 s per query.
3. After a second of webhooks not counted (connections open, the log's first segment made), a
   steady, open-loop load of signed Meta status webhooks (one `sent` status per body, a new
   message id each, HMAC-SHA256 of the raw body with the app secret): each send is scheduled at
   its time (RATE a second), taken by the next free one of a pool of threads, each holding a
   keep-alive connection, never held back by an earlier answer; its latency is from the moment
   the request is written to the 200. How late a send started behind its schedule (the client
   out of threads or CPU) is shown apart.
4. Phases alternate, so a slow minute on this shared machine hits both kinds: alone, with
   readers, alone, with readers, ... "With readers": four threads start a second before the
   webhooks, each looping (100 ms between answers, as tests/it/isolation.rs's readers do) on
   one heavy read: a join on a column of a dozen values (runs to the time limit, or to the
   phase's end), two exact distinct counts over every event, a join of every event with a
   20-fold copy of itself (past the query memory budget on a large store), and the funnel
   report. At the phase's end their connections are
   closed (the server cancels a query whose client went away), and the next phase starts once
   no query runs and `serve` is idle.
Prints per phase and per kind (pooled): webhooks sent, p50 / p99 / max ms; the ratios with
readers / alone of p99 and p50, pooled and per pair; the target line; the readers' outcomes
(200, or the `error` of the JSON answer: busy, query_timeout, query_memory, query_refused); the
server's peak RSS. Fails if any webhook is not answered 200; the target is reported, not
asserted.

    scripts/bench_readers.py                                # 1,000,000 events, 4 phases of 15 s
    scripts/bench_readers.py --events 300000 --phases 2 --phase-secs 8
    scripts/bench_readers.py --smoke                        # 100,000 events, 2 phases of 3 s (CI)
"""

import argparse
import hashlib
import hmac
import http.client
import json
import math
import queue
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import benchlib as b

SECRET = "bench-app-secret"
READ, INGEST, ADMIN = "bench-read-token", "bench-ingest-token", "bench-admin-token"
MAX_QUERIES, QUERY_TIMEOUT = 4, 10
# The readers start this long before the phase's webhooks, so their statements are running.
LEAD_SECS = 1.0
# Webhooks sent before the first phase and not counted.
WARMUP_SECS = 1.0
# (label, method, path, SQL or None): the four heavy readers.
READERS = [
    ("join on event_type", "POST", "/v1/query",
     "SELECT count(*) FROM events a JOIN events b ON a.event_type = b.event_type"),
    ("distinct counts", "POST", "/v1/query",
     "SELECT event_type, count(DISTINCT contact_key), count(DISTINCT message_id) FROM events GROUP BY event_type"),
    ("fat self-join", "POST", "/v1/query",
     "SELECT max(length(a.fat) + length(b.fat)) "
     "FROM (SELECT event_id, repeat(event_id, 20) AS fat FROM events) a "
     "JOIN (SELECT event_id, repeat(event_id, 20) AS fat FROM events) b ON a.event_id = b.event_id"),
    ("funnel report", "GET", "/v1/reports/funnel?format=json", None),
]
OUTCOMES = ["200", "busy", "query_timeout", "query_memory", "query_refused"]


def status_body(n):
    """One signed-webhook body: a single `sent` status of message `wamid.bench-<n>`."""
    return json.dumps({"object": "whatsapp_business_account", "entry": [{"id": "100200300400500", "changes": [{
        "field": "messages",
        "value": {"messaging_product": "whatsapp",
                  "metadata": {"display_phone_number": "15550101234", "phone_number_id": "600700800900111"},
                  "statuses": [{"id": f"wamid.bench-{n}", "status": "sent", "timestamp": str(int(time.time())),
                                "recipient_id": "15550109876"}]}}]}]}, separators=(",", ":")).encode()


def sign(body):
    return "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()


class Webhooks:
    """A pool of sender threads, each with a keep-alive connection, taking scheduled sends from a
    queue: `phase` puts each send on the queue at its time and waits for every answer."""

    def __init__(self, port, threads):
        self.port = port
        self.jobs = queue.Queue()
        self.next_n = 0
        self.workers = [threading.Thread(target=self._work, daemon=True) for _ in range(threads)]
        for w in self.workers:
            w.start()

    def _work(self):
        conn = None
        while True:
            job = self.jobs.get()
            if job is None:
                if conn:
                    conn.close()
                return
            n, due, out = job
            body = status_body(n)
            headers = {"Content-Type": "application/json", "X-Hub-Signature-256": sign(body)}
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                    conn.connect()
                t = time.perf_counter()
                conn.request("POST", "/webhooks/meta", body=body, headers=headers)
                r = conn.getresponse()
                answer = r.read()
                took = time.perf_counter() - t
                if r.status == 200:
                    out["times"].append(took)
                else:
                    out["failures"].append(f"wamid.bench-{n}: HTTP {r.status} {answer[:200]!r}")
                out["lags"].append(t - due)
            except (OSError, http.client.HTTPException) as e:
                out["failures"].append(f"wamid.bench-{n}: {type(e).__name__}: {e}")
                if conn:
                    conn.close()
                conn = None
            finally:
                self.jobs.task_done()

    def phase(self, secs, rate):
        """Sends `secs * rate` webhooks, one every 1/rate s from now; {sent, times, failures,
        lags}: latencies of the 200s and how late each send started, in seconds."""
        out = {"times": [], "failures": [], "lags": []}
        count = int(secs * rate)
        t0 = time.perf_counter()
        for i in range(count):
            due = t0 + i / rate
            wait = due - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            self.jobs.put((self.next_n, due, out))
            self.next_n += 1
        self.jobs.join()
        out["sent"] = count
        return out

    def close(self):
        for _ in self.workers:
            self.jobs.put(None)
        for w in self.workers:
            w.join(timeout=35)


class Reader(threading.Thread):
    """Loops one heavy read until stopped; counts the answers by outcome."""

    def __init__(self, port, spec, counts):
        super().__init__(daemon=True)
        self.port, (self.label, self.method, self.path, self.sql) = port, spec
        self.counts = counts
        self.stopping = threading.Event()
        self.conn = None

    def run(self):
        body = json.dumps({"sql": self.sql}).encode() if self.sql else None
        headers = {"Authorization": f"Bearer {READ}"}
        if body:
            headers["Content-Type"] = "application/json"
        while not self.stopping.is_set():
            try:
                if self.conn is None:
                    self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=QUERY_TIMEOUT * 6)
                self.conn.request(self.method, self.path, body=body, headers=headers)
                r = self.conn.getresponse()
                answer = r.read()
            except (OSError, http.client.HTTPException) as e:
                if self.conn:
                    self.conn.close()
                self.conn = None
                self.counts["cut at phase end" if self.stopping.is_set() else f"{type(e).__name__}"] += 1
                continue
            if r.status == 200:
                self.counts["200"] += 1
            else:
                try:
                    code = json.loads(answer).get("error") or f"HTTP {r.status}"
                except ValueError:
                    code = f"HTTP {r.status}"
                self.counts[code] += 1
            self.stopping.wait(0.1)
        if self.conn:
            self.conn.close()

    def stop(self):
        """Stops the loop and closes the connection under a statement still running, so the
        server cancels it."""
        self.stopping.set()
        conn = self.conn
        if conn is not None and conn.sock is not None:
            try:
                conn.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def stop_readers(readers):
    for r in readers:
        r.stop()
    for r in readers:
        r.join(timeout=QUERY_TIMEOUT * 6 + 5)


def settle(serve, base):
    """Waits until no query or report runs and `serve` is idle; seconds it took."""
    t = time.monotonic()
    deadline = t + QUERY_TIMEOUT + 20
    while b.metric(base, "convoscope_queries_running") > 0:
        if time.monotonic() > deadline:
            print("warning: queries still running after the readers stopped", file=sys.stderr)
            break
        time.sleep(0.1)
    b.wait_idle(serve.pid, quiet=0.2, limit=5.0)
    return time.monotonic() - t


def pct(xs, p):
    """Nearest-rank percentile of a non-empty list, in ms."""
    s = sorted(xs)
    return s[max(0, math.ceil(p / 100 * len(s)) - 1)] * 1e3


def summary(times):
    return (pct(times, 50), pct(times, 99), max(times) * 1e3) if times else (math.nan,) * 3


def ratio(a, b_):
    return a / b_ if b_ else math.nan


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--phases", type=int, default=4, help="alternating alone / with readers, at least 2")
    ap.add_argument("--phase-secs", type=float, default=15.0)
    ap.add_argument("--rate", type=float, default=50.0, help="webhooks a second")
    ap.add_argument("--senders", type=int, default=16, help="sender threads (keep-alive connections)")
    ap.add_argument("--smoke", action="store_true", help="100,000 events, 2 phases of 3 s")
    ap.add_argument("--bin", default=b.default_bin())
    args = ap.parse_args()
    if args.smoke:
        args.events, args.phases, args.phase_secs = 100_000, 2, 3.0
    if args.phases < 2:
        ap.error("--phases must be at least 2 (one alone, one with readers)")

    # SIGTERM (a CI timeout) unwinds like Ctrl-C, through the `finally` that stops serve.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    work = Path(tempfile.mkdtemp(prefix="convoscope-bench-readers-"))
    port = b.free_port()
    env = b.serve_env(work, port, CONVOSCOPE_META_APP_SECRET=SECRET,
                      CONVOSCOPE_TOKENS=f"read:{READ},ingest:{INGEST},admin:{ADMIN}",
                      CONVOSCOPE_MAX_CONCURRENT_QUERIES=MAX_QUERIES, CONVOSCOPE_QUERY_TIMEOUT_SECS=QUERY_TIMEOUT)
    t = time.time()
    subprocess.run([args.bin, "generate", "--events", str(args.events), "--days", "30", "--seed", "1"], env=env,
                   check=True, stdout=subprocess.DEVNULL)
    gen_s = time.time() - t
    conf = work / "bench.toml"
    conf.write_text("report_cache_secs = 0\ncompact_every_secs = 0\n")

    failures, phases, settled = [], [], []
    counts = {spec[0]: Counter() for spec in READERS}
    serve = b.start([args.bin, "--config", str(conf), "serve"], env=env, log=work / "serve.log")
    base = f"http://127.0.0.1:{port}"
    hooks, readers, peak, code = None, [], math.nan, None
    try:
        b.wait_for(base + "/healthz")
        b.wait_idle(serve.pid, quiet=0.2, limit=5.0)
        hooks = Webhooks(port, args.senders)
        # Warm-up, not counted: the connections open, the log's first segment is made.
        failures += hooks.phase(WARMUP_SECS, args.rate)["failures"]
        b.wait_idle(serve.pid, quiet=0.2, limit=5.0)
        for i in range(args.phases):
            kind = "alone" if i % 2 == 0 else "with readers"
            if kind == "with readers":
                readers = [Reader(port, spec, counts[spec[0]]) for spec in READERS]
                for r in readers:
                    r.start()
                time.sleep(LEAD_SECS)
            out = hooks.phase(args.phase_secs, args.rate)
            out["kind"] = kind
            phases.append(out)
            failures += out["failures"]
            if readers:
                stop_readers(readers)
                readers = []
                settled.append(settle(serve, base))
            print(f"phase {i + 1} ({kind}) done", file=sys.stderr)
        peak = b.peak_rss_mib(serve.pid)
    finally:
        stop_readers(readers)
        if hooks:
            hooks.close()
        code = b.stop(serve)
    if code != 0:
        failures.append(f"serve exited {code} on SIGTERM")

    print(f"\nmachine: {b.machine()}; {args.events:,} events generated in {gen_s:.1f} s; {args.phases} phases of "
          f"{args.phase_secs:g} s, {args.rate:g} signed webhooks/s (open loop, {args.senders} connections); "
          f"readers: {len(READERS)} threads, max_concurrent_queries {MAX_QUERIES}, query timeout {QUERY_TIMEOUT} s\n")
    print("| phase | kind | webhooks sent | p50 ms | p99 ms | max ms | latest start behind schedule ms |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for i, p in enumerate(phases):
        p50, p99, mx = summary(p["times"])
        lag = max(p["lags"], default=0) * 1e3
        print(f"| {i + 1} | {p['kind']} | {p['sent']:,} | {p50:.1f} | {p99:.1f} | {mx:.1f} | {lag:.1f} |")
    pooled = {}
    for kind in ("alone", "with readers"):
        ps = [p for p in phases if p["kind"] == kind]
        times = [x for p in ps for x in p["times"]]
        pooled[kind] = summary(times)
        p50, p99, mx = pooled[kind]
        lag = max((x for p in ps for x in p["lags"]), default=0) * 1e3
        print(f"| all | {kind} | {sum(p['sent'] for p in ps):,} | {p50:.1f} | {p99:.1f} | {mx:.1f} | {lag:.1f} |")

    alone, busy = pooled["alone"], pooled["with readers"]
    p99_ratio = ratio(busy[1], alone[1])
    print("\n| with readers / alone | p50 | p99 |\n| --- | --- | --- |")
    print(f"| pooled | {ratio(busy[0], alone[0]):.2f} | {p99_ratio:.2f} |")
    for j in range(0, len(phases) - 1, 2):
        a, w = summary(phases[j]["times"]), summary(phases[j + 1]["times"])
        print(f"| phases {j + 1} and {j + 2} | {ratio(w[0], a[0]):.2f} | {ratio(w[1], a[1]):.2f} |")
    print(f"\np99 with readers ≤ 2× alone: {'met' if p99_ratio <= 2 else 'not met'} ({p99_ratio:.2f}×)")

    others = sorted({k for c in counts.values() for k in c} - set(OUTCOMES))
    print("\n| reader (answers over the phases with readers) | " + " | ".join(OUTCOMES + others) + " |")
    print("| --- |" + " --- |" * len(OUTCOMES + others))
    for label, c in counts.items():
        print(f"| {label} | " + " | ".join(str(c[k]) for k in OUTCOMES + others) + " |")
    if settled:
        print("\nafter each phase with readers, queries done and serve idle within "
              + ", ".join(f"{s:.1f}" for s in settled) + " s")
    print(f"\nserve peak RSS (VmHWM): {peak:.0f} MiB")

    if failures:
        print(f"\nFAILED (data and log kept in {work}): {len(failures)} failure(s), webhooks not answered 200 "
              "or serve's exit:\n  " + "\n  ".join(failures[:20]), file=sys.stderr)
        sys.exit(1)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
