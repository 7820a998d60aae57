"""Issue 10, fault 2: an application with a state file, SIGKILLed while it works through a
backlog, and started again on the same state file.

The rule (at least once): a message counts as handed over when the application asks for the
next event (with ``events()``), or when its listener has returned; an application killed at
any instant gets again every message it had not finished with. So across the two runs nothing
is lost, the second run is in order, and a message the first run finished with comes again
only if it was the one being worked on at the kill (the last one the first run printed: the
kill can land between its print and the next ask).

The application is tests/client/consumer_app.py, a real process: ``got <body>`` on stdout is
it having finished with a message.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from imhub.client import ImClient, StateFileError
from tests.client.conftest import App
from tests.helpers import TIMEOUT, ServerProcess
from tests.proxy import Proxy

ROOT = Path(__file__).parents[2]
TOTAL = 1000  # m0 .. m999, waiting for the receiver before it first starts
KILL_AFTER = 300  # the first run is SIGKILLed once it has printed this many
END = "end"  # sent while the receiver is dead: the second run is through once it prints it
PHASE = TIMEOUT * 6  # the bound on each wait for the application's output


class Run:
    """One run of the consumer application; ``got`` is the bodies it printed, in order."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.got: list[str] = []

    @classmethod
    async def start(
        cls, server: ServerProcess, token: str, state_file: Path, mode: str, permits: int = 0
    ) -> Run:
        """Start the application; ``permits``: let it work on that many messages, no more
        (0: no limit)."""
        path = [str(ROOT), str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.client.consumer_app",
            "--server",
            f"tcp://127.0.0.1:{server.port}",
            "--token",
            token,
            "--state-file",
            str(state_file),
            "--mode",
            mode,
            *(["--paced"] if permits else []),
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(p for p in path if p)},
            stdin=asyncio.subprocess.PIPE if permits else None,
            stdout=asyncio.subprocess.PIPE,
        )
        if permits:
            assert proc.stdin is not None
            proc.stdin.write(b"\n" * permits)
        return cls(proc)

    def _take(self, line: bytes) -> None:
        text = line.decode()
        if text.startswith("got ") and text.endswith("\n"):  # a cut line was not printed
            self.got.append(text[4:-1])

    async def until(self, done: Callable[[], bool]) -> None:
        """Read its output until ``done()`` holds (or it ends, or PHASE passes)."""
        assert self.proc.stdout is not None
        async with asyncio.timeout(PHASE):
            while not done():
                line = await self.proc.stdout.readline()
                if not line:
                    raise AssertionError(f"the application ended; it printed {self.got[-5:]}")
                self._take(line)

    async def kill(self) -> None:
        """SIGKILL it, then take everything it had printed before it died."""
        if self.proc.returncode is None:
            self.proc.kill()
        await self.proc.wait()
        if self.proc.stdout is not None:
            rest = await asyncio.wait_for(self.proc.stdout.read(), PHASE)
            for line in rest.splitlines(keepends=True):
                self._take(line)


def index(body: str) -> int:
    assert body.startswith("m"), body
    return int(body[1:])


