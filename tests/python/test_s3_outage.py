"""Object store outage against a real S3-compatible server on loopback (s3s-fs, which
scripts/test.sh installs from crates.io).

While writers post events, the S3 server is killed: the collector keeps acknowledging into its
write-ahead log until the log's budget is used, then answers 503 with Retry-After; /readyz
turns 503 and flush errors show in /metrics. The server comes back on the same directory:
everything is flushed, every acknowledged event is stored exactly once (writers retry refused
batches with the same ids, as a provider would), and nothing refused is stored.
"""

import json
import os
import signal
import socket
import subprocess
import threading
import time
import unittest
import urllib.error
import urllib.request
from pathlib import Path

from support import WorkDir, free_port, need, serve

INGEST, READ, ADMIN = "ingest-token-s3", "read-token-s3", "admin-token-s3"
KEY, SECRET = "convoscope-test", "convoscope-test-secret"
TOOLS = str(Path.home() / ".cache" / "convoscope-tools" / "bin")


def wait_port(port, seconds=30):
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"nothing listens on {port}")


def call(base, path, token=None, body=None, content_type="application/x-ndjson"):
    """(status, headers, text) of one request, never raising for HTTP errors."""
    headers = {"Content-Type": content_type}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(base + path, data=body, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.headers, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read().decode()


def metric(base, name):
    _, _, text = call(base, "/metrics")
    return sum(float(l.rsplit(" ", 1)[1]) for l in text.splitlines() if l.startswith(name + " ") or l.startswith(name + "{"))


class Writers:
    """Threads posting batches of new events; a refused batch is retried with the same ids."""

    def __init__(self, base, threads=4, batch=20):
        self.base, self.batch = base, batch
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.acked, self.statuses, self.first_503 = set(), [], None
        self.threads = [threading.Thread(target=self.run, args=(t,), daemon=True) for t in range(threads)]
        for t in self.threads:
            t.start()

    def run(self, t):
        i = 0
        while not self.stop.is_set():
            ids = [f"s3-{t}-{i}-{k}" for k in range(self.batch)]
            body = "\n".join(json.dumps({"event_id": e, "event_type": "conversion", "occurred_at": "2026-01-07T10:00:00Z",
                                         "revenue_micros": 100}) for e in ids).encode()
            while not self.stop.is_set():
                try:
                    status, headers, text = call(self.base, "/v1/events", INGEST, body)
                except OSError:
                    status, headers, text = 0, {}, ""
                with self.lock:
                    self.statuses.append((time.time(), status))
                    if status == 200:
                        self.acked.update(ids)
                    elif status == 503 and self.first_503 is None:
                        self.first_503 = (headers.get("Retry-After"), text)
                if status == 200:
                    break
                time.sleep(0.2)
            i += 1

    def count(self, status, since=0.0):
        with self.lock:
            return sum(1 for t, s in self.statuses if s == status and t >= since)

    def finish(self):
        self.stop.set()
        for t in self.threads:
            t.join(timeout=60)


def until(cond, seconds, what):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if cond():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


class S3Outage(unittest.TestCase):
    def test_outage_fills_the_log_then_everything_is_flushed_once(self):
        s3s = need("s3s-fs", "cargo install --features binary --root ~/.cache/convoscope-tools", TOOLS)
        work = WorkDir()
        d = Path(work.name)
        (d / "s3" / "events").mkdir(parents=True)
        s3_port = free_port()
        s3_log = open(d / "s3s-fs.log", "ab")

        def start_s3():
            p = subprocess.Popen([s3s, "--host", "127.0.0.1", "--port", str(s3_port), "--access-key", KEY,
                                  "--secret-key", SECRET, str(d / "s3")], stdout=s3_log, stderr=s3_log)
            wait_port(s3_port)
            return p

        s3 = start_s3()
        proc, base, _ = serve(
            d, f"ingest:{INGEST},read:{READ},admin:{ADMIN}",
            CONVOSCOPE_STORAGE="s3://events/convoscope", AWS_ENDPOINT=f"http://127.0.0.1:{s3_port}",
            AWS_ALLOW_HTTP="true", AWS_ACCESS_KEY_ID=KEY, AWS_SECRET_ACCESS_KEY=SECRET, AWS_REGION="us-east-1",
            CONVOSCOPE_WAL_BUDGET_BYTES=str(4 << 20), CONVOSCOPE_MAX_BODY_BYTES=str(1 << 20), CONVOSCOPE_WAL_SEGMENT_BYTES=str(256 << 10),
            CONVOSCOPE_FLUSH_INTERVAL_SECS="1",
        )
        writers = None
        try:
            self.assertEqual(call(base, "/readyz")[0], 200)
            writers = Writers(base)
            until(lambda: metric(base, "convoscope_flush_duration_seconds_count") >= 2, 60, "flushes to S3")
            self.assertEqual(writers.count(503), 0, "refusals while S3 was up")

            # The outage.
            s3.kill()
            s3.wait()
            down = time.time()
            until(lambda: writers.first_503 is not None, 120, "the log to fill and refuse")
            acked_during_outage = writers.count(200, since=down)
            self.assertGreater(acked_during_outage, 0, "nothing was acknowledged into the log during the outage")
            retry_after, text = writers.first_503
            self.assertIsNotNone(retry_after, "503 without Retry-After")
            self.assertIn("write-ahead log is full", text)
            status, _, why = call(base, "/readyz")
            self.assertEqual(status, 503, why)
            until(lambda: metric(base, "convoscope_flush_errors_total") > 0, 60, "flush errors in /metrics")
            self.assertGreater(metric(base, "convoscope_wal_bytes"), 1 << 20)
            time.sleep(2)

            # Back on the same directory: the log drains, refused batches are retried.
            s3 = start_s3()
            up = time.time()
            until(lambda: call(base, "/readyz")[0] == 200, 120, "readiness after S3 came back")
            until(lambda: writers.count(200, since=up) > 20, 60, "acknowledgements after S3 came back")
            writers.finish()
            status, _, text = call(base, "/v1/admin/flush", ADMIN, b"")
            self.assertEqual(status, 200, text)
            # Empty now; the query below leaves its own audit record in the log.
            self.assertEqual(metric(base, "convoscope_wal_bytes"), 0)
            status, _, text = call(base, "/v1/query", READ, json.dumps(
                {"sql": "SELECT event_id, count(*) AS n FROM events GROUP BY event_id"}).encode(), "application/json")
            self.assertEqual(status, 200, text)
            rows = json.loads(text)["rows"]
            stored = {r[0] for r in rows}
            duplicated = [r[0] for r in rows if r[1] > 1]
            lost = writers.acked - stored
            extra = stored - writers.acked
            print(f"\ns3 outage: acked {len(writers.acked)} events ({acked_during_outage} requests acked into the "
                  f"log during the outage, {writers.count(503)} refused with 503), stored {len(stored)}, "
                  f"lost {len(lost)}, duplicated {len(duplicated)}, stored-but-refused {len(extra)}")
            self.assertEqual(sorted(lost)[:5], [])
            self.assertEqual(duplicated[:5], [])
            self.assertEqual(sorted(extra)[:5], [])
        finally:
            if writers:
                writers.finish()
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(timeout=60)
            s3.kill()
            s3.wait()
            s3_log.close()
            work.cleanup()
        self.assertEqual(code, 0, "serve did not exit cleanly on SIGTERM")


if __name__ == "__main__":
    unittest.main()
