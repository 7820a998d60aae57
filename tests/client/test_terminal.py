"""``imhub chat`` driven through pseudo-terminals, as a person would type."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator

import pexpect
import pytest

from tests.helpers import TIMEOUT, ServerProcess


def terminal(server: ServerProcess, address: str, user: int, *extra: str) -> pexpect.spawn:
    env = {
        **os.environ,
        "IMHUB_DATA_DIR": str(server.data_dir),
        "IMHUB_TOKEN_SECRET": server.env["IMHUB_TOKEN_SECRET"],
        "PROMPT_TOOLKIT_NO_CPR": "1",  # pexpect does not answer cursor position requests
    }
    child = pexpect.spawn(
        sys.executable,
        ["-m", "imhub", "chat", "--server", address, "--user", str(user), *extra],
        env=env,
        encoding="utf-8",
        timeout=TIMEOUT * 2,
        dimensions=(40, 140),
    )
    child.expect(f"logged in as user {user}")
    return child


@pytest.fixture
def terminals() -> Iterator[list[pexpect.spawn]]:
    started: list[pexpect.spawn] = []
    yield started
    for child in started:
        child.terminate(force=True)


def test_two_people_chat_in_terminals(
    server: ServerProcess, terminals: list[pexpect.spawn]
) -> None:
    alice, bob = server.add_user_blocking("alice"), server.add_user_blocking("bob")
    a = terminal(server, f"tcp://127.0.0.1:{server.port}", alice)
    b = terminal(server, f"ws://127.0.0.1:{server.port}/ws", bob)
    terminals += [a, b]
    a.expect(r"\[online\] no chat open")

    a.sendline(f"/open user {bob}")
    a.expect(r"opened chat (\d+) with user")
    chat = a.match.group(1)
    a.sendline("hello bob")
    a.expect("sent #1")
    b.expect(f"\\[chat {chat}\\] #1 user {alice}: hello bob")

    b.sendline("/chats")
    b.expect(f"chat {chat} with user {alice}: 1 unread")
    b.sendline(f"/open user {alice}")
    b.expect(f"opened chat {chat}")
    a.expect(f"user {bob} read up to #1")  # the read receipt
    b.sendline("hi alice")
    b.expect("sent #2")
    a.expect(f"#2 user {bob}: hi alice")

    a.sendline("/recall 1")
    a.expect("recalled #1")
    b.expect(f"user {alice} recalled #1")
    b.sendline("/history")
    b.expect(r"#1 user \d+: \(recalled\)")
    b.expect("#2 me: hi alice")

    b.sendline(f"/group crew {alice}")  # one other member: that is their one-to-one chat
    b.expect(f"opened chat {chat}")
    carol = server.add_user_blocking("carol")
    a.sendline(f"/group crew {bob},{carol}")
    a.expect(r"opened group (\d+)")
    team = a.match.group(1)
    b.expect(f"\\[group {team}\\] alice created crew")
    a.sendline("hello crew")
    b.expect(f"\\[group {team}\\] #2 user {alice}: hello crew")

    a.sendline("/quit")
    a.expect(pexpect.EOF)


def test_terminal_shows_reconnecting_and_comes_back(
    make_server: Callable[..., ServerProcess], terminals: list[pexpect.spawn]
) -> None:
    server = make_server()
    alice, bob = server.add_user_blocking("alice"), server.add_user_blocking("bob")
    a = terminal(server, f"tcp://127.0.0.1:{server.port}", alice)
    terminals.append(a)
    a.sendline(f"/open user {bob}")
    a.expect("opened chat")
    server.crash()
    a.expect("-- reconnecting --")
    a.expect(r"\[reconnecting\]")
    server.restart(same_port=True)
    a.expect("-- online --")
    a.sendline("back again")
    a.expect("sent #1")
