"""Issue 12's benchmarks: one-to-one on SQLite, PostgreSQL and MariaDB in the same run
(``databases``), and imhub as a cluster on PostgreSQL + Redis (``scaleout``): ``--workers 1``
and ``2`` on this machine, three nodes with every message crossing nodes, and cross-node
against same-node delivery latency.

    python -m bench.run --only databases scaleout        # both, 3 repetitions (~5 min)
    python -m bench.run --only scaleout --quick          # one short repetition

Each database server is started once per run (durable commits, ``bench.backends``); every
scenario run gets a fresh database with its users, fresh imhub processes, and (in a cluster) a
fresh Redis, whose presence entries would otherwise outlive the run's nodes. Repetitions are
interleaved (all cases once, then all again) so a noisy minute hits every case alike.

CPU placement. ``databases``: imhub and the database server share CPU 0 and the load
generator has CPU 1, as in the single-process scenarios where SQLite's thread shares imhub's
core: each backend gets the same one core for all of its server-side work, so the figures
compare CPU cost per message. (A real deployment gives the database its own cores; this
machine has two.) ``scaleout``: nothing is pinned, since two workers need both cores; every
process (imhub's, PostgreSQL's, Redis, the load generator) shares them, and the CPU each used
is reported so the bottleneck can be read off.

Every run checks completeness (each acknowledged message delivered once and in order, p2p.py)
and that the database holds exactly one row per acknowledged message (``stored_once``).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import tempfile
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvloop

from bench import p2p
from bench.backends import ALL_CPUS, Backend, Imhub, cpu_seconds, redis_server
from tests.databases import Database

USERS = 200  # 100 pairs
LATENCY_RATE = 10_000
LONE_RATE = 200  # nearly one message at a time: each is its own batch, nothing queues
CROSS_RATE = 1_000  # "moderate" for a cluster node (~3 times the CPU per message of one process)

Run = Callable[[p2p.Placement], Coroutine[Any, Any, dict[str, Any]]]


@dataclass(frozen=True)
class Case:
    family: str
    label: str
    backend: str
    topology: str  # "single", "workers1", "workers2", "nodes3"
    mode: str  # the pairs' placement over the nodes: same, cross, mixed
    pinned: bool
    run: Run


def cases(quick: bool) -> list[Case]:
    secs = 3 if quick else 5
    out: list[Case] = []

    def thr(place: p2p.Placement) -> Coroutine[Any, Any, dict[str, Any]]:
        return p2p.throughput(place, "tcp", seconds=secs)

    def lat(place: p2p.Placement) -> Coroutine[Any, Any, dict[str, Any]]:
        return p2p.latency(place, "tcp", rate=LATENCY_RATE, seconds=secs)

    def cross_lat(place: p2p.Placement) -> Coroutine[Any, Any, dict[str, Any]]:
        return p2p.latency(place, "tcp", rate=CROSS_RATE, seconds=secs)

    def lone_lat(place: p2p.Placement) -> Coroutine[Any, Any, dict[str, Any]]:
        return p2p.latency(place, "tcp", rate=LONE_RATE, seconds=secs)

    for backend in ("sqlite", "postgresql", "mariadb"):
        out.append(Case("databases", f"{backend} p2p_throughput", backend, "single", "same",
                        True, thr))  # fmt: skip
        out.append(Case("databases", f"{backend} p2p_latency {LATENCY_RATE}/s", backend, "single",
                        "same", True, lat))  # fmt: skip
    pg = "postgresql"
    out += [
        Case("scaleout", "1 process, no cluster", pg, "single", "same", False, thr),
        Case("scaleout", "--workers 1 --cluster", pg, "workers1", "same", False, thr),
        Case("scaleout", "--workers 2 --cluster", pg, "workers2", "same", False, thr),
        Case("scaleout", "3 nodes, every message crosses", pg, "nodes3", "cross", False, thr),
        Case("scaleout", f"3 nodes, same vs cross {LONE_RATE}/s", pg, "nodes3", "mixed", False,
             lone_lat),
        Case("scaleout", f"3 nodes, same vs cross {CROSS_RATE}/s", pg, "nodes3", "mixed", False,
             cross_lat),
    ]  # fmt: skip
    return out


@contextlib.contextmanager
def _servers(
    case: Case, backend: Backend, tmp: Path
) -> Iterator[tuple[list[Imhub], int | None, Database]]:
    """The case's imhub processes on a fresh database (and Redis); yields them, Redis's pid
    (None without a cluster) and the database."""
    db = backend.fresh(tmp / "db", USERS)
    procs: list[Imhub] = []
    try:
        with contextlib.ExitStack() as stack:
            redis = None
            if case.topology != "single":
                redis = stack.enter_context(redis_server())
            if case.topology == "single":
                procs.append(Imhub(tmp / "n0", db, cpus={0} if case.pinned else None))
            elif case.topology.startswith("workers"):
                workers = int(case.topology.removeprefix("workers"))
                procs.append(Imhub(tmp / "n0", db, cluster=redis.url, workers=workers))  # type: ignore[union-attr]
            else:
                n = int(case.topology.removeprefix("nodes"))
                for i in range(n):
                    procs.append(Imhub(tmp / f"n{i}", db, cluster=redis.url))  # type: ignore[union-attr]
            try:
                yield procs, redis.pid if redis else None, db
            finally:
                for proc in procs:
                    proc.stop()
    finally:
        db.dispose()


def _spy(pids: list[int], label: str) -> list[subprocess.Popen[bytes]]:
    """BENCH_PYSPY=DIR: sample each imhub process (and its workers) with py-spy for the
    first 6 s of the load, into DIR/<label>-<pid>.txt (collapsed stacks)."""
    folder = os.environ.get("BENCH_PYSPY")
    if not folder:
        return []
    name = "".join(c if c.isalnum() else "_" for c in label)
    spies = []
    for pid in pids:
        command = ["py-spy", "record", "--pid", str(pid), "--subprocesses", "--duration", "6",
                   "--format", "raw", "--output", f"{folder}/{name}-{pid}.txt"]  # fmt: skip
        quiet = subprocess.DEVNULL
        spies.append(subprocess.Popen(command, stdout=quiet, stderr=quiet))
    return spies


def run_case(case: Case, backend: Backend) -> dict[str, Any]:
    """One run of ``case``: its result, the CPU seconds of each side during the load, and CPU
    microseconds per message."""
    with tempfile.TemporaryDirectory(prefix="imhub-bench-") as name:
        tmp = Path(name)
        backend.pin({0} if case.pinned else ALL_CPUS)
        with _servers(case, backend, tmp) as (procs, redis_pid, db):
            place = p2p.Placement([p.port for p in procs], case.mode)
            os.sched_setaffinity(0, {1} if case.pinned else ALL_CPUS)
            imhub_pids = [p.pid for p in procs]
            load1 = os.getloadavg()[0]
            before = (
                cpu_seconds(imhub_pids),
                cpu_seconds([backend.pid]) if backend.pid else 0.0,
                cpu_seconds([redis_pid]) if redis_pid else 0.0,
                time.process_time(),
            )
            spies = _spy(imhub_pids, case.label)
            result = uvloop.run(case.run(place))
            for spy in spies:
                spy.wait(30)
            after = (
                cpu_seconds(imhub_pids),
                cpu_seconds([backend.pid]) if backend.pid else 0.0,
                cpu_seconds([redis_pid]) if redis_pid else 0.0,
                time.process_time(),
            )
            os.sched_setaffinity(0, ALL_CPUS)
            messages = result.get("acked") or result["messages"]
            stored = db.count("SELECT count(*) FROM person_msg")
    sides = ("imhub", "db", "redis", "loadgen")
    cpu = {side: a - b for side, a, b in zip(sides, after, before, strict=True)}
    out = {**result, "stored_once": stored == messages}
    for side, seconds in cpu.items():
        out[f"{side}_cpu_s"] = round(seconds, 2)
    for side, seconds in cpu.items():
        out[f"{side}_us_per_msg"] = round(seconds / messages * 1e6, 1)
    out["load1"] = round(load1, 2)
    return {"backend": case.backend, "topology": case.topology, **out}


def run_families(
    families: list[str], quick: bool, repeat: int, emit: Callable[[str, int, dict[str, Any]], None]
) -> list[tuple[str, str, list[dict[str, Any]]]]:
    """Every case of ``families``, ``repeat`` times interleaved; ``emit(label, i, result)``
    after each run. Returns (family, label, results) per case."""
    chosen = [c for c in cases(quick) if c.family in families]
    runs: dict[str, list[dict[str, Any]]] = {c.label: [] for c in chosen}
    backends: dict[str, Backend] = {}
    with tempfile.TemporaryDirectory(prefix="imhub-bench-db-") as root:
        try:
            for name in dict.fromkeys(c.backend for c in chosen):
                backends[name] = Backend(name, Path(root) / name)
            for i in range(repeat):
                for case in chosen:
                    result = run_case(case, backends[case.backend])
                    runs[case.label].append(result)
                    emit(case.label, i, result)
        finally:
            for backend in backends.values():
                backend.close()
    return [(c.family, c.label, runs[c.label]) for c in chosen]
