"""Shared by the Python tests: find the binary, start `convoscope serve`, post a fixture."""

import json
import os
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BIN = os.environ.get("CONVOSCOPE_BIN", str(ROOT / "target" / "debug" / "convoscope"))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(url, seconds=30):
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            return urllib.request.urlopen(url, timeout=1)
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"{url} did not answer")


def serve(workdir: Path, tokens: str, stderr=subprocess.DEVNULL):
    """Starts `convoscope serve` storing under workdir; returns (process, base URL, env)."""
    port = free_port()
    env = dict(os.environ)
    env.update(
        CONVOSCOPE_STORAGE=f"file://{workdir / 'store'}",
        CONVOSCOPE_STATE_DIR=str(workdir / "state"),
        CONVOSCOPE_LISTEN=f"127.0.0.1:{port}",
        CONVOSCOPE_TOKENS=tokens,
        CONVOSCOPE_PII_KEY="python-test-key",
    )
    proc = subprocess.Popen([BIN, "serve"], env=env, stdout=subprocess.DEVNULL, stderr=stderr)
    base = f"http://127.0.0.1:{port}"
    wait_for(base + "/healthz")
    return proc, base, env


def post_fixture(base: str, token: str, rel="reports/events.ndjson"):
    """Posts an NDJSON fixture to /v1/events; returns the answer."""
    body = (ROOT / "fixtures" / rel).read_bytes()
    req = urllib.request.Request(base + "/v1/events", data=body, headers={"Authorization": f"Bearer {token}"})
    answer = json.load(urllib.request.urlopen(req, timeout=10))
    assert answer["rejected"] == [], answer
    return answer
