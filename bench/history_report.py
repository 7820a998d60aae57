"""The history-growth bench's table (grown ÷ fresh), its plot, and its section of
docs/bench-results.md (``<!-- history -->``), as ``bench.run --only history`` writes them."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from bench.common import replace_section

DOCS = Path(__file__).resolve().parents[1] / "docs"
COLUMNS = {
    "p99_2000_ms": "p99 at 2,000/s",
    "p50_2000_ms": "p50 at 2,000/s",
    "tcp_msgs_per_s": "msgs/s TCP",
    "login_answer_ms": "login answer",
    "login_backlog_ms": "login + 1,000 backlog",
    "history_page_ms": "history page (20)",
    "sync_page_ms": "sync page (200)",
    "sync_all_ms": "whole sync (1,000)",
}


def medians(row: dict[str, Any]) -> dict[str, float]:
    return {k: statistics.median(r[k] for r in row["runs"]) for k in COLUMNS}


def _num(value: float) -> str:
    return f"{value:,.0f}" if value >= 1000 else f"{value:.2f}"


def summary(rows: list[dict[str, Any]]) -> str:
    """A Markdown table: per stored size, each operation's median ms [min–max] and, where a
    fresh database (size 0) was measured, the ratio grown ÷ fresh."""
    fresh = next((medians(r) for r in rows if r["stored"] == 0), None)
    head = "| stored messages | DB MiB | " + " | ".join(COLUMNS.values()) + " | complete |"
    lines = [head, "|---" * (len(COLUMNS) + 3) + "|"]
    for row in rows:
        med = medians(row)
        cells = []
        for key in COLUMNS:
            values = [r[key] for r in row["runs"]]
            cell = _num(med[key])
            if len(values) > 1:
                cell += f" [{_num(min(values))}–{_num(max(values))}]"
            if fresh and row["stored"] and fresh[key]:
                cell += f" (**{med[key] / fresh[key]:.2f}×**)"
            cells.append(cell)
        complete = all(r["complete"] for r in row["runs"])
        lines.append(
            f"| {row['stored']:,} | {row['db_mib']:,} | " + " | ".join(cells) + f" | {complete} |"
        )
    return "\n".join(lines) + "\n"


def plot(rows: list[dict[str, Any]], name: str = "history-growth.png") -> None:
    """p50/p99 at 2,000 msgs/s, and the timed operations, against stored messages."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs = [r["stored"] / 1e6 for r in rows]
    meds = [medians(r) for r in rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for key in ("p99_2000_ms", "p50_2000_ms"):
        left.plot(xs, [m[key] for m in meds], marker="o", label=COLUMNS[key])
    left.set_title("one-to-one send→delivery, 2,000 msgs/s offered")
    for key in ("login_backlog_ms", "login_answer_ms", "sync_all_ms", "sync_page_ms",
                "history_page_ms"):  # fmt: skip
        right.plot(xs, [m[key] for m in meds], marker="o", label=COLUMNS[key])
    right.set_title("operations (median of several)")
    for ax in (left, right):
        ax.set_xlabel("messages stored before the run (millions)")
        ax.set_ylabel("ms")
        ax.set_ylim(bottom=0)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(DOCS / name, dpi=110)
    plt.close(fig)


def write_section(rows: list[dict[str, Any]], about: dict[str, Any], repeat: int) -> str:
    """Replace (or add) the ``history`` section of docs/bench-results.md; returns it."""
    section = (
        "<!-- history -->\n## history (issue 14: cost as history grows)\n\n"
        f"Commit {about['commit']}; {repeat} run(s) each: median [min–max], and in bold the "
        "ratio to the fresh database. SQLite (WAL, synchronous=FULL); each run starts a "
        "server on a copy of a database made by `bench.history_gen` (about 100 messages "
        "per conversation; the pairs, the login user's 50 chats and a group of 1,000 among "
        "the longest), server on CPU 0, load generator on CPU 1. Login: a user with 1,000 "
        "unread messages over 50 conversations. Plot: docs/history-growth.png. Made by "
        "`python -m bench.run --only history`.\n\n" + summary(rows) + "<!-- /history -->\n"
    )
    replace_section(DOCS / "bench-results.md", "history", section)
    return section
