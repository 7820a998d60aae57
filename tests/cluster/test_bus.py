"""The Redis bus on its own: news keeps its order through the one-call publisher and the
buffered reader, a restarted Redis (its script cache empty) gets news again, and the reader
takes what is already parsed without a read per message (the fast path redis-py hides)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import redis.asyncio as aioredis

from imhub.cluster.bus import NODE_ID_BYTES
from imhub.cluster.redisbus import PUBLISH_AT_ONCE, PUBLISH_BYTES, RedisBus, _buffered_replies
from tests.services import Redis


async def _nothing() -> None:
    return None


class Heard:
    """What a bus heard, and a wait for what is to come."""

    def __init__(self) -> None:
        self.items: list[bytes] = []
        self._more = asyncio.Event()

    def __call__(self, data: bytes) -> None:
        self.items.append(data)
        self._more.set()

    async def until(self, ready: Callable[[list[bytes]], bool], timeout: float = 10) -> None:
        async with asyncio.timeout(timeout):
            while not ready(self.items):
                self._more.clear()
                await self._more.wait()


async def _buses(url: str, channel: str) -> tuple[RedisBus, Heard, RedisBus]:
    """A listener on ``channel`` and a talker."""
    heard = Heard()
    listener = RedisBus(url)
    await listener.start(heard, _nothing, _nothing)
    await listener.subscribe([channel])
    talker = RedisBus(url)
    await talker.start(lambda data: None, _nothing, _nothing)
    return listener, heard, talker


async def test_news_keeps_its_order_across_rounds_larger_than_one_call(
    redis_server: Redis,
) -> None:
    listener, heard, talker = await _buses(redis_server.url, "imhub:u:1")
    try:
        n = PUBLISH_AT_ONCE * 2 + 7  # one round, three calls
        for i in range(n):
            talker.publish("imhub:u:1", talker.node_id + b"%d" % i)
        await heard.until(lambda items: len(items) >= n)
        assert [h[NODE_ID_BYTES:] for h in heard.items] == [b"%d" % i for i in range(n)]
        assert talker.published == n and talker.dropped == 0
        own = talker.node_id + b"mine"
        listener.publish("imhub:u:1", listener.node_id + b"mine")  # its own: dropped
        talker.publish("imhub:u:1", own)
        await heard.until(lambda items: items[-1] == own)
        assert heard.items.count(own) == 1 and len(heard.items) == n + 1
        big = [talker.node_id + bytes([i]) * (PUBLISH_BYTES // 3) for i in range(8)]
        for data in big:  # a round of several calls by size
            talker.publish("imhub:u:1", data)
        await heard.until(lambda items: len(items) == n + 1 + len(big))
        assert heard.items[n + 1 :] == big
    finally:
        await talker.close()
        await listener.close()


async def test_a_restarted_redis_gets_news_again(redis_server: Redis) -> None:
    """The publisher's script is gone with the old Redis: it is loaded again."""
    listener, heard, talker = await _buses(redis_server.url, "imhub:u:2")
    try:
        talker.publish("imhub:u:2", talker.node_id + b"before")
        await heard.until(bool)
        redis_server.restart()
        for _ in range(1000):  # both notice the restart and make their links again
            if listener.outages and listener.up and talker.up:
                break
            await asyncio.sleep(0.01)
        for _ in range(100):  # the talker publishes until it is heard: one publication more
            talker.publish("imhub:u:2", talker.node_id + b"after")
            if heard.items[-1].endswith(b"after"):
                break
            await asyncio.sleep(0.05)
        assert heard.items[-1].endswith(b"after") and listener.outages == 1
    finally:
        # It hung here for a minute: redis-py swallowed the cancellation of the publisher,
        # which had the last publication in flight.
        async with asyncio.timeout(2):
            await talker.close()
            await listener.close()


async def test_replies_already_read_are_taken_without_a_read_each(redis_server: Redis) -> None:
    client = aioredis.Redis.from_url(redis_server.url)
    pubsub = client.pubsub()
    try:
        await pubsub.subscribe("imhub:u:3")
        assert (await pubsub.get_message(timeout=5))["type"] == "subscribe"
        async with client.pipeline(transaction=False) as pipe:
            for i in range(3):
                pipe.publish("imhub:u:3", b"%d" % i)
            await pipe.execute()
        conn = pubsub.connection
        first = await conn.read_response(timeout=5, disconnect_on_error=False, push_request=True)
        buffered = _buffered_replies(conn)
        rest = []
        async with asyncio.timeout(5):
            while len(rest) < 2:  # the three may arrive in more than one segment
                reply = buffered()
                if reply is None:
                    reply = await conn.read_response(timeout=5, push_request=True)
                rest.append(reply)
        assert [first[2], *(r[2] for r in rest)] == [b"0", b"1", b"2"]
        assert buffered() is None  # nothing more: not a reply, not an error
        assert buffered.__name__ == "next_reply"  # the fast path exists in this redis-py
    finally:
        await pubsub.aclose()
        await client.aclose()


async def test_a_redis_that_refuses_scripts_gets_news_pipelined(redis_server: Redis) -> None:
    """An ACL without EVAL (as some managed services set): the publisher says so once and
    pipelines its PUBLISHes instead."""
    admin = aioredis.Redis.from_url(redis_server.url)
    await admin.execute_command("ACL", "SETUSER", "default", "-@scripting")
    listener, heard, talker = await _buses(redis_server.url, "imhub:u:4")
    try:
        for i in range(3):
            talker.publish("imhub:u:4", talker.node_id + b"%d" % i)
        await heard.until(lambda items: len(items) == 3)
        assert [h[NODE_ID_BYTES:] for h in heard.items] == [b"0", b"1", b"2"]
        assert talker.up and talker.outages == 0 and not talker._scripts
    finally:
        await talker.close()
        await listener.close()
        await admin.aclose()
