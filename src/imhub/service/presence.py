"""Who is online, and on which client types: from the session registry of this process, or
in a cluster from the presence every node keeps in Redis (``cluster.presence``).

A connection that is being closed (its user deleted, its token expired) no longer counts,
though the registry keeps it until the socket is gone.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from imhub.service.sessions import SessionRegistry


@dataclass(slots=True, frozen=True)
class Presence:
    user_id: int
    connections: int  # open, logged-in connections
    client_types: list[int]  # the distinct client types they logged in with, ascending


class ConnInfo(Protocol):
    @property
    def client_type(self) -> int: ...


class Directory(Protocol):
    """The cluster's presence: every node's connections, those of dead nodes left out."""

    async def of(self, user_id: int) -> Sequence[ConnInfo]: ...

    async def page(
        self, after: int, limit: int
    ) -> tuple[Sequence[tuple[int, Sequence[ConnInfo]]], bool]: ...


class PresenceService:
    def __init__(self, registry: SessionRegistry, directory: Directory | None = None) -> None:
        self._registry = registry
        self._directory = directory

    async def find(self, user_id: int) -> Presence:
        if self._directory is None:
            return self.of(user_id)
        conns = await self._directory.of(user_id)
        return Presence(user_id, len(conns), sorted({c.client_type for c in conns}))

    async def find_page(self, after: int, limit: int) -> tuple[list[Presence], int | None]:
        if self._directory is None:
            return self.page(after, limit)
        found, more = await self._directory.page(after, limit)
        out = [Presence(u, len(cs), sorted({c.client_type for c in cs})) for u, cs in found]
        return out, (out[-1].user_id if more and out else None)

    async def everyone(self) -> list[int]:
        """Every user online anywhere (a notice to everyone online)."""
        if self._directory is None:
            return sorted(self._registry.user_ids())
        users: list[int] = []
        after: int | None = 0
        while after is not None:
            page, after = await self.find_page(after, 1000)
            users.extend(p.user_id for p in page)
        return users

    def of(self, user_id: int) -> Presence:
        live = [s for s in self._registry.sessions_of(user_id) if not s.closed]
        return Presence(user_id, len(live), sorted({s.client_type for s in live}))

    def page(self, after: int, limit: int) -> tuple[list[Presence], int | None]:
        """Online users with ids above ``after``, by id, and the ``after`` of the next page
        (None: the last). A user who comes online meanwhile appears on a later page if their
        id is above the cursor; paging by id neither skips nor repeats anyone who stays."""
        found: list[Presence] = []
        cursor = after
        while True:
            batch = heapq.nsmallest(limit + 1, (u for u in self._registry.user_ids() if u > cursor))
            for user_id in batch:
                presence = self.of(user_id)
                if presence.connections:  # not only connections being closed
                    found.append(presence)
                if len(found) > limit:
                    return found[:limit], found[limit - 1].user_id
            if len(batch) <= limit:
                return found, None
            cursor = batch[-1]
