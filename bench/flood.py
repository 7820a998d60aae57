"""Floods (issue 13): a well-behaved pair's send→delivery p99 measured alone, then while one
client floods messages as fast as it can, then while one address floods logins.

The server runs with its default limits, except that loopback is not exempt from the
per-address ones (``limit_exempt = ""``): the pair connects from 127.0.0.1, the message
flooder from 127.0.0.2 (and reconnects whenever it is closed), the login flooder from
127.0.0.3. The flooders are separate processes at a lower priority than the pair, on the
load generator's core, so what the pair measures is the server, not its neighbour.

    python -m bench.run --only flood          # or: python -m bench.flood [--seconds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import SECRET, connect, pin_self, start_server, stop_server
from bench.p2p import percentile
from imhub.config import Config
from imhub.service.auth import TokenAuthority

PAIR_RATE = 100  # messages per second from the pair's sender: a busy, well-behaved client
FLOODER, VICTIM = 3, 4  # the message flooder and whom it writes to
LOGIN_USERS = range(5, 105)  # the login flooder's tokens
LOGINS_IN_FLIGHT = 100
HEADER = struct.Struct(">I")


async def pair_p99(port: int, seconds: float) -> dict[str, Any]:
    """Users 1 → 2 at ``PAIR_RATE`` for ``seconds``: send→delivery p50/p99 (ms)."""
    auth = TokenAuthority(SECRET)
    sent_at: dict[int, int] = {}
    got_ms: list[float] = []
    refused = [0]
    logins = asyncio.Event()
    done = asyncio.Event()
    seen = [0]
    total = int(seconds * PAIR_RATE)

    def on_sender(msg: dict[str, Any]) -> None:
        if msg["msgType"] == 1:
            logins.set()
        elif msg["msgType"] == 8:
            refused[0] += 1

    def on_receiver(msg: dict[str, Any]) -> None:
        if msg["msgType"] in (3, 7):
            got_ms.append((time.perf_counter_ns() - sent_at[int(msg["body"])]) / 1e6)
            if len(got_ms) == total:
                done.set()

    receiver = await connect("tcp", port, on_receiver)
    receiver.write({"msgType": 1, "token": auth.mint(2), "backlog": False})
    sender = await connect("tcp", port, on_sender)
    sender.write({"msgType": 1, "token": auth.mint(1), "backlog": False})
    await asyncio.wait_for(logins.wait(), 30)
    t0 = time.perf_counter()
    for n in range(total):
        delay = t0 + n / PAIR_RATE - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        sent_at[n] = time.perf_counter_ns()
        sender.write({"msgType": 3, "toUserId": 2, "msgIdClient": f"p{n}-{t0}", "body": str(n)})
        seen[0] += 1
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(done.wait(), 30)
    for conn in (sender, receiver):
        if conn.transport is not None:
            conn.transport.close()
    return {
        "p50_ms": round(percentile(got_ms, 0.50), 2),
        "p99_ms": round(percentile(got_ms, 0.99), 2),
        "sent": total,
        "delivered": len(got_ms),
        "refused": refused[0],
    }


async def flood_messages(port: int, seconds: float) -> dict[str, int]:
    """As fast as it can, for ``seconds``; reconnects and logs in again whenever closed."""
    auth = TokenAuthority(SECRET)
    counts = {"written": 0, "answered": 0, "refused_429": 0, "closed": 0, "connects": 0}
    login = json.dumps({"msgType": 1, "token": auth.mint(FLOODER), "backlog": False}).encode()
    stop = time.perf_counter() + seconds
    n = 0
    while time.perf_counter() < stop:
        counts["connects"] += 1
        try:
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", port, local_addr=("127.0.0.2", 0)
            )
        except OSError:
            await asyncio.sleep(0.01)
            continue
        reading = asyncio.ensure_future(_count(reader, counts))
        writer.write(HEADER.pack(len(login)) + login)
        try:
            while time.perf_counter() < stop and not reading.done():
                batch = []
                for _ in range(256):
                    body = b'{"msgType":3,"toUserId":%d,"msgIdClient":"f%d","body":"flood"}' % (
                        VICTIM,
                        n,
                    )
                    batch.append(HEADER.pack(len(body)) + body)
                    n += 1
                writer.writelines(batch)
                counts["written"] += len(batch)
                await writer.drain()
        except ConnectionError:
            pass
        counts["closed"] += reading.done()
        writer.close()
        reading.cancel()
    return counts


async def _count(reader: asyncio.StreamReader, counts: dict[str, int]) -> None:
    try:
        while True:
            (size,) = HEADER.unpack(await reader.readexactly(4))
            msg = json.loads(await reader.readexactly(size))
            if msg["msgType"] == 4:
                counts["answered"] += 1
            elif msg["msgType"] == 8 and msg.get("code") == 429:
                counts["refused_429"] += 1
    except (asyncio.IncompleteReadError, ConnectionError):
        return


async def flood_logins(port: int, seconds: float) -> dict[str, int]:
    """``LOGINS_IN_FLIGHT`` connections at a time from one address, each logging in and
    closing, for ``seconds``."""
    auth = TokenAuthority(SECRET)
    frames = []
    for user in LOGIN_USERS:
        body = json.dumps({"msgType": 1, "token": auth.mint(user), "backlog": False}).encode()
        frames.append(HEADER.pack(len(body)) + body)
    counts = {"attempts": 0, "logged_in": 0, "refused_429": 0, "cut": 0}
    stop = time.perf_counter() + seconds

    async def one_after_another(k: int) -> None:
        while time.perf_counter() < stop:
            counts["attempts"] += 1
            try:
                reader, writer = await asyncio.open_connection(
                    "127.0.0.1", port, local_addr=("127.0.0.3", 0)
                )
                writer.write(frames[(k + counts["attempts"]) % len(frames)])
                (size,) = HEADER.unpack(await reader.readexactly(4))
                msg = json.loads(await reader.readexactly(size))
                if msg.get("code") == 0:
                    counts["logged_in"] += 1
                else:
                    counts["refused_429" if msg.get("code") == 429 else "cut"] += 1
                writer.close()
            except (asyncio.IncompleteReadError, OSError):
                counts["cut"] += 1  # closed at once: over the address's connection rate

    await asyncio.gather(*(one_after_another(k) for k in range(LOGINS_IN_FLIGHT)))
    return counts


def _flooder(kind: str, port: int, seconds: float) -> subprocess.Popen[str]:
    pin = ["taskset", "-c", "1"] if os.path.exists("/usr/bin/taskset") else []
    return subprocess.Popen(
        [*pin, "nice", "-n", "10", sys.executable, "-m", "bench.flood", "--" + kind,
         str(port), str(seconds)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
    )  # fmt: skip


def _limits_env() -> dict[str, str]:
    """The server's default limits (bench/common.py lifts the message ones for capacity),
    loopback not exempt."""
    d = Config()
    return {
        "IMHUB_MSG_RATE": str(d.msg_rate),
        "IMHUB_USER_MSG_RATE": str(d.user_msg_rate),
        "IMHUB_API_RATE": str(d.api_rate),
        "IMHUB_LIMIT_EXEMPT": "",
        "IMHUB_LOGIN_TIMEOUT": str(d.login_timeout),
    }


def run(seconds: float = 5, server_path: str = "") -> dict[str, Any]:
    """The three measurements on one fresh server (users 1 to 104); ``server_path``: the
    server's code from there (``PYTHONPATH``), e.g. an older checkout's ``src``, to compare."""
    import uvloop

    env = _limits_env()
    if server_path:
        env["PYTHONPATH"] = server_path
    with tempfile.TemporaryDirectory() as tmp:
        proc, port = start_server(Path(tmp), users=max(LOGIN_USERS), **env)
        try:
            pin_self()
            uvloop.run(pair_p99(port, 1))  # warm-up, not counted
            alone = uvloop.run(pair_p99(port, seconds))
            flooder = _flooder("messages", port, seconds + 1)
            time.sleep(0.5)  # it is flooding by now
            flooded = uvloop.run(pair_p99(port, seconds))
            messages = json.loads(flooder.communicate(timeout=seconds + 60)[0])
            flooder = _flooder("logins", port, seconds + 1)
            time.sleep(0.5)
            logins_flooded = uvloop.run(pair_p99(port, seconds))
            logins = json.loads(flooder.communicate(timeout=seconds + 60)[0])
        finally:
            server_cpu = stop_server(proc)
    p99 = alone["p99_ms"] or 0.01
    return {
        "scenario": "flood",
        "pair_rate_per_s": PAIR_RATE,
        "p99_alone_ms": alone["p99_ms"],
        "p99_message_flood_ms": flooded["p99_ms"],
        "p99_login_flood_ms": logins_flooded["p99_ms"],
        "ratio_message_flood": round(flooded["p99_ms"] / p99, 2),
        "ratio_login_flood": round(logins_flooded["p99_ms"] / p99, 2),
        "pair_complete": all(
            r["delivered"] == r["sent"] and not r["refused"]
            for r in (alone, flooded, logins_flooded)
        ),
        "flood_written": messages["written"],
        "flood_stored": messages["answered"],
        "flood_refused_429": messages["refused_429"],
        "flood_reconnects": messages["connects"],
        "login_attempts": logins["attempts"],
        "logins_ok": logins["logged_in"],
        "logins_cut": logins["cut"] + logins["refused_429"],
        "server_cpu_s": server_cpu,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--server-path", default="", help="PYTHONPATH of the server's code")
    parser.add_argument("--messages", nargs=2, metavar=("PORT", "SECONDS"))
    parser.add_argument("--logins", nargs=2, metavar=("PORT", "SECONDS"))
    args = parser.parse_args()
    import uvloop

    if args.messages:
        port, secs = int(args.messages[0]), float(args.messages[1])
        print(json.dumps(uvloop.run(flood_messages(port, secs))))
    elif args.logins:
        port, secs = int(args.logins[0]), float(args.logins[1])
        print(json.dumps(uvloop.run(flood_logins(port, secs))))
    else:
        print(json.dumps(run(args.seconds, args.server_path)))


if __name__ == "__main__":
    main()
