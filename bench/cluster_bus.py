"""CPU per message of the cluster bus in this process: hearing news and publishing it, through
imhub's ``RedisBus`` and, for comparison, through redis-py's own pub/sub reads
(``get_message``) and pipelined PUBLISH, the bus's code before it read and published in batches.

    python -m bench.cluster_bus [--messages 50000]

A throw-away Redis (tests/services.py) on a free port; the other side of each measurement runs
in a subprocess, so only this process's CPU (``time.process_time``) is counted. Publishing also
gives Redis's own CPU per publication (``/proc/<pid>/stat``), with one subscriber
(``redis-cli``) taking what is published.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis.asyncio as aioredis
import uvloop

from imhub.cluster.bus import NODE_ID_BYTES
from imhub.cluster.redisbus import RedisBus
from tests.services import Redis

PAYLOAD = b"x" * 120  # about a one-to-one row's news


def _publish_elsewhere(url: str, channel: str, n: int) -> subprocess.Popen[bytes]:
    """``n`` publications from another process, pipelined 500 at a time."""
    script = (
        "import redis\n"
        f"r = redis.Redis.from_url({url!r})\n"
        "p = r.pipeline(transaction=False)\n"
        f"for i in range({n}):\n"
        f"    p.publish({channel!r}, b'f' * {NODE_ID_BYTES} + {PAYLOAD!r})\n"
        "    if i % 500 == 499:\n"
        "        p.execute()\n"
        "p.execute()\n"
    )
    return subprocess.Popen([sys.executable, "-c", script])


async def _nothing() -> None:
    return None


async def bus_receive(url: str, n: int) -> float:
    heard = 0
    done = asyncio.Event()

    def on_news(data: bytes) -> None:
        nonlocal heard
        heard += 1
        if heard == n:
            done.set()

    bus = RedisBus(url)
    await bus.start(on_news, _nothing, _nothing)
    await bus.subscribe(["bench:in"])
    begun = time.process_time()
    proc = _publish_elsewhere(url, "bench:in", n)
    await done.wait()
    used = time.process_time() - begun
    proc.wait()
    await bus.close()
    return used / n


async def redis_py_receive(url: str, n: int) -> float:
    client = aioredis.Redis.from_url(url)
    pubsub = client.pubsub()
    await pubsub.subscribe("bench:in")
    await pubsub.get_message(timeout=5)  # the confirmation
    begun = time.process_time()
    proc = _publish_elsewhere(url, "bench:in", n)
    heard = 0
    while heard < n:
        msg = await pubsub.get_message(timeout=1.0)
        if msg is not None and msg["type"] == "message":
            heard += 1
    used = time.process_time() - begun
    proc.wait()
    await pubsub.aclose()
    await client.aclose()
    return used / n


async def bus_publish(url: str, n: int) -> float:
    bus = RedisBus(url)
    await bus.start(lambda data: None, _nothing, _nothing)
    data = bus.node_id + PAYLOAD
    begun = time.process_time()
    for start in range(0, n, 500):
        for _ in range(min(500, n - start)):
            bus.publish("bench:out", data)
        for _ in range(1_000_000):  # the publisher's turns until this round is out
            if bus.published >= min(start + 500, n):
                break
            await asyncio.sleep(0)
    used = time.process_time() - begun
    await bus.close()
    return used / n


async def redis_py_publish(url: str, n: int) -> float:
    client = aioredis.Redis.from_url(url)
    data = b"f" * NODE_ID_BYTES + PAYLOAD
    begun = time.process_time()
    for start in range(0, n, 500):
        pipe = client.pipeline(transaction=False)
        for _ in range(min(500, n - start)):
            pipe.publish("bench:out", data)
        await pipe.execute()
    used = time.process_time() - begun
    await client.aclose()
    return used / n


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def main(server: Redis, n: int) -> None:
    url = server.url
    for name, measure in (
        ("hear, RedisBus", bus_receive),
        ("hear, redis-py get_message", redis_py_receive),
    ):
        per = await measure(url, n)
        print(f"{name:<28} {per * 1e6:6.2f} us CPU per message ({n} messages)")
    for name, measure in (
        ("publish, RedisBus", bus_publish),
        ("publish, redis-py pipeline", redis_py_publish),
    ):
        redis_before = _cpu_seconds(server.pid)
        per = await measure(url, n)
        at_redis = (_cpu_seconds(server.pid) - redis_before) / n
        print(
            f"{name:<28} {per * 1e6:6.2f} us CPU per message ({n} messages); "
            f"Redis {at_redis * 1e6:.2f} us"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=50_000)
    args = parser.parse_args()
    server = Redis(Path(tempfile.mkdtemp(prefix="imhub-bus-bench-")))
    taker = subprocess.Popen(  # takes what is published, as a node would
        ["redis-cli", "-p", str(server.port), "subscribe", "bench:out"],
        stdout=subprocess.DEVNULL,
    )
    try:
        uvloop.run(main(server, args.messages))
    finally:
        taker.terminate()
        taker.wait()
        server.stop()
