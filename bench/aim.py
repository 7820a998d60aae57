"""Aiming a SIGKILL at a moment that matters, by watching what processes do in the kernel.

``/proc/PID/task/TID/syscall`` says which system call each thread is in right now and its
first argument (for the calls below, a file descriptor), and ``/proc/PID/fd/N`` which file that
descriptor is. So the killer polls the threads of the processes that do the writing and fires
the moment one of them is inside a write or a sync of the file in question:

- a SQLite commit: imhub's writer thread in ``pwrite64``/``fdatasync``/``fsync`` on the
  ``-wal`` file (``synchronous=FULL``: the transaction's frames are written, then synced);
- a SQLite checkpoint: any imhub thread writing or syncing the main database file (in WAL mode
  only a checkpoint writes it);
- a PostgreSQL commit: a backend serving imhub's database writing or syncing a file under
  ``pg_wal/`` (a commit flushes the WAL; imhub is then waiting for the COMMIT's answer);
- a PostgreSQL checkpoint: the checkpointer process writing or syncing a data file under
  ``base/`` while a ``CHECKPOINT`` runs.

Linux on x86_64 only (the system call numbers); elsewhere the killer fires at random.
"""

from __future__ import annotations

import contextlib
import os
import platform
import signal
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

# x86_64 system call numbers
WRITES = {1: "write", 18: "pwrite64", 20: "writev", 296: "pwritev", 328: "pwritev2"}
SYNCS = {74: "fsync", 75: "fdatasync", 277: "sync_file_range"}
WATCHED = {**WRITES, **SYNCS}
SUPPORTED = platform.machine() == "x86_64" and os.path.isdir("/proc/self/task")

# A file imhub or PostgreSQL touches, by its path: does it count?
Target = Callable[[str], bool]


@dataclass(frozen=True)
class Hit:
    """Where a kill landed: the system call, its file, and how long the aim took."""

    call: str
    path: str
    waited: float

    def __str__(self) -> str:
        return f"{self.call}({os.path.basename(self.path)}) after {self.waited * 1000:.0f} ms"


class Watch:
    """The threads of some processes, and the files behind their descriptors (cached; read
    again when a descriptor is new)."""

    def __init__(self, pids: Iterable[int]) -> None:
        self.pids = list(pids)
        self._files: dict[tuple[int, int], str] = {}
        self._tasks: list[tuple[int, str]] = []
        self.refresh()

    def refresh(self) -> None:
        self._tasks = []
        for pid in self.pids:
            with contextlib.suppress(OSError):
                for tid in os.listdir(f"/proc/{pid}/task"):
                    self._tasks.append((pid, f"/proc/{pid}/task/{tid}/syscall"))

    def file(self, pid: int, fd: int) -> str:
        key = (pid, fd)
        path = self._files.get(key)
        if path is None:
            try:
                path = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                return ""
            self._files[key] = path
        return path

    def calls(self) -> Iterable[tuple[str, str]]:
        """(system call, file) for every watched thread inside a watched call now."""
        for pid, where in self._tasks:
            try:
                with open(where, "rb") as f:
                    line = f.read()
            except OSError:
                continue
            fields = line.split(b" ", 2)
            if len(fields) < 2 or not fields[0].isdigit():
                continue  # "running", or -1 (blocked outside a call)
            call = WATCHED.get(int(fields[0]))
            if call is not None:
                yield call, self.file(pid, int(fields[1], 16))


def kill_when(victim: int, watched: Iterable[int], target: Target, within: float) -> Hit | None:
    """SIGKILL ``victim`` the moment a thread of ``watched`` is in a write or sync of a file
    ``target`` accepts; after ``within`` seconds without one, kill anyway (None). Blocking:
    run it in a thread."""
    started = time.monotonic()
    deadline = started + within
    if SUPPORTED:
        watch = Watch(watched)
        rounds = 0
        while time.monotonic() < deadline:
            for call, path in watch.calls():
                if target(path):
                    os.kill(victim, signal.SIGKILL)
                    return Hit(call, path, time.monotonic() - started)
            rounds += 1
            if rounds % 200 == 0:
                watch.refresh()  # threads come and go (aiosqlite's, a pool's)
    os.kill(victim, signal.SIGKILL)
    return None