async def killed_mid_backlog(
    server: ServerProcess, make_app: Callable[..., App], tmp_path: Path, mode: str
) -> None:
    sender, receiver = await server.add_user("sender"), await server.add_user("receiver")
    app = make_app(f"tcp://127.0.0.1:{server.port}", server.token(sender))
    await app.client.start()
    for i in range(TOTAL):  # the receiver has never run: all of it is backlog
        await app.client.send_chat(to_user=receiver, body=f"m{i}")
    state_file = tmp_path / "receiver.imhub.json"
    token = server.token(receiver)

    runs: list[Run] = []
    try:
        # It may work on a few past the kill point, never through the whole backlog.
        first = await Run.start(server, token, state_file, mode, permits=KILL_AFTER + 20)
        runs.append(first)
        await first.until(lambda: len(first.got) >= KILL_AFTER)
        await first.kill()
        assert first.got == [f"m{i}" for i in range(len(first.got))]  # once each, in order
        # The kill must land mid-backlog, or the run proves nothing.
        assert len(first.got) < TOTAL, "the first run finished before the kill landed"

        await app.client.send_chat(to_user=receiver, body=END)
        second = await Run.start(server, token, state_file, mode)
        runs.append(second)
        await second.until(lambda: END in second.got)
        await second.kill()
    finally:
        for run in runs:
            await run.kill()

    got_again = [index(body) for body in second.got if body != END]
    last = len(first.got) - 1  # the last message the first run printed
    missing = sorted(set(range(TOTAL)) - set(range(len(first.got))) - set(got_again))
    assert not missing, (
        f"{len(missing)} messages never handed over: m{missing[0]} .. m{missing[-1]} "
        f"(first run printed m0 .. m{last}; second run printed {len(got_again)}, "
        f"from {f'm{got_again[0]}' if got_again else 'nothing'})"
    )
    assert got_again == sorted(set(got_again)), "the second run is out of order or repeats"
    twice = [i for i in got_again if i <= last]
    assert all(i >= last for i in twice), (
        f"{len(twice)} messages the first run had finished with came again: "
        f"m{twice[0]} .. m{twice[-1]} (the first run printed up to m{last})"
    )


@pytest.mark.timeout(120)
async def test_events_consumer_killed_mid_backlog_loses_nothing(
    server: ServerProcess, make_app: Callable[..., App], tmp_path: Path
) -> None:
    """``async for event in client.events()``: the state file must not move past a message
    before the loop has asked for the one after it."""
    await killed_mid_backlog(server, make_app, tmp_path, "events")


@pytest.mark.timeout(120)
async def test_listener_consumer_killed_mid_backlog_loses_nothing(
    server: ServerProcess, make_app: Callable[..., App], tmp_path: Path
) -> None:
    """A listener registered before ``start()``: the state file must not move past a message
    before the listener has returned from it."""
    await killed_mid_backlog(server, make_app, tmp_path, "listener")


async def test_a_send_is_saved_before_send_chat_gives_up_control(
    server: ServerProcess, make_app: Callable[..., App], tmp_path: Path
) -> None:
    """Issue 10, fault 2 (the sender's side): a sender killed while ``send_chat`` waited lost
    the message, which had been written to the state file only at the next loop tick. Now it
    is in the state file before the call first gives up control, so a kill at any later
    instant leaves it to be resent by the next start."""
    proxy = await Proxy(server.port).start()
    alice, bob = await server.add_user("alice"), await server.add_user("bob")
    state = tmp_path / "alice.imhub"
    a = make_app(proxy.url, server.token(alice), state_file=str(state))
    await a.client.start()
    proxy.stall()  # nothing is answered: the send stays in flight
    sending = asyncio.create_task(a.client.send_chat(to_user=bob, body="x", msg_id_client="kept"))
    await asyncio.sleep(0)  # one turn of the loop: the call has run up to its first wait
    assert not sending.done()
    with sqlite3.connect(state) as saved:  # read beside the client that holds it
        assert saved.execute("select msg_id_client from outbox").fetchall() == [("kept",)]
    proxy.flow()
    sent = await asyncio.wait_for(sending, TIMEOUT)
    assert sent.msg_id_client == "kept"
    await proxy.close()


async def test_a_state_file_is_one_clients_and_must_be_one(
    server: ServerProcess, tmp_path: Path
) -> None:
    """Two clients on one state file would hand over and resend each other's messages; a file
    that is not a state file would be overwritten. Both are refused when the client is made."""
    state = tmp_path / "alice.imhub"
    first = ImClient(f"tcp://127.0.0.1:{server.port}", "token", state_file=str(state))
    with pytest.raises(StateFileError, match="in use by another client"):
        ImClient(f"tcp://127.0.0.1:{server.port}", "token", state_file=str(state))
    await first.close()
    second = ImClient(f"tcp://127.0.0.1:{server.port}", "token", state_file=str(state))
    await second.close()  # the first one's close let it go

    foreign = tmp_path / "notes.txt"
    foreign.write_text("not a state file")
    with pytest.raises(StateFileError, match="not an imhub state file"):
        ImClient(f"tcp://127.0.0.1:{server.port}", "token", state_file=str(foreign))
    assert foreign.read_text() == "not a state file"
