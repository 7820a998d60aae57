"""A server process whose log (stderr) a test reads line by line as it comes, to wait for an
event the server logs instead of sleeping."""

from __future__ import annotations

import asyncio
import json
import queue
import subprocess
import threading
import time
from collections.abc import Callable
from typing import Any

from tests.helpers import TIMEOUT, ServerProcess


class LoggedServer(ServerProcess):
    stderr = subprocess.PIPE

    def _spawn(self) -> None:
        super()._spawn()
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []  # every line read so far by ``wait_for``
        assert self.proc.stderr is not None
        threading.Thread(target=self._read, args=(self.proc.stderr,), daemon=True).start()

    def _read(self, stream: Any) -> None:
        for line in stream:
            self.lines.put(line.rstrip("\n"))

    def all_lines(self) -> list[str]:
        """Every line logged so far (those ``wait_for`` read, then the rest)."""
        while True:
            try:
                self.seen.append(self.lines.get_nowait())
            except queue.Empty:
                return list(self.seen)

    def _next_line(self, deadline: float) -> str:
        line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
        self.seen.append(line)
        return line

    async def wait_for(
        self, match: Callable[[dict[str, Any]], bool], timeout: float = TIMEOUT
    ) -> dict[str, Any]:
        """The next JSON log line (``log_format="json"``) that ``match`` accepts; every line
        on the way must be JSON. Raises ``queue.Empty`` after ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            line = await asyncio.to_thread(self._next_line, deadline)
            record = json.loads(line)  # one object per line, or this fails
            assert isinstance(record, dict), line
            if match(record):
                return record

    async def wait_for_text(self, part: str, timeout: float = TIMEOUT) -> str:
        """The next log line (``log_format="text"``) that contains ``part``."""
        deadline = time.monotonic() + timeout
        while True:
            line = await asyncio.to_thread(self._next_line, deadline)
            if part in line:
                return line

    def wait_exit(self, timeout: float) -> int:
        return self.proc.wait(timeout)
