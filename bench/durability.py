"""What each durability level costs on SQLite: one-to-one throughput over TCP, and the
send→delivery p99 at 2,000 and 10,000 messages/s offered, with ``durability = fsync`` (the
default: answered after the commit's fsync) and ``os`` (answered once the commit reached the
operating system), the levels alternating so that a noisy machine weighs on both alike.

    python -m bench.durability              # 1 round: about 40 s
    python -m bench.durability --repeat 3   # median [min-max] of 3

Prints the host's fsync latency first (what ``os`` saves per commit), then one JSON line per
measurement and a Markdown table (docs/performance.md, "Durability").
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from bench import p2p
from bench.common import run_on_fresh_server

LEVELS = ("fsync", "os")
Run = Callable[..., Coroutine[Any, Any, dict[str, Any]]]


def fsync_ms(samples: int = 200) -> dict[str, float]:
    """p50 and p99 of one 2 KiB append and its ``fdatasync`` on the disk under /tmp (the
    commit of a small batch writes about that into SQLite's WAL)."""
    times: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        fd = os.open(Path(tmp) / "probe", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        try:
            for _ in range(samples):
                began = time.perf_counter()
                os.write(fd, b"x" * 2048)
                os.fdatasync(fd)
                times.append((time.perf_counter() - began) * 1000)
        finally:
            os.close(fd)
    return {"fsync_p50_ms": round(statistics.median(times), 3),
            "fsync_p99_ms": round(p2p.percentile(times, 0.99), 3)}  # fmt: skip


def workloads(seconds: float) -> list[tuple[str, Run]]:
    def tcp(port: int, pid: int) -> Coroutine[Any, Any, dict[str, Any]]:
        return p2p.throughput(port, "tcp", seconds=seconds)

    def at(rate: int) -> Run:
        def run(port: int, pid: int) -> Coroutine[Any, Any, dict[str, Any]]:
            return p2p.latency(port, "tcp", rate=rate, seconds=seconds)

        return run

    return [("p2p_throughput tcp", tcp), ("p2p_latency 2000/s", at(2000)),
            ("p2p_latency 10000/s", at(10_000))]  # fmt: skip


def measure(level: str, run: Run) -> dict[str, Any]:
    """One fresh server at ``level`` (the variable reaches it through ``start_server``)."""
    os.environ["IMHUB_DURABILITY"] = level
    try:
        return run_on_fresh_server(run, users=200)
    finally:
        del os.environ["IMHUB_DURABILITY"]


KEYS = ("msgs_per_s", "deliver_p50_ms", "deliver_p99_ms", "server_cpu_s", "complete", "lost")


def cell(values: list[Any]) -> str:
    if not values or not isinstance(values[0], int | float) or isinstance(values[0], bool):
        return str(values[0] if len(set(map(str, values))) == 1 else values)
    mid = statistics.median(values)
    return f"{mid:,}" if len(values) == 1 else f"{mid:,} [{min(values):,}–{max(values):,}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=5)
    args = parser.parse_args()
    host = fsync_ms()
    print(json.dumps({"host": host, "loadavg": os.getloadavg()}), flush=True)
    results: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for _ in range(args.repeat):
        for label, run in workloads(args.seconds):
            for level in LEVELS:
                out = measure(level, run)
                out |= {"label": label, "durability": level, "loadavg_1m": os.getloadavg()[0]}
                print(json.dumps(out), flush=True)
                results.setdefault((label, level), []).append(out)
    print(f"\nfsync of a 2 KiB append here: p50 {host['fsync_p50_ms']} ms,"
          f" p99 {host['fsync_p99_ms']} ms\n")  # fmt: skip
    print("| workload | durability | " + " | ".join(KEYS) + " |")
    print("|---|---|" + "---|" * len(KEYS))
    for (label, level), runs in results.items():
        cells = [cell([r[k] for r in runs if k in r]) if k in runs[0] else "" for k in KEYS]
        print(f"| {label} | {level} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
