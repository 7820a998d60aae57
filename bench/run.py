"""The benchmark suite: ``make bench`` (or ``python -m bench.run``).

Each scenario runs against a fresh ``imhub serve`` on a fresh SQLite database, the server
pinned to CPU 0 and the load generator to CPU 1, and is repeated (median and min–max). It
prints a JSON line per measurement, appends them to ``bench/results.jsonl``, and writes the
Markdown table ``docs/bench-results.md`` and the plots ``docs/bench-latency.png`` and
``docs/bench-memory.png``.

    python -m bench.run                 # everything, 3 repetitions (about 10 minutes)
    python -m bench.run --quick         # one repetition, smaller sizes (about 2 minutes)
    python -m bench.run --only fanout   # one family: p2p, latency, fanout, idle
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import fanout, idle, p2p
from bench.common import run_on_fresh_server

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeat", type=int, default=None)
    parser.add_argument("--only", choices=["p2p", "latency", "fanout", "idle"])
    args = parser.parse_args()
    repeat = args.repeat or (1 if args.quick else 3)
    about = machine()
    print(json.dumps({"machine": about}), flush=True)
    rows = []
    with open(ROOT / "bench" / "results.jsonl", "a") as out:
        for family, label, run, users in scenarios(args.quick):
            if args.only and family != args.only:
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
    if not args.only:
        (DOCS / "bench-results.md").write_text(text)
        plots(rows)
    print(text)


if __name__ == "__main__":
    main()
