"""imhub against its floor, in the same run: the ratio table of ``make bench`` (issue 14).

Each repetition runs every workload on the floor relay (``bench.floor``: no storage, no
checks) and then on imhub on a fresh database, with the same load generator (``bench.p2p``,
``bench.fanout``) and the same pinning: the server (and a database server) on CPU 0, the
load generator on CPU 1. A workload's ratio is taken within each repetition, so both sides
met the same host at about the same moment; the table gives the median of the repetitions'
ratios [min–max], the absolute medians beside it, and whether the target is met. Every run
must be complete (each acknowledged message delivered once and in order), the floor's too.

    python -m bench.ratios                          # SQLite, 3 repetitions (about 5 min)
    python -m bench.ratios --backends sqlite postgresql sqlite:os --repeat 1
                                                    # NAME:os: with --durability os
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvloop

from bench import fanout, history, hostcost, p2p
from bench.backends import Backend, Imhub, cpu_seconds

ROOT = Path(__file__).resolve().parents[1]
SECONDS = 5
GROWN = 10_000_000  # messages in the database of the ``NAME:grown`` runs (bench.history)


@dataclass(frozen=True)
class Workload:
    key: str
    title: str
    metric: str  # the result's field compared
    higher_is_better: bool
    users: int
    run: Callable[[int, int], Coroutine[Any, Any, dict[str, Any]]]  # (tcp port, http port)

    def target(self, host: dict[str, Any], floor: float) -> float:
        """The ratio this workload must reach (at least, or at most for a latency)."""
        if self.key == "tcp":
            return 0.5
        if self.key in ("ws", "group"):
            return 1.0
        if self.key == "p99_2k":
            return 2.0
        # p99 at 10,000/s: 3× the floor, or the floor plus two of the host's fsyncs where
        # an fsync alone is slower than that allows.
        fsync_ms = host["fsync_p99_us"] / 1000
        return max(3.0, (floor + 2 * fsync_ms) / floor) if floor else 3.0

    def met(self, ratio: float, target: float) -> bool:
        return ratio >= target if self.higher_is_better else ratio <= target


def workloads(seconds: float = SECONDS) -> list[Workload]:
    def thr(transport: str) -> Callable[[int, int], Coroutine[Any, Any, dict[str, Any]]]:
        return lambda tcp, http: p2p.throughput(
            tcp if transport == "tcp" else http, transport, seconds=seconds
        )

    def lat(rate: int) -> Callable[[int, int], Coroutine[Any, Any, dict[str, Any]]]:
        return lambda tcp, http: p2p.latency(tcp, "tcp", rate=rate, seconds=seconds)

    def group(tcp: int, http: int) -> Coroutine[Any, Any, dict[str, Any]]:
        return fanout.fanout(tcp, members=1000, seconds=seconds, api_port=http)

    return [
        Workload("tcp", "one-to-one msgs/s, TCP", "msgs_per_s", True, 200, thr("tcp")),
        Workload("ws", "one-to-one msgs/s, WebSocket", "msgs_per_s", True, 200, thr("ws")),
        Workload(
            "p99_10k",
            "p99 send→delivery at 10,000 msgs/s (ms)",
            "deliver_p99_ms",
            False,
            200,
            lat(10_000),
        ),
        Workload(
            "p99_2k",
            "p99 send→delivery at 2,000 msgs/s (ms)",
            "deliver_p99_ms",
            False,
            200,
            lat(2_000),
        ),
        Workload(
            "group",
            "group of 1,000: deliveries/s",
            "sustained_deliveries_per_s",
            True,
            1000,
            group,
        ),
    ]


@contextlib.contextmanager
def floor_server() -> Iterator[tuple[int, int, int]]:
    """The floor relay on CPU 0: yields (pid, TCP port, HTTP port)."""
    pin = ["taskset", "-c", "0"] if shutil.which("taskset") else []
    proc = subprocess.Popen(
        [*pin, sys.executable, "-m", "bench.floor"],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        assert proc.stdout is not None
        words = proc.stdout.readline().split()  # "floor tcp PORT http PORT"
        yield proc.pid, int(words[2]), int(words[4])
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _measure(pid: int, run: Coroutine[Any, Any, dict[str, Any]]) -> dict[str, Any]:
    """Run the load from CPU 1; the result with the server side's CPU seconds (its process
    tree: imhub and the threads of its driver; PostgreSQL's are added by the caller)."""
    os.sched_setaffinity(0, {1})
    load1 = os.getloadavg()[0]
    before = cpu_seconds([pid])
    try:
        result = uvloop.run(run)
    finally:
        os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))
    return {**result, "server_cpu_s": round(cpu_seconds([pid]) - before, 2), "load1": load1}


