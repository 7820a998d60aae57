"""The Redis implementation of the bus: pub/sub channels per user and per group, a broadcast
channel for control news, and the node's presence (``presence.RedisPresence``).

Pub/sub, not streams: news that a node misses is never needed from Redis, because the database
holds every row and each connection's floors say what it lacks (docs/architecture.md,
*Cluster*). What matters is knowing that something may have been missed: any loss of the
connection (an error, a silent link found by the ping) ends it, and the node re-subscribes and
catches up from storage (``on_resumed``). redis-py's own retries are off for that reason: a
reconnection it made by itself would hide the gap.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import NoScriptError, RedisError, ResponseError

from imhub.cluster.bus import NODE_ID_BYTES
from imhub.cluster.presence import RedisPresence

log = logging.getLogger(__name__)

PING_EVERY = 2.0  # s: a ping on the subscriber link when it is quiet
DEAD_AFTER = 6.0  # s without any answer on the subscriber link: it is dead
BACKOFF_MIN, BACKOFF_MAX = 0.1, 1.0  # s: a returning Redis is used within a second


# One command for a round's publications (channel, data, channel, data, ...): redis-py spent
# 13-20 us of this process's CPU on each PUBLISH of a pipeline, this about 5, and Redis about
# 0.6 us more than for a pipelined PUBLISH (bench/cluster_bus.py). A call of PUBLISH_AT_ONCE
# holds Redis about a millisecond.
PUBLISH_AT_ONCE = 500
PUBLISH_BYTES = 1024 * 1024  # and at most about this much news (one larger item goes alone)
PUBLISH_ALL = """
for i = 1, #ARGV, 2 do redis.call('PUBLISH', ARGV[i], ARGV[i + 1]) end
"""


def new_node_id() -> bytes:
    return secrets.token_hex(NODE_ID_BYTES // 2).encode()


class RedisBus:
    def __init__(self, url: str, prefix: str = "imhub:", node_id: bytes | None = None) -> None:
        self.url = url
        self.prefix = prefix
        self.node_id = node_id or new_node_id()
        self.clustered = True
        self._up = False
        self._redis = aioredis.Redis.from_url(
            url,
            retry=Retry(NoBackoff(), 0),
            socket_connect_timeout=2.0,
            socket_timeout=5.0,
            socket_keepalive=True,
        )
        self.presence = RedisPresence(self._redis, prefix, self.node_id.decode())
        self._publish_all = self._redis.register_script(PUBLISH_ALL)
        self._scripts = True  # False once Redis refused the script
        self._channels: set[str] = set()
        self._waiting: dict[str, list[asyncio.Future[None]]] = {}
        self._pubsub: Any = None
        self._outbox: list[tuple[str, bytes]] = []
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._on_news: Callable[[bytes], None] = lambda data: None
        self._on_resumed: Callable[[], Awaitable[None]] | None = None
        self._closing = False
        self._linked = False  # the link was made since the last failure
        # Counters for /metrics.
        self.published = 0
        self.received = 0
        self.dropped = 0  # publications made while Redis was unavailable (storage has them)
        self.outages = 0

    @property
    def up(self) -> bool:
        return self._up

    async def start(
        self,
        on_news: Callable[[bytes], None],
        on_resumed: Callable[[], Awaitable[None]],
        on_node_gone: Callable[[], Awaitable[None]],
    ) -> None:
        """Connect (waiting at most a few seconds for the first time: a node may start while
        Redis is down, and then serves its own users until it comes)."""
        self._on_news = on_news
        self._on_resumed = on_resumed
        first = asyncio.get_running_loop().create_future()
        self._tasks = [
            asyncio.create_task(self._subscriber(first), name="imhub-bus-subscriber"),
            asyncio.create_task(self._publisher(), name="imhub-bus-publisher"),
            asyncio.create_task(
                self.presence.keep_alive(lambda: self._up, on_node_gone),
                name="imhub-bus-alive",
            ),
        ]
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(3.0):
                await first

    async def close(self) -> None:
        self._closing = True
        with contextlib.suppress(RedisError, OSError):
            await self.presence.leave()
        # redis-py can swallow a cancellation that lands while a command is in flight (its
        # task then goes on, to its next wait): cancelled again until it ends.
        pending = set(self._tasks)
        for _ in range(20):
            for task in pending:
                task.cancel()
            _, pending = await asyncio.wait(pending, timeout=0.25)
            if not pending:
                break
        for task in self._tasks:
            if task.done() and not task.cancelled():
                task.exception()  # retrieved: failures were logged where they happened
        with contextlib.suppress(RedisError, OSError):
            await self._redis.aclose()

    # Publishing: a queue drained by one task, one script call per round (at most
    # PUBLISH_AT_ONCE publications or about PUBLISH_BYTES each), so news keeps its order.

    def publish(self, channel: str, data: bytes) -> None:
        if not self._up:
            self.dropped += 1
            return
        self._outbox.append((channel, data))
        self._wake.set()

    async def _publisher(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            batch, self._outbox = self._outbox, []
            sent = 0
            try:
                while sent < len(batch):
                    args: list[str | bytes] = []
                    size = 0
                    for channel, data in batch[sent : sent + PUBLISH_AT_ONCE]:
                        if size >= PUBLISH_BYTES:
                            break  # Redis reads a whole command before it runs it
                        args.append(channel)
                        args.append(data)
                        size += len(data)
                    await self._send(args)
                    sent += len(args) // 2
                    self.published += len(args) // 2
            except (RedisError, OSError) as exc:
                self.dropped += len(batch) - sent
                self._lost(exc)

    async def _send(self, args: list[str | bytes]) -> None:
        """Publish (channel, data, ...) pairs: one script call, or a pipeline on a Redis that
        refuses scripts (an ACL without EVAL, a managed service): said once, then kept."""
        if self._scripts:
            try:
                await self._publish_all(args=args)
                return
            except ResponseError as exc:
                if isinstance(exc, NoScriptError):
                    raise
                log.warning("cluster bus: Redis refused the publishing script (%s): pipelined", exc)
                self._scripts = False
        pipe = self._redis.pipeline(transaction=False)
        for i in range(0, len(args), 2):
            pipe.publish(args[i], args[i + 1])
        await pipe.execute()

    # Subscribing: one pub/sub connection, remade after any failure.

    async def subscribe(self, channels: Iterable[str]) -> None:
        new = [c for c in channels if c not in self._channels]
        if not new:
            return
        self._channels.update(new)
        pubsub = self._pubsub
        if not self._up or pubsub is None:
            return  # subscribed when the link comes back, then caught up from storage
        loop = asyncio.get_running_loop()
        futures = []
        for c in new:
            fut: asyncio.Future[None] = loop.create_future()
            self._waiting.setdefault(c, []).append(fut)
            futures.append(fut)
        try:
            await pubsub.subscribe(*new)
        except (RedisError, OSError) as exc:
            self._lost(exc)
            return
        # Confirmed by the subscriber task; if the link dies first, the resume catches up.
        await asyncio.wait(futures, timeout=DEAD_AFTER)

    def unsubscribe(self, channels: Iterable[str]) -> None:
        gone = [c for c in channels if c in self._channels]
        if not gone:
            return
        self._channels.difference_update(gone)
        pubsub = self._pubsub
        if self._up and pubsub is not None:
            task = asyncio.ensure_future(pubsub.unsubscribe(*gone))
            task.add_done_callback(_quiet)

    async def _subscriber(self, first: asyncio.Future[None]) -> None:
        delay = BACKOFF_MIN
        while not self._closing:
            try:
                await self._listen(first)
            except (RedisError, OSError, TimeoutError) as exc:
                self._lost(exc)
            self._release_waiting()
            if self._pubsub is not None:
                with contextlib.suppress(Exception):
                    await self._pubsub.aclose()
                self._pubsub = None
            # The pooled connections of the other commands died with the link (a restarted
            # Redis closed them): made afresh, or the first command after the return fails.
            with contextlib.suppress(Exception):
                await self._redis.connection_pool.disconnect()
            if not first.done():
                first.set_result(None)
            if self._linked:  # the link worked since the last failure: start the backoff over
                self._linked, delay = False, BACKOFF_MIN
            await asyncio.sleep(delay)
            delay = min(delay * 2, BACKOFF_MAX)

    async def _listen(self, first: asyncio.Future[None]) -> None:
        pubsub = self._redis.pubsub()
        channels = sorted(self._channels)
        await pubsub.subscribe(self.prefix + "ctl", *channels)
        pending = {self.prefix + "ctl", *channels}
        heard = time.monotonic()
        pinged = heard
        # Wait for every confirmation before news is counted as heard: from here on nothing
        # published is missed, so the catch-up below starts from a complete point.
        while pending:
            msg = await pubsub.get_message(timeout=1.0)
            if msg is None:
                if time.monotonic() - heard > DEAD_AFTER:
                    raise TimeoutError("no answer to SUBSCRIBE")
                continue
            heard = time.monotonic()
            if msg["type"] == "subscribe":
                pending.discard(msg["channel"].decode())
            elif msg["type"] == "message":
                self._deliver(msg["data"])
        self._pubsub = pubsub
        was_down = self.outages > 0 or first.done()
        await self.presence.rejoin()  # a failure here counts no second outage: not up yet
        self._up = self._linked = True
        self.presence.flush()
        if not first.done():
            first.set_result(None)
        if not was_down:
            log.info("cluster bus (Redis) linked: node %s", self.node_id.decode())
        else:
            log.warning("cluster bus (Redis) is back; catching up from storage")
            if self._on_resumed is not None:
                asyncio.ensure_future(self._on_resumed()).add_done_callback(_quiet)
        # Channels subscribed while the link was being made.
        missing = self._channels - set(channels)
        if missing:
            await pubsub.subscribe(*missing)
        tick = time.monotonic()
        conn = pubsub.connection
        assert conn is not None  # made by the subscribe above
        buffered = _buffered_replies(conn)
        while True:
            # The connection's own read, then every reply already parsed from the same bytes:
            # pub/sub's get_message spent about 23 us of CPU per message on its layers
            # (retries, health checks, a dict each), this about 2 (bench/cluster_bus.py).
            reply = await conn.read_response(
                timeout=1.0, disconnect_on_error=False, push_request=True
            )
            now = time.monotonic()
            if now - tick > PING_EVERY:
                # This process stood still (SIGSTOP, a stalled loop): the silence was ours,
                # not the link's. Ask again now, and judge the link by that answer.
                heard, pinged = now, now - PING_EVERY - 1.0
            tick = now
            if reply is None:
                if now - heard > DEAD_AFTER:
                    raise TimeoutError("the Redis link went silent")
                if now - pinged > PING_EVERY:
                    pinged = now
                    await pubsub.ping()
                continue
            heard = now
            while reply is not None:
                if isinstance(reply, list) and reply and reply[0] == b"message":
                    self._deliver(reply[2])
                else:
                    await self._control(pubsub, reply)
                reply = buffered()

    async def _control(self, pubsub: Any, reply: Any) -> None:
        """A reply that is not a message: a confirmation, a pong, an error."""
        if isinstance(reply, Exception):
            raise reply
        msg = await pubsub.handle_message(reply)
        if msg is not None and msg["type"] == "subscribe":
            for fut in self._waiting.pop(msg["channel"].decode(), ()):
                if not fut.done():
                    fut.set_result(None)

    def _deliver(self, data: bytes) -> None:
        if data[:NODE_ID_BYTES] == self.node_id:
            return  # our own news: delivered locally already
        self.received += 1
        try:
            self._on_news(data)
        except Exception:
            log.exception("handling news from the cluster bus failed")

    def _release_waiting(self) -> None:
        for futures in self._waiting.values():
            for fut in futures:
                if not fut.done():
                    fut.set_result(None)
        self._waiting.clear()

    def _lost(self, exc: BaseException) -> None:
        if self._up:
            self._up = False
            self.outages += 1
            self._outbox.clear()
            log.warning(
                "cluster bus (Redis) unavailable (%s): serving local users, reconnecting", exc
            )
            if self._pubsub is not None:
                # Wake the subscriber task so that it starts over.
                task = asyncio.ensure_future(self._pubsub.aclose())
                task.add_done_callback(_quiet)


def _buffered_replies(conn: Any) -> Callable[[], Any]:
    """The next reply already read and parsed on ``conn`` (None when none is complete), from
    its hiredis reader: redis-py (pinned) keeps that reader private, so without it every reply
    is read through ``read_response`` (correct, and about ten times the CPU)."""
    reader = getattr(getattr(conn, "_parser", None), "_reader", None)
    try:
        from redis._parsers.hiredis import NOT_ENOUGH_DATA
    except ImportError:
        reader = None
    if reader is None:
        return lambda: None
    gets = reader.gets

    def next_reply() -> Any:
        reply = gets()
        return None if reply is NOT_ENOUGH_DATA else reply

    return next_reply


def _quiet(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()  # retrieved: a failure here is handled by the subscriber's loop
