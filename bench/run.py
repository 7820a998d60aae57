"""The benchmark suite: ``make bench`` (or ``python -m bench.run``).

Each scenario runs against a fresh ``imhub serve`` on a fresh SQLite database, the server
pinned to CPU 0 and the load generator to CPU 1, and is repeated (median and min–max). It
prints a JSON line per measurement, appends them to ``bench/results.jsonl``, and writes the
Markdown table ``docs/bench-results.md`` and the plots ``docs/bench-latency.png`` and
``docs/bench-memory.png``.

    python -m bench.run                 # ratios to the floor, then idle (about 30 minutes)
    python -m bench.run --quick         # one repetition, smaller sizes (about 3 minutes)
    python -m bench.run --only ratios   # imhub ÷ the floor relay (bench/ratios.py, issue 14)
    python -m bench.run --only fanout   # one family: p2p, latency, fanout, idle (absolute)
    python -m bench.run --only databases scaleout   # issue 12: bench/scaleout.py (~5 min)
    python -m bench.run --only flood    # issue 13: bench/flood.py, a pair's p99 under floods
    python -m bench.run --only soak     # bench/soak.py: 10 minutes (--quick: 1 minute)
    python -m bench.run --only history  # issue 14: bench/history.py, fresh vs grown databases

The ``databases`` and ``scaleout`` families (SQLite, PostgreSQL and MariaDB side by side;
workers and nodes of a cluster) start their own database servers and Redis and are not part
of the default run; their tables replace their own sections of ``docs/bench-results.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import fanout, flood, idle, p2p, ratios, scaleout, soak
from bench.common import replace_section, run_on_fresh_server

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
SECTION = re.compile(r"<!-- (\w+) -->.*?<!-- /\1 -->\n", re.S)  # a family's own section
MAX_PER_PROCESS = 19_900  # the machine's cap of 20,000 open files per process, less a margin

Scenario = tuple[str, str, Callable[..., Any], int]  # family, label, run(port, pid), users


def scenarios(quick: bool) -> list[Scenario]:
    secs = 3 if quick else 5
    out: list[Scenario] = []
    for transport in ("tcp", "ws"):
        out.append(
            (
                "p2p",
                f"p2p_throughput {transport}",
                lambda port, pid, t=transport: p2p.throughput(port, t, seconds=secs),
                200,
            )
        )
    for rate in (2000, 10000):
        out.append(
            (
                "latency",
                f"p2p_latency tcp {rate}/s",
                lambda port, pid, r=rate: p2p.latency(port, "tcp", rate=r, seconds=secs),
                200,
            )
        )
    for members in (100, 1000) if quick else (100, 1000, 10_000):
        out.append(
            (
                "fanout",
                f"group_fanout {members}",
                lambda port, pid, m=members: fanout.fanout(port, members=m, seconds=secs),
                members,
            )
        )
    sizes = (2000,) if quick else (10_000, MAX_PER_PROCESS)
    for transport in ("tcp", "ws"):
        for n in sizes:
            out.append(
                (
                    "idle",
                    f"idle_connections {transport} {n}",
                    lambda port, pid, t=transport, n=n: idle.idle(port, pid, t, n),
                    n,
                )
            )
    return out


def machine() -> dict[str, Any]:
    cpu = ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem = Path("/proc/meminfo").read_text().splitlines()[0].split()[1]
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(int(mem) / 1024 / 1024),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "commit": subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT
        ).stdout.strip(),
    }


def summarize(label: str, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Median and min–max of every numeric field over the repetitions."""
    out: dict[str, Any] = {"label": label, "runs": len(runs)}
    for key, value in runs[0].items():
        if isinstance(value, bool):
            out[key] = all(r[key] for r in runs)
        elif isinstance(value, int | float):
            values = [r[key] for r in runs]
            out[key] = {
                "median": statistics.median(values),
                "min": min(values),
                "max": max(values),
            }
        else:
            out[key] = value
    return out


def cell(value: Any) -> str:
    if isinstance(value, dict):
        if value["min"] == value["max"]:
            return f"{value['median']:,}"
        return f"{value['median']:,} [{value['min']:,}–{value['max']:,}]"
    return str(value)


def table(rows: list[dict[str, Any]]) -> str:
    """One Markdown table per scenario family (their columns differ)."""
    parts = []
    skip = {"label", "scenario", "runs"}
    by_scenario: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_scenario.setdefault(row["scenario"], []).append(row)
    for name, group in by_scenario.items():
        keys = [k for k in group[0] if k not in skip]
        parts.append(f"### {name}\n")
        parts.append("| run | " + " | ".join(keys) + " |")
        parts.append("|---" * (len(keys) + 1) + "|")
        for row in group:
            parts.append(
                f"| {row['label']} | " + " | ".join(cell(row.get(k, "")) for k in keys) + " |"
            )
        parts.append("")
    return "\n".join(parts)


