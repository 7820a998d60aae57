"""Presence in Redis: who is connected to which node, with what client type, showing which
conversations; a crashed node's users vanish by themselves.

- ``{prefix}nodes``: a sorted set of node ids scored by when each stops counting as alive
  (epoch ms); every node pushes its own score ``ALIVE_FOR`` ahead every ``REFRESH`` seconds.
- ``{prefix}p:{user}``: a hash ``node:conn -> state`` (MessagePack: client type, entered
  conversations), one field per connection.
- ``{prefix}online``: a sorted set of user ids with a field, for paging.

Readers ignore fields of nodes that are not alive (and delete them in passing), so nothing
depends on a crashed node cleaning up. A node's writes go through a map of wanted states,
flushed once per tick: while Redis is away they wait there and are written when it returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import cast

import msgspec
import redis.asyncio as aioredis
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError

from imhub.logs import LogLimiter
from imhub.protocol.errors import ErrorCode, ImError

log = logging.getLogger(__name__)

UNAVAILABLE = "presence unavailable: the cluster bus (Redis) cannot be reached; retry"

ALIVE_FOR = 10_000  # ms a node counts as alive after its last refresh
REFRESH = 2.0  # s between refreshes

# HDEL a field, and drop the user from the online index when no field is left.
_REMOVE = """
redis.call('HDEL', KEYS[1], ARGV[1])
if redis.call('HLEN', KEYS[1]) == 0 then redis.call('ZREM', KEYS[2], ARGV[2]) end
return 0
"""


class ConnState(msgspec.Struct, array_like=True):
    client_type: int
    entered: list[int] = []


_enc = msgspec.msgpack.Encoder()
_dec = msgspec.msgpack.Decoder(ConnState)


class RedisPresence:
    def __init__(self, redis: aioredis.Redis, prefix: str, node: str) -> None:
        self._redis = redis
        self._prefix = prefix
        self._node = node
        self._nodes_key = prefix + "nodes"
        self._online_key = prefix + "online"
        # (user, conn) -> the state to write, or None to remove; what is not written yet.
        self._dirty: dict[tuple[int, int], ConnState | None] = {}
        # Every connection of this node, for a rewrite after an outage.
        self._mine: dict[tuple[int, int], ConnState] = {}
        self._flushing = False
        self._alive_until = 2**62  # ms: until when the last refresh made this node alive
        self._up: Callable[[], bool] = lambda: False
        self._task: asyncio.Task[None] | None = None
        self._remove: AsyncScript = redis.register_script(_REMOVE)
        self._refusals = LogLimiter(1, 10.0, time.monotonic)
        self._refused = 0

    def _unavailable(self, exc: BaseException | None) -> ImError:
        """A read while Redis is away: a 503 for the caller, one log line per 10 s here."""
        self._refused += 1
        if self._refusals.allow() is not None:
            log.warning(
                "presence read refused, the cluster bus (Redis) is unavailable (%s); %d so far",
                exc or "down",
                self._refused,
            )
        return ImError(ErrorCode.SHUTTING_DOWN, UNAVAILABLE)

    def _key(self, user_id: int) -> str:
        return f"{self._prefix}p:{user_id}"

    # Writes (never wait).

    def put(self, user_id: int, conn: int, client_type: int, entered: list[int]) -> None:
        state = ConnState(client_type, entered)
        self._mine[(user_id, conn)] = state
        self._dirty[(user_id, conn)] = state
        self._schedule()

    def remove(self, user_id: int, conn: int) -> None:
        self._mine.pop((user_id, conn), None)
        self._dirty[(user_id, conn)] = None
        self._schedule()

    def _schedule(self) -> None:
        if not self._flushing and self._up():
            self._flushing = True
            asyncio.get_running_loop().call_soon(self._start_flush)

    def _start_flush(self) -> None:
        self._task = asyncio.create_task(self._flush())

    async def _flush(self) -> None:
        try:
            while self._dirty and self._up():
                dirty, self._dirty = self._dirty, {}
                try:
                    pipe = self._redis.pipeline(transaction=False)
                    for (user_id, conn), state in dirty.items():
                        field = f"{self._node}:{conn}"
                        if state is None:
                            await self._remove(
                                keys=[self._key(user_id), self._online_key],
                                args=[field, user_id],
                                client=pipe,
                            )
                        else:
                            pipe.hset(self._key(user_id), field, _enc.encode(state))
                            pipe.zadd(self._online_key, {str(user_id): user_id})
                    await pipe.execute()
                except (RedisError, OSError):
                    for key, state in dirty.items():  # written when Redis is back
                        self._dirty.setdefault(key, state)
                    return
        finally:
            self._flushing = False

    async def rejoin(self) -> None:
        """The link is (back): say this node is alive, and mark every connection to be
        written again (``flush`` once the bus counts as up)."""
        await self._alive()
        self._mark_all()

    def _mark_all(self) -> None:
        for key, state in self._mine.items():
            self._dirty.setdefault(key, state)

    def flush(self) -> None:
        self._schedule()

    async def keep_alive(
        self, up: Callable[[], bool], node_gone: Callable[[], Awaitable[None]]
    ) -> None:
        """Say this node is alive every ``REFRESH`` seconds, and watch the others: when a node
        seen alive stops being so (it crashed, or stopped), ``node_gone`` runs. A node that
        died between a commit and its publish took that news with it; the receivers' catch-up
        from storage is what delivers it (docs/architecture.md, "A node dies")."""
        self._up = up
        seen: set[str] = set()
        while True:
            if up():
                try:
                    await self._alive()
                    live = await self.live_nodes()
                except (RedisError, OSError):
                    live = seen
                gone, seen = seen - live, live
                if gone:
                    log.info("cluster: node(s) %s gone; catching up from storage", sorted(gone))
                    await node_gone()
            await asyncio.sleep(REFRESH)

    async def _alive(self) -> None:
        now = int(time.time() * 1000)
        await self._redis.zadd(self._nodes_key, {self._node: now + ALIVE_FOR})
        lapsed, self._alive_until = now > self._alive_until, now + ALIVE_FOR
        if lapsed and self._mine:
            # This node stopped counting as alive (a pause, a partition) while still serving:
            # a reader may have removed its connections meanwhile. Write them all again.
            log.info("cluster: this node's liveness had lapsed; writing its presence again")
            self._mark_all()
            self._schedule()

    async def leave(self) -> None:
        """A clean stop: this node's users are gone at once."""
        await self._redis.zrem(self._nodes_key, self._node)

    # Reads.

    async def live_nodes(self) -> set[str]:
        now = int(time.time() * 1000)
        found = await self._redis.zrangebyscore(self._nodes_key, now, "+inf")
        return {n.decode() for n in cast(list[bytes], found)}

    async def of(self, user_id: int) -> list[ConnState]:
        """The live connections of a user, anywhere (``ImError`` 503: Redis is away)."""
        if not self._up():
            raise self._unavailable(None)
        try:
            return (await self.of_many([user_id], await self.live_nodes()))[user_id]
        except (RedisError, OSError) as exc:
            raise self._unavailable(exc) from None

    async def of_many(self, user_ids: list[int], live: set[str]) -> dict[int, list[ConnState]]:
        pipe = self._redis.pipeline(transaction=False)
        for user_id in user_ids:
            pipe.hgetall(self._key(user_id))
        found: dict[int, list[ConnState]] = {}
        stale: list[tuple[int, str]] = []
        for user_id, fields in zip(user_ids, await pipe.execute(), strict=True):
            states = found[user_id] = []
            for field, value in fields.items():
                name = field.decode()
                if name.split(":", 1)[0] in live:
                    states.append(_dec.decode(value))
                else:
                    stale.append((user_id, name))
        for user_id, name in stale:  # a crashed node's connections: tidy up in passing
            with contextlib.suppress(RedisError, OSError):
                await self._remove(
                    keys=[self._key(user_id), self._online_key], args=[name, user_id]
                )
        return found

    async def page(self, after: int, limit: int) -> tuple[list[tuple[int, list[ConnState]]], bool]:
        """Users online with ids above ``after``, by id, at most ``limit``; and whether there
        may be more (``ImError`` 503: Redis is away)."""
        if not self._up():
            raise self._unavailable(None)
        try:
            return await self._page(after, limit)
        except (RedisError, OSError) as exc:
            raise self._unavailable(exc) from None

    async def _page(self, after: int, limit: int) -> tuple[list[tuple[int, list[ConnState]]], bool]:
        live = await self.live_nodes()
        out: list[tuple[int, list[ConnState]]] = []
        cursor = after
        while len(out) < limit:
            found = await self._redis.zrangebyscore(
                self._online_key, f"({cursor}", "+inf", start=0, num=limit + 1
            )
            ids = [int(u) for u in cast(list[bytes], found)]
            if not ids:
                return out, False
            states = await self.of_many(ids, live)
            for user_id in ids:
                if states[user_id]:
                    out.append((user_id, states[user_id]))
            cursor = ids[-1]
            if len(ids) <= limit and len(out) < limit:
                return out, False
        return out[:limit], True
