"""Who is online, and on which client types, from the session registry of this process.

A connection that is being closed (its user deleted, its token expired) no longer counts,
though the registry keeps it until the socket is gone.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

from imhub.service.sessions import SessionRegistry


@dataclass(slots=True, frozen=True)
class Presence:
    user_id: int
    connections: int  # open, logged-in connections
    client_types: list[int]  # the distinct client types they logged in with, ascending


class PresenceService:
    def __init__(self, registry: SessionRegistry) -> None:
        self._registry = registry

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