def run_floor(work: Workload) -> dict[str, Any]:
    with floor_server() as (pid, tcp, http):
        return _measure(pid, work.run(tcp, http))


def run_imhub(work: Workload, backend: Backend, grown: int = 0, **options: Any) -> dict[str, Any]:
    """One run on imhub with ``IMHUB_*`` ``options`` (e.g. ``durability="os"``), on a fresh
    database or (SQLite, ``grown``) on a copy of one holding that many messages."""
    with tempfile.TemporaryDirectory(prefix="imhub-ratio-") as name:
        tmp = Path(name)
        if grown:
            (tmp / "db").mkdir()
            db = history.grown_database(tmp / "db", grown)
        else:
            db = backend.fresh(tmp / "db", work.users)
        backend.pin({0})
        cpus = {0} if shutil.which("taskset") else None
        server = Imhub(tmp / "n0", db, cpus=cpus, **options)
        try:
            db_before = cpu_seconds([backend.pid]) if backend.pid else 0.0
            result = _measure(server.pid, work.run(server.port, server.port))
            if backend.pid:
                result["db_cpu_s"] = round(cpu_seconds([backend.pid]) - db_before, 2)
        finally:
            server.stop()
            db.dispose()
    return result


def ratio(work: Workload, imhub: dict[str, Any], floor: dict[str, Any]) -> float:
    mine, theirs = imhub[work.metric], floor[work.metric]
    return round(mine / theirs, 3) if theirs else float("inf")


def summarize(
    work: Workload, backend: str, pairs: list[tuple[dict[str, Any], dict[str, Any]]],
    host: dict[str, Any],
) -> dict[str, Any]:  # fmt: skip
    """One row of the table from the repetitions' (imhub, floor) results."""
    ratios = [ratio(work, i, f) for i, f in pairs]
    floor_median = statistics.median(f[work.metric] for _, f in pairs)
    target = round(work.target(host, floor_median), 2)
    middle = statistics.median(ratios)
    return {
        "workload": work.key,
        "title": work.title,
        "backend": backend,
        "imhub": statistics.median(i[work.metric] for i, _ in pairs),
        "floor": floor_median,
        "ratio": middle,
        "ratio_min": min(ratios),
        "ratio_max": max(ratios),
        "target": target,
        "met": work.met(middle, target),
        "complete": all(i.get("complete") and f.get("complete") for i, f in pairs),
        "imhub_cpu_s": statistics.median(i["server_cpu_s"] for i, _ in pairs),
        "floor_cpu_s": statistics.median(f["server_cpu_s"] for _, f in pairs),
        "runs": len(pairs),
    }


def growth(
    results: dict[tuple[str, str], list[tuple[dict[str, Any], dict[str, Any]]]],
    chosen: list[Workload],
) -> list[dict[str, Any]]:
    """Grown ÷ fresh for each workload run on both (``sqlite:grown`` and ``sqlite``), taken
    within each repetition; targets ≥ 0.9× for a rate, ≤ 1.5× for a p99 (issue 14)."""
    rows = []
    for work in chosen:
        big, small = results.get((work.key, "sqlite:grown")), results.get((work.key, "sqlite"))
        if not big or not small:
            continue
        pairs = zip(big, small, strict=True)
        ratios = [g[work.metric] / f[work.metric] for (g, _), (f, _) in pairs]
        target = 0.9 if work.higher_is_better else 1.5
        middle = round(statistics.median(ratios), 3)
        rows.append(
            {
                "workload": work.key, "title": work.title,
                "grown": statistics.median(g[work.metric] for g, _ in big),
                "fresh": statistics.median(f[work.metric] for f, _ in small),
                "ratio": middle, "ratio_min": round(min(ratios), 3),
                "ratio_max": round(max(ratios), 3), "target": target,
                "met": work.met(middle, target), "runs": len(ratios),
            }
        )  # fmt: skip
    return rows


