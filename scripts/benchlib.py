"""Shared by the benchmark scripts: find the binary, start and stop servers, read /proc."""

import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def default_bin():
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    return os.environ.get("CONVOSCOPE_BIN", str(target / "release" / "convoscope"))


def close(a, b_, rel=1e-9):
    """Whether two values of a report's row are equal: numbers to `rel` relative, others exactly
    (as text)."""
    if a is None or b_ is None:
        return a is None and b_ is None
    if isinstance(a, (int, float)) and isinstance(b_, (int, float)):
        return abs(a - b_) <= rel * max(1.0, abs(a), abs(b_))
    return str(a) == str(b_)


def same_rows(a, b_):
    """Whether two results hold the same rows (numbers to `close`), in any order: sorted by
    their leading (key) columns, since a report's SQL may leave its rows unsorted (the
    experiment report's does; the report sorts them)."""
    def in_order(rows):
        return sorted(rows, key=lambda r: [str(v) for v in r[:5]])

    a, b_ = in_order(a), in_order(b_)
    return len(a) == len(b_) and all(close(x, y) for ra, rb in zip(a, b_) for x, y in zip(ra, rb))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(url, seconds=60):
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            return urllib.request.urlopen(url, timeout=1).read()
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"{url} did not answer within {seconds}s")


def start(args, env=None, log=None):
    """Starts a process with stdout/stderr to `log` (a path) or nowhere."""
    out = open(log, "ab") if log else subprocess.DEVNULL
    return subprocess.Popen(args, env=env, stdout=out, stderr=out)


def stop(proc, timeout=60):
    """SIGTERM, then wait; returns the exit code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


def serve_env(work: Path, port: int, **extra):
    """Environment for `convoscope serve` storing under `work`."""
    env = dict(os.environ)
    env.update(
        CONVOSCOPE_STORAGE=f"file://{work / 'store'}",
        CONVOSCOPE_STATE_DIR=str(work / "state"),
        CONVOSCOPE_LISTEN=f"127.0.0.1:{port}",
        CONVOSCOPE_PII_KEY="bench-key",
        CONVOSCOPE_EXPERIMENTS=str(ROOT / "experiments.toml"),
    )
    env.update({k: str(v) for k, v in extra.items()})
    return env


def reset_peak_rss(pid):
    """Resets the kernel's peak-RSS mark of `pid` (Linux: clear_refs 5)."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        pass


def peak_rss_mib(pid):
    """Peak resident set size of `pid` since start or the last reset, in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid):
    """User plus system CPU time `pid` has used, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_cpu_seconds():
    """CPU time every process of the machine has used (user, nice, system, irq, softirq: not
    idle, I/O wait or steal; guest time is already inside user), in seconds: /proc/stat's
    first line."""
    user, nice, system, _idle, _iowait, irq, softirq = (
        int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:8])
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """CPU used by one process and by the whole machine between `start` and `stop`."""

    def __init__(self, pid):
        self.pid = pid

    def start(self):
        self.proc0, self.all0 = cpu_seconds(self.pid), machine_cpu_seconds()
        return self

    def stop(self):
        """(seconds of the process, seconds of everything else on the machine)."""
        proc, every = cpu_seconds(self.pid) - self.proc0, machine_cpu_seconds() - self.all0
        return proc, max(every - proc, 0.0)


def wait_idle(pid, quiet=0.05, limit=2.0):
    """Waits until `pid` has used no CPU for `quiet` seconds (at most `limit` seconds): a
    server may still be freeing a query's memory after it answered."""
    end = time.monotonic() + limit
    last = cpu_seconds(pid)
    while time.monotonic() < end:
        time.sleep(quiet)
        now = cpu_seconds(pid)
        if now == last:
            return
        last = now


def metric(base, name, labels=""):
    """Sum of one Prometheus metric's samples whose label text contains `labels`."""
    text = urllib.request.urlopen(base + "/metrics", timeout=10).read().decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and (line[len(name)] in " {") and labels in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def machine():
    """One line naming this machine: cores, memory, CPU model."""
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
        mem = int(Path("/proc/meminfo").read_text().split()[1]) / 1024 / 1024
    except OSError:
        mem = float("nan")
    return f"{os.cpu_count()} cores, {mem:.0f} GiB, {model}"
