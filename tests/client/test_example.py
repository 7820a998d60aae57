"""The example application in docs/client.md runs and answers."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from tests.helpers import ServerProcess

EXAMPLE = Path(__file__).parents[2] / "examples" / "echo_bot.py"


async def test_echo_bot_answers(server: ServerProcess) -> None:
    bot = await server.add_user("bot")
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(EXAMPLE),
        "--server",
        f"tcp://127.0.0.1:{server.port}",
        "--token",
        server.token(bot),
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 20)
        assert f"online as user {bot}".encode() in line
        _, me = await server.online("me", "ws")
        await me.chat(bot, "q1", "ping")
        answer = await me.expect(7)
        assert answer["body"] == "echo: ping" and answer["fromUserId"] == bot
    finally:
        proc.terminate()
        await proc.wait()
