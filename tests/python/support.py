"""Shared by the Python tests: find the binary, start `convoscope serve`, post a fixture."""

import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import unittest
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


class WorkDir:
    """A scratch directory. Under CONVOSCOPE_TEST_ROOT (scripts/test.sh sets it) it is kept, so
    the privacy scan can read every data directory and server log the suite leaves behind."""

    def __init__(self):
        root = os.environ.get("CONVOSCOPE_TEST_ROOT")
        if root:
            os.makedirs(root, exist_ok=True)
            self._tmp, self.name = None, tempfile.mkdtemp(prefix="py-", dir=root)
        else:
            self._tmp = tempfile.TemporaryDirectory()
            self.name = self._tmp.name

    def cleanup(self):
        if self._tmp:
            self._tmp.cleanup()


def serve(workdir: Path, tokens: str, **extra):
    """Starts `convoscope serve` storing under workdir, its log in workdir/serve.log, with
    `extra` environment on top; returns (process, base URL, env)."""
    port = free_port()
    env = dict(os.environ)
    env.update(
        CONVOSCOPE_STORAGE=f"file://{workdir / 'store'}",
        CONVOSCOPE_STATE_DIR=str(workdir / "state"),
        CONVOSCOPE_LISTEN=f"127.0.0.1:{port}",
        CONVOSCOPE_TOKENS=tokens,
        CONVOSCOPE_PII_KEY="python-test-key",
    )
    env.update(extra)
    with open(workdir / "serve.log", "ab") as log:
        proc = subprocess.Popen([BIN, "serve"], env=env, stdout=subprocess.DEVNULL, stderr=log)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(base + "/healthz")
    except AssertionError:
        proc.kill()
        raise AssertionError(f"serve did not come up: {(workdir / 'serve.log').read_text()[-2000:]}") from None
    return proc, base, env


def post_fixture(base: str, token: str, rel="reports/events.ndjson"):
    """Posts an NDJSON fixture to /v1/events; returns the answer."""
    body = (ROOT / "fixtures" / rel).read_bytes()
    req = urllib.request.Request(base + "/v1/events", data=body, headers={"Authorization": f"Bearer {token}"})
    answer = json.load(urllib.request.urlopen(req, timeout=10))
    assert answer["rejected"] == [], answer
    return answer


def need(tool, how="apt-get install", extra_path=""):
    """Path of a tool the test needs. Under CI (scripts/test.sh installs them all) a missing
    tool fails the test; elsewhere it skips with how to install it."""
    path = shutil.which(tool, path=os.pathsep.join(p for p in [extra_path, os.environ.get("PATH", "")] if p))
    if path is None:
        if os.environ.get("CI"):
            raise AssertionError(f"{tool} is not installed; scripts/test.sh installs it")
        raise unittest.SkipTest(f"{tool} is not installed ({how} {tool}); skipping")
    return path
