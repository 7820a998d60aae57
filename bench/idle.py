"""Idle logged-in connections: server memory per connection, connect rate, and that every
connection still receives (one notice to every user, counted).

The load generator is spread over several processes, each connecting from its own loopback
address (127.0.0.2, .3, …), because every process here is capped at 20,000 open files.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing as mp
import time
from typing import Any

from bench.common import API_KEY, SECRET, connect, rss_kib
from imhub.service.auth import TokenAuthority

PER_PROCESS = 8000
NOTICE_BATCH = 10_000  # the notice API's limit of targets per call


def _worker(port: int, transport: str, first: int, count: int, host: str, conn: Any) -> None:
    import uvloop

    uvloop.run(_hold(port, transport, first, count, host, conn))


async def _hold(port: int, transport: str, first: int, count: int, host: str, pipe: Any) -> None:
    """Connect and log in users first..first+count-1, report, then count one notice each."""
    auth = TokenAuthority(SECRET)
    logged = asyncio.Event()
    noticed = asyncio.Event()
    seen = {"logins": 0, "notices": 0}

    def on(msg: dict[str, Any]) -> None:
        if msg["msgType"] == 1:
            seen["logins"] += 1
            if seen["logins"] == count:
                logged.set()
        elif msg["msgType"] == 7 and "noticeId" in msg:
            seen["notices"] += 1
            if seen["notices"] == count:
                noticed.set()

    conns = []
    t0 = time.perf_counter()

    async def one(user: int) -> None:
        c = await connect(transport, port, on, host)
        c.write({"msgType": 1, "token": auth.mint(user), "backlog": False})
        conns.append(c)

    users = list(range(first, first + count))
    for i in range(0, count, 100):  # 100 connects in flight at a time
        try:
            await asyncio.gather(*(one(u) for u in users[i : i + 100]))
        except OSError as exc:
            pipe.send({"error": f"connect: {exc}", "connected": len(conns)})
            return
    await asyncio.wait_for(logged.wait(), 300)
    pipe.send({"connected": count, "seconds": time.perf_counter() - t0})
    pipe.recv()  # the parent has measured memory and sent the notice
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(noticed.wait(), 120)
    pipe.send({"notices": seen["notices"]})
    pipe.recv()  # stay connected until told


async def idle(
    port: int, server_pid: int, transport: str = "tcp", total: int = 10_000
) -> dict[str, Any]:
    import aiohttp

    ctx = mp.get_context("spawn")
    before = rss_kib(server_pid)
    workers = []
    first = 1
    i = 0
    t0 = time.perf_counter()
    while first <= total:
        count = min(PER_PROCESS, total - first + 1)
        parent, child = ctx.Pipe()
        host = f"127.0.0.{2 + i}"
        proc = ctx.Process(target=_worker, args=(port, transport, first, count, host, child))
        proc.start()
        workers.append((proc, parent, count))
        first += count
        i += 1
    loop = asyncio.get_running_loop()
    reports = [await loop.run_in_executor(None, p.recv) for _, p, _ in workers]
    connect_s = time.perf_counter() - t0
    connected = sum(r.get("connected", 0) for r in reports)
    errors = [r["error"] for r in reports if "error" in r]
    after = rss_kib(server_pid)
    received = 0
    if not errors:
        async with aiohttp.ClientSession() as http:
            for start in range(1, total + 1, NOTICE_BATCH):
                ids = list(range(start, min(total, start + NOTICE_BATCH - 1) + 1))
                async with http.post(
                    f"http://127.0.0.1:{port}/api/v1/notices",
                    json={"toUserIds": ids, "body": "ping"},
                    headers={"X-Api-Key": API_KEY},
                ) as r:
                    assert r.status == 200, await r.text()
        for _, p, _ in workers:
            p.send("count")
        counts = [await loop.run_in_executor(None, p.recv) for _, p, _ in workers]
        received = sum(c["notices"] for c in counts)
    for proc, p, _ in workers:
        p.send("bye")
        proc.join(30)
    return {
        "scenario": "idle_connections",
        "transport": transport,
        "connections": connected,
        "errors": errors[:3],
        "server_rss_mib": round(after / 1024, 1),
        "kib_per_connection": round((after - before) / max(1, connected), 2),
        "connects_per_s": round(connected / connect_s),
        "all_received": received == connected == total,
    }
