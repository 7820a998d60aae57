"""The host's cost of a durable commit, measured at the start of a benchmark run.

A durable message costs at least one fsync of the write-ahead log: on one host it takes 0.1 ms,
on another (a network disk, a busy hypervisor) several. Each run states what its host charged,
so its figures can be read against it, and the p99 target at 10,000 msgs/s allows the floor's
p99 plus two fsyncs where the fsync alone is slower than the ratio allows (issue 14).

    python -m bench.hostcost [DIR]     # prints one JSON line
"""

from __future__ import annotations

import json
import os
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BLOCK = b"\0" * 4096


def _summary(prefix: str, seconds: list[float], cpu: float) -> dict[str, float]:
    seconds = sorted(seconds)
    n = len(seconds)
    return {
        f"{prefix}_p50_us": round(seconds[n // 2] * 1e6),
        f"{prefix}_p99_us": round(seconds[min(n - 1, int(n * 0.99))] * 1e6),
        f"{prefix}_cpu_us": round(cpu / n * 1e6, 1),
    }


def fdatasync_cost(folder: Path, n: int = 300) -> dict[str, float]:
    """Append 4 KiB and ``fdatasync``, ``n`` times: latency percentiles and CPU per call
    (user + system of this process: the kernel's share of a flush is counted there)."""
    path = folder / "fsync-probe"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        took = []
        cpu = sum(os.times()[:2])
        for _ in range(n):
            os.write(fd, BLOCK)
            began = time.perf_counter()
            os.fdatasync(fd)
            took.append(time.perf_counter() - began)
        cpu = sum(os.times()[:2]) - cpu
    finally:
        os.close(fd)
        path.unlink()
    return _summary("fsync", took, cpu)


def sqlite_commit_cost(folder: Path, n: int = 300) -> dict[str, float]:
    """One-row transactions on SQLite as imhub configures it (WAL, ``synchronous=FULL``):
    the least a durable message can cost on this host, Python's sqlite3 included."""
    path = folder / "commit-probe.db"
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT)")
        took = []
        cpu = time.process_time()
        for _ in range(n):
            began = time.perf_counter()
            db.execute("BEGIN")
            db.execute("INSERT INTO t (body) VALUES ('hello')")
            db.execute("COMMIT")
            took.append(time.perf_counter() - began)
        cpu = time.process_time() - cpu
    finally:
        db.close()
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
    return _summary("sqlite_commit", took, cpu)


def measure(folder: Path | None = None, n: int = 300) -> dict[str, Any]:
    """Both probes, in ``folder`` (default: a temporary folder where the benchmarks keep
    their databases), with the date."""
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        here = Path(tmp)
        return {
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            **fdatasync_cost(here, n),
            **sqlite_commit_cost(here, n),
        }


if __name__ == "__main__":
    print(json.dumps(measure(Path(sys.argv[1]) if len(sys.argv) > 1 else None)))