def plots(rows: list[dict[str, Any]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lat = [r for r in rows if r["scenario"] == "p2p_latency"]
    if lat:
        loads = [r["offered_per_s"]["median"] for r in lat]
        fig, ax = plt.subplots(figsize=(6, 4))
        for key, name in (
            ("deliver_p50_ms", "send→delivery p50"),
            ("deliver_p99_ms", "send→delivery p99"),
            ("ack_p99_ms", "send→chat_answer p99"),
        ):
            ax.plot(loads, [r[key]["median"] for r in lat], marker="o", label=name)
        _finish(
            fig, ax, "offered load (durable messages/s, TCP)", "ms", "imhub one-to-one latency",
            "bench-latency.png",
        )  # fmt: skip
    mem = [r for r in rows if r["scenario"] == "idle_connections"]
    if mem:
        fig, ax = plt.subplots(figsize=(6, 4))
        for transport in ("tcp", "ws"):
            pts = sorted(
                (r["connections"]["median"], r["server_rss_mib"]["median"])
                for r in mem
                if r["transport"] == transport
            )
            if pts:
                ax.plot(*zip(*pts, strict=True), marker="o", label=transport)
        _finish(
            fig, ax, "logged-in idle connections (one server process)", "server RSS (MiB)",
            "imhub memory against connections", "bench-memory.png",
        )  # fmt: skip


def _finish(fig: Any, ax: Any, xlabel: str, ylabel: str, title: str, name: str) -> None:
    """Label a plot the same way as the others and write it into docs/."""
    import matplotlib.pyplot as plt

    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(DOCS / name, dpi=110)
    plt.close(fig)


SCALE_FAMILIES = ("databases", "scaleout")
FAMILIES = ("ratios", "p2p", "latency", "fanout", "idle", "flood")
SCALE_NOTES = {
    "databases": (
        "One-to-one over TCP on each database, fresh database per run, repetitions "
        "interleaved. imhub and the database server share CPU 0, the load generator has "
        "CPU 1. Durable commits everywhere (SQLite synchronous=FULL, PostgreSQL fsync on, "
        "MariaDB innodb_flush_log_at_trx_commit=1). `*_cpu_s`: CPU seconds of each side "
        "during the load (logins included); `*_us_per_msg`: the same per acknowledged "
        "message; `load1`: the machine's 1-minute load average when the run began."
    ),
    "scaleout": (
        "imhub on PostgreSQL (durable) and Redis, nothing pinned (every process shares both "
        "cores). `--workers N`: N processes on one port (SO_REUSEPORT, pairs land where the "
        "kernel puts them); 3 nodes: three `imhub serve --cluster` on three ports, each "
        "pair's sender on one node and receiver on the next; same vs cross: half the pairs "
        "on one node, half across two, open loop."
    ),
}


def scale_runs(families: list[str], quick: bool, repeat: int, about: dict[str, Any]) -> None:
    """Issue 12's families (bench/scaleout.py); their tables replace their sections of
    docs/bench-results.md."""
    with open(ROOT / "bench" / "results.jsonl", "a") as out:

        def emit(label: str, i: int, result: dict[str, Any]) -> None:
            record = {"label": label, "repeat": i, **result, "machine": about}
            print(json.dumps(record), flush=True)
            out.write(json.dumps(record) + "\n")
            out.flush()

        done = scaleout.run_families(families, quick, repeat, emit)
    for family in families:
        rows = []
        for fam, label, runs in done:
            if fam == family:
                row = summarize(label, runs)
                row["scenario"] = f"{family}: {row['scenario']}"
                rows.append(row)
        section = (
            f"<!-- {family} -->\n## {family} (issue 12)\n\n"
            f"Commit {about['commit']}; {repeat} run(s) each: median [min–max]. "
            f"{SCALE_NOTES[family]} Made by `python -m bench.run --only {family}`.\n\n"
            + table(rows)
            + f"<!-- /{family} -->\n"
        )
        print(section)
        replace_section(DOCS / "bench-results.md", family, section)


def flood_runs(quick: bool, repeat: int, about: dict[str, Any]) -> None:
    """Issue 13's flood scenario (bench/flood.py): printed and kept in results.jsonl; its
    numbers go in docs/performance.md by hand, with the machine's load."""
    runs = []
    with open(ROOT / "bench" / "results.jsonl", "a") as out:
        for i in range(repeat):
            load1 = os.getloadavg()[0]
            result = {**flood.run(seconds=3 if quick else 5), "load1": round(load1, 2)}
            record = {"label": "flood", "repeat": i, **result, "machine": about}
            print(json.dumps(record), flush=True)
            out.write(json.dumps(record) + "\n")
            runs.append(result)
    print(table([summarize("flood", runs)]))


def ratio_runs(quick: bool, repeat: int, about: dict[str, Any]) -> str:
    """Issue 14's table (bench/ratios.py): SQLite, and PostgreSQL where its server is
    installed, each also with ``--durability os``, and SQLite on a grown database (made
    once by bench.history, a few minutes); returned, and written as its own section of
    docs/bench-results.md."""
    from tests.services import PG_BIN

    names = ["sqlite", "postgresql"] if (PG_BIN / "postgres").exists() else ["sqlite"]
    backends = names + [f"{name}:os" for name in names] + ["sqlite:grown"]
    with open(ROOT / "bench" / "results.jsonl", "a") as out:

        def emit(record: dict[str, Any]) -> None:
            print(json.dumps(record), flush=True)
            out.write(json.dumps({**record, "machine": about}) + "\n")

        rows, host = ratios.run(backends, repeat, 3 if quick else 5, emit=emit)
    section = (
        "<!-- ratios -->\n## imhub ÷ the floor (issue 14)\n\n"
        f"Commit {about['commit']}, {about['cpu']}; {repeat} run(s) of each workload on the "
        "floor relay (`bench/floor.py`: no storage, no checks) and on imhub on a fresh "
        "database, interleaved; ratio: median of the runs' ratios [min–max]. Server (and "
        "database server) on CPU 0, load generator on CPU 1; durable commits (fsync) but "
        "where the database says `:os` (`--durability os`). Made by "
        "`make bench` (`python -m bench.run --only ratios`).\n\n"
        + ratios.table(rows, host)
        + "<!-- /ratios -->\n"
    )
    print(section)
    replace_section(DOCS / "bench-results.md", "ratios", section)
    return section


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeat", type=int, default=None)
    parser.add_argument(
        "--only",
        nargs="+",
        choices=[*FAMILIES, *SCALE_FAMILIES, "soak", "history"],
        help="families to run (default: ratios and idle)",
    )
    args = parser.parse_args()
    repeat = args.repeat or (1 if args.quick else 3)
    about = machine()
    print(json.dumps({"machine": about}), flush=True)
    if not args.only:
        args.only = ["ratios", "idle"]
        default = True
    else:
        default = False
    ratio_table = ""
    if "ratios" in args.only:
        ratio_table = ratio_runs(args.quick, repeat, about)
        args.only.remove("ratios")
        if not args.only:
            return
    if args.only and "flood" in args.only:
        flood_runs(args.quick, repeat, about)
        args.only.remove("flood")
        if not args.only:
            return
    if args.only and "soak" in args.only:  # the hour is by hand: python -m bench.soak
        size = ["--seconds", "60", "--users", "500"] if args.quick else ["--seconds", "600"]
        result = soak.run(soak.parse(size))
        with open(ROOT / "bench" / "results.jsonl", "a") as out:
            out.write(json.dumps({"label": "soak", **result, "machine": about}) + "\n")
        print(json.dumps(result), flush=True)
        args.only.remove("soak")
        if not args.only:
            return
    if args.only and "history" in args.only:  # makes its databases once (minutes), then reuses
        from bench import history

        print(history.family(args.quick, repeat, about), flush=True)
        args.only.remove("history")
        if not args.only:
            return
    scale = [f for f in SCALE_FAMILIES if args.only and f in args.only]
    if scale:
        scale_runs(scale, args.quick, repeat, about)
        if all(f in SCALE_FAMILIES for f in args.only):
            return
    rows = []
    with open(ROOT / "bench" / "results.jsonl", "a") as out:
        for family, label, run, users in scenarios(args.quick):
            if args.only and family not in args.only:
                continue
            runs = []
            for i in range(repeat):
                result = run_on_fresh_server(run, users=users)
                record = {"label": label, "repeat": i, **result, "machine": about}
                print(json.dumps(record), flush=True)
                out.write(json.dumps(record) + "\n")
                runs.append(result)
            rows.append(summarize(label, runs))
    text = (
        "# Benchmark results\n\n"
        f"Machine: {about['cpu']}, {about['cores']} cores, {about['memory_gib']} GiB, "
        f"Python {about['python']}, Linux {about['kernel']}; commit {about['commit']}. "
        "Server on CPU 0, load generator on CPU 1, SQLite (WAL, synchronous=FULL); "
        f"{repeat} run(s) each: median [min–max]. Made by `make bench`.\n\n" + table(rows)
    )
    if default:
        old = (DOCS / "bench-results.md").read_text()
        found = {m.group(1): m.group(0) for m in SECTION.finditer(old)}
        # The ratios to the floor first: they are what carries from one host to another.
        kept = "".join(found[k] + "\n" for k in sorted(found, key=lambda k: k != "ratios"))
        title, _, rest = text.partition("\n\n")
        absolute = "## Absolute figures of this run (read them with the host)\n\n" + rest
        (DOCS / "bench-results.md").write_text(f"{title}\n\n{kept}{absolute}")
        plots(rows)
    print(text)
    print(ratio_table)


if __name__ == "__main__":
    main()
