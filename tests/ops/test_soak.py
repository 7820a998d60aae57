"""The soak in CI: ``bench/soak.py`` for half a minute with small numbers and a high churn of
drops, so that a leak per connection or per message shows in the server's memory or open
files, and anything lost, duplicated or misdelivered fails it (the hour runs by hand:
docs/performance.md, *Soak*)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.soak_load import Held

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(150)
def test_soak_memory_and_files_stay_flat_and_nothing_is_lost(tmp_path: Path) -> None:
    samples = tmp_path / "samples.jsonl"
    run = subprocess.run(
        [
            sys.executable, "-m", "bench.soak", "--seconds", "32", "--users", "300",
            "--rate", "150", "--drops", "20", "--sample-every", "1",
            "--rss-tolerance", "0.05", "--samples", str(samples),
        ],
        cwd=ROOT, capture_output=True, text=True, timeout=140,
    )  # fmt: skip
    assert run.stdout, run.stderr[-3000:]
    result = json.loads(run.stdout.splitlines()[-1])
    assert result["ok"], json.dumps(result, indent=1)
    assert run.returncode == 0
    # It did what it says: real churn, messages through it, everyone back and complete.
    assert result["drops_abrupt"] > 200 and result["drops_clean"] > 50
    assert result["acked"] == result["sent"] > 3000
    assert result["lost"] == result["late"] == result["tracebacks"] == 0
    assert len(samples.read_text().splitlines()) >= 25


def test_held_counts_each_seq_once_and_closes_gaps() -> None:
    held = Held()
    assert [held.add(s) for s in (1, 3, 4, 3, 2, 1)] == [True, True, True, False, True, False]
    assert (held.prefix, held.extra) == (4, set())
    assert held.add(6) and (held.prefix, held.extra) == (4, {6})
