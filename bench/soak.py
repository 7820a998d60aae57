"""The soak: a real ``imhub serve`` under thousands of connections that log in, chat, drop and
reconnect for a configurable time, while its memory and open files are sampled from /proc.

    python -m bench.soak --seconds 3600 --users 2000 --rate 300 --drops 5 \\
        --samples soak.jsonl --plot docs/soak.png
    python -m bench.soak --plot-only soak.jsonl --plot docs/soak.png   # redraw

It exits non-zero unless both hold:

- **flat**: after a warm-up (the first quarter of the run), the median of the server's RSS
  over the last quarter is within ``--rss-tolerance`` (10 %) of the median over the second
  quarter, and the same for its open files within 5 % (plus 10 descriptors, since they follow
  the connections online at the instant of the sample). A leak grows the later quarter; a
  cache filling during the warm-up does not count against it;
- **nothing lost** (``bench/soak_load.py``): every message that got a ``chat_answer`` reached
  each member of its conversation exactly once per connection, through drops, reconnects and
  sync, with no gap, no conflict and nothing stored twice; and the server wrote no traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, TextIO

from bench.common import API_KEY, SECRET, rss_kib
from bench.soak_load import Load

MAX_USERS = 19_000  # one load process, under the cap of 20,000 open files per process


def start(data: Path, users: int, log: TextIO, pin: bool) -> tuple[subprocess.Popen[str], int]:
    """A migrated server on a fresh SQLite database with users 1..N, its log in ``log``."""
    env = {
        **os.environ,
        "IMHUB_DATA_DIR": str(data),
        "IMHUB_TOKEN_SECRET": SECRET,
        "IMHUB_API_KEY": API_KEY,
        "IMHUB_LOG_LEVEL": "WARNING",
        "IMHUB_PORT": "0",
        "IMHUB_LOGIN_TIMEOUT": "120",  # the first herd of logins waits in the writer's queue
    }
    subprocess.run(
        [sys.executable, "-m", "imhub", "migrate"], env=env, check=True, capture_output=True
    )
    with sqlite3.connect(data / "imhub.db") as db:
        db.executemany(
            "insert into users (username, mobile, head_img) values (?, '', '')",
            [(f"u{i}",) for i in range(1, users + 1)],
        )
    cmd = [sys.executable, "-m", "imhub", "serve"]
    if pin:
        cmd = ["taskset", "-c", "0", *cmd]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=log, text=True)
    assert proc.stdout is not None
    return proc, int(proc.stdout.readline().rsplit(":", 1)[1])


def sample(pid: int) -> tuple[int, int]:
    """The server's resident memory (KiB) and open file descriptors."""
    return rss_kib(pid), len(os.listdir(f"/proc/{pid}/fd"))


async def sampler(pid: int, load: Load, every: float, out: list[dict[str, Any]], file: Any) -> None:
    t0 = time.monotonic()
    while True:
        rss, fds = sample(pid)
        row = {
            "t": round(time.monotonic() - t0, 1),
            "rss_kib": rss,
            "fds": fds,
            "online": sum(1 for u in load.users.values() if u.state == "online"),
            "loadgen_rss_kib": rss_kib(os.getpid()),
            **{k: load.stats[k] for k in ("acked", "received", "reconnects")},
        }
        out.append(row)
        if file is not None:
            file.write(json.dumps(row) + "\n")
            file.flush()
        await asyncio.sleep(every)  # the sampling period itself