def growth_table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return ""
    lines = [
        f"\nOn a database holding {GROWN:,} messages in {GROWN // 100:,} conversations "
        "(`bench.history`) ÷ on a fresh one, SQLite:\n",
        "| workload | grown | fresh | grown ÷ fresh | target | met |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['title']} | {r['grown']:,} | {r['fresh']:,} | {_judged(r)} |")
    return "\n".join(lines) + "\n"


def _judged(r: dict[str, Any]) -> str:
    """A row's last cells: the ratio [min–max], the target, met."""
    sign = "≥" if r["workload"] in ("tcp", "ws", "group") else "≤"
    spread = f" [{r['ratio_min']:.2f}–{r['ratio_max']:.2f}]" if r["runs"] > 1 else ""
    met = "yes" if r["met"] else "**no**"
    return f"{r['ratio']:.2f}×{spread} | {sign} {r['target']:.2f}× | {met}"


def table(rows: list[dict[str, Any]], host: dict[str, Any]) -> str:
    lines = [
        f"Host ({host['date']}): fdatasync of 4 KiB p50 {host['fsync_p50_us']} µs, p99 "
        f"{host['fsync_p99_us']} µs, {host['fsync_cpu_us']} µs CPU; a one-row SQLite commit "
        f"(WAL, synchronous=FULL) p50 {host['sqlite_commit_p50_us']} µs, p99 "
        f"{host['sqlite_commit_p99_us']} µs, {host['sqlite_commit_cpu_us']} µs CPU.",
        "",
        "| workload | database | imhub | floor | imhub ÷ floor | target | met | complete |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['title']} | {r['backend']} | {r['imhub']:,} | {r['floor']:,} "
            f"| {_judged(r)} | {r['complete']} |"
        )
    return "\n".join(lines) + "\n" + growth_table(host.get("growth", []))


def run(
    backends: list[str], repeat: int, seconds: float = SECONDS, only: list[str] | None = None,
    emit: Callable[[dict[str, Any]], None] = lambda record: None,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:  # fmt: skip
    """The whole table: the host's commit cost first, then ``repeat`` rounds of every
    workload on the floor and on each backend (``NAME`` or ``NAME:os`` for
    ``--durability os``, ``sqlite:grown`` on a copy of a database of ``GROWN`` messages).
    Returns (rows, host)."""
    host = hostcost.measure()
    emit({"label": "hostcost", **host})
    chosen = [w for w in workloads(seconds) if only is None or w.key in only]
    results: dict[tuple[str, str], list[tuple[dict[str, Any], dict[str, Any]]]] = {}
    with tempfile.TemporaryDirectory(prefix="imhub-ratio-db-") as root:
        bases = {name.split(":")[0] for name in backends}
        opened = {base: Backend(base, Path(root) / base) for base in sorted(bases)}
        try:
            for i in range(repeat):
                for work in chosen:
                    floor = run_floor(work)
                    emit({"label": f"floor {work.key}", "repeat": i, **floor})
                    for name in backends:
                        base, _, variant = name.partition(":")
                        options = {"durability": variant} if variant == "os" else {}
                        size = GROWN if variant == "grown" else 0
                        mine = run_imhub(work, opened[base], size, **options)
                        emit({"label": f"imhub {work.key} {name}", "repeat": i, **mine})
                        results.setdefault((work.key, name), []).append((mine, floor))
        finally:
            for backend in opened.values():
                backend.close()
    rows = [
        summarize(work, name, results[(work.key, name)], host)
        for work in chosen
        for name in backends
    ]
    host["growth"] = growth(results, chosen)
    return rows, host


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--backends", nargs="+", default=["sqlite"])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=SECONDS)
    parser.add_argument("--only", nargs="+", help="workload keys: tcp ws p99_10k p99_2k group")
    args = parser.parse_args()

    def emit(record: dict[str, Any]) -> None:
        print(json.dumps(record), flush=True)

    started = time.perf_counter()
    rows, host = run(args.backends, args.repeat, args.seconds, args.only, emit)
    print(table(rows, host))
    print(f"({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
