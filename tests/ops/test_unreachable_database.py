"""A database that cannot be reached at start (refused, a host name that does not resolve, a
server that accepts and then says nothing) stops ``imhub migrate`` and ``imhub serve`` with
one line that says so: no traceback, no password, exit status 1."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

PASSWORD = "S3cretPW"


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port whose listener takes connections (the kernel's backlog) and never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield sock.getsockname()[1]


def test_an_unreachable_database_is_one_line_at_start(tmp_path: Path, silent_port: int) -> None:
    refused = f"u:{PASSWORD}@127.0.0.1:1/im"
    cases = [
        ("migrate", f"postgresql+asyncpg://{refused}", "Connect call failed"),
        ("migrate", f"postgresql+asyncpg://u:{PASSWORD}@no-such-host.invalid/im", "known"),
        ("serve", f"postgresql+asyncpg://u:{PASSWORD}@127.0.0.1:{silent_port}/im", "within"),
        ("serve", f"mysql+asyncmy://{refused}", "Can't connect"),
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMHUB_")}
    procs = []  # started at once: the slowest waits out a connect timeout (5 s)
    for n, (command, url, _) in enumerate(cases):
        args = [command, "--data-dir", str(tmp_path / str(n)), "--database-url", url]
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "imhub", *args],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    for proc, (command, url, why) in zip(procs, cases, strict=True):
        out, _ = proc.communicate(timeout=60)
        lines = out.splitlines()
        assert proc.returncode == 1, (command, url, out)
        assert len(lines) == 1, (command, url, out)
        assert "cannot open the database: " in lines[0] and why in lines[0], (command, url, out)
        assert "Traceback" not in out and PASSWORD not in out