def flat(samples: list[dict[str, Any]], key: str, tolerance: float, slack: float) -> dict[str, Any]:
    """Median of the last quarter against the second quarter's (the first is warm-up)."""
    n = len(samples)
    if n < 8:
        return {"ok": False, "why": f"only {n} samples"}
    second = statistics.median(s[key] for s in samples[n // 4 : n // 2])
    last = statistics.median(s[key] for s in samples[3 * n // 4 :])
    growth = (last - second) / second
    return {
        "start": samples[0][key],
        "second_quarter": second,
        "last_quarter": last,
        "end": samples[-1][key],
        "growth_pct": round(100 * growth, 2),
        "ok": last <= second * (1 + tolerance) + slack,
    }


async def soak(args: argparse.Namespace, port: int, pid: int, samples_file: Any) -> dict[str, Any]:
    load = Load(
        port, args.users, peers=args.peers, groups=args.groups, group_size=args.group_size,
        group_share=args.group_share, seed=args.seed,
    )  # fmt: skip
    t0 = time.monotonic()
    await load.start()
    login_s = time.monotonic() - t0
    samples: list[dict[str, Any]] = []
    task = asyncio.create_task(sampler(pid, load, args.sample_every, samples, samples_file))
    await load.run(args.seconds, args.rate, args.drops, args.clean_share)
    task.cancel()
    rss, fds = sample(pid)
    await load.finish()
    stats = load.stats
    return {
        "scenario": "soak",
        "seconds": args.seconds,
        "users": args.users,
        "groups": len(load.group_plan),
        "login_s": round(login_s, 1),
        **stats,
        "errors": load.errors,
        "rss": flat(samples, "rss_kib", args.rss_tolerance, 0),
        "fds": flat(samples, "fds", 0.05, 10),
        "rss_after_load_kib": rss,
        "fds_after_load": fds,
        "failures": load.failures,
    }


def plot(samples: list[dict[str, Any]], out: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    minutes = [s["t"] / 60 for s in samples]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(minutes, [s["rss_kib"] / 1024 for s in samples], label="server RSS (MiB)")
    ax.set_xlabel("minutes")
    ax.set_ylabel("server RSS (MiB)")
    ax.set_ylim(0, 1.5 * max(s["rss_kib"] for s in samples) / 1024)  # below the fd curve
    ax.grid(True, alpha=0.3)
    fds = ax.twinx()
    fds.plot(minutes, [s["fds"] for s in samples], color="tab:orange", label="open files")
    fds.set_ylabel("server open files")
    fds.set_ylim(0, 1.15 * max(s["fds"] for s in samples))
    lines = ax.get_lines() + fds.get_lines()
    ax.legend(lines, [str(line.get_label()) for line in lines], loc="lower right")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--seconds", type=float, default=60, help="how long the load runs")
    p.add_argument("--users", type=int, default=2000, help="users, one connection each")
    p.add_argument("--rate", type=float, default=300, help="messages sent per second")
    p.add_argument("--drops", type=float, default=5, help="connections dropped per second")
    p.add_argument("--clean-share", type=float, default=0.2, help="drops that log out")
    p.add_argument("--peers", type=int, default=6, help="one-to-one partners per user")
    p.add_argument("--groups", type=int, default=None, help="groups (default users/20)")
    p.add_argument("--group-size", type=int, default=10)
    p.add_argument("--group-share", type=float, default=0.2, help="of a member's sends")
    p.add_argument("--sample-every", type=float, default=5, help="seconds between samples")
    p.add_argument("--rss-tolerance", type=float, default=0.10)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--pin", action="store_true", help="server on CPU 0, load on CPU 1")
    p.add_argument("--samples", type=Path, help="write the samples here (JSON lines)")
    p.add_argument("--plot", type=Path, help="draw the memory and fd curves here (PNG)")
    p.add_argument("--plot-only", type=Path, help="only redraw --plot from a samples file")
    args = p.parse_args(argv)
    if args.groups is None:
        args.groups = args.users // 20
    if args.users > MAX_USERS:
        p.error(f"at most {MAX_USERS} users in one load process (20,000 open files)")
    return args


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Start the server, soak it, stop it; the result, with the server log's tracebacks."""
    import uvloop

    with tempfile.TemporaryDirectory() as tmp:
        log_path = Path(tmp) / "server.log"
        with open(log_path, "w") as log:
            proc, port = start(Path(tmp), args.users, log, args.pin)
        samples_file = open(args.samples, "w") if args.samples else None  # noqa: SIM115
        try:
            if args.pin:
                os.sched_setaffinity(0, {1})
            result = uvloop.run(soak(args, port, proc.pid, samples_file))
        finally:
            proc.terminate()
            proc.wait(30)
            if samples_file is not None:
                samples_file.close()
        log_text = log_path.read_text()
    result["tracebacks"] = log_text.count("Traceback")
    if result["tracebacks"]:
        result["failures"]["log"] = [log_text[log_text.index("Traceback") :][:2000]]
    bad = ("lost", "late", "dup_live", "dup_stored", "conflicts", "misdelivered", "errors", "stuck")
    result["ok"] = (
        result["rss"]["ok"]
        and result["fds"]["ok"]
        and not result["tracebacks"]
        and not any(result.get(k) for k in bad)
    )
    return result


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    # Stopped early (timeout, kill): still stop the server, in run()'s finally.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if args.plot_only:
        samples = [json.loads(line) for line in args.plot_only.read_text().splitlines()]
        plot(samples, args.plot or Path("soak.png"), "imhub soak")
        return 0
    result = run(args)
    print(json.dumps(result), flush=True)
    if args.plot and args.samples:
        samples = [json.loads(line) for line in args.samples.read_text().splitlines()]
        title = f"imhub soak: {args.users} connections, {args.rate:g} msg/s, {args.drops:g} drops/s"
        plot(samples, args.plot, title)
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
