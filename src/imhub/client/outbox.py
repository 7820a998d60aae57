"""Messages sent but not yet answered, and the ids of those answered lately (no I/O).

An entry stays until the server answers it (stored) or refuses it for good; every new
connection writes again each entry not yet written on it, with the same ``msgIdClient``, so
the server stores it once. What changed is recorded in ``changes`` for the state file.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from imhub.client.actions import Pending
from imhub.client.events import Sent
from imhub.client.store import Changes
from imhub.protocol.messages import ImMsg

REMEMBER = 10_000  # answered ids kept, to recognise this client's own messages in a sync


class Outbox:
    def __init__(self, saved: list[dict[str, Any]]) -> None:
        self.entries = {str(p["msgIdClient"]): Pending(p, False) for p in saved}
        self.changes = Changes()
        self._answered: dict[str, None] = {}

    def add(self, payload: dict[str, Any]) -> Pending | None:
        """A new entry, awaited; ``None`` if the id is already waiting (it is the same
        message: now it is awaited too). Raises ``ValueError`` if the id is waiting as a
        different message (the server would answer the second with the first's result)."""
        mid = str(payload["msgIdClient"])
        earlier = self.entries.get(mid)
        if earlier is not None:
            if earlier.payload != payload:
                raise ValueError(f"msg_id_client {mid!r} is waiting as a different message")
            earlier.awaited = True
            return None
        pending = self.entries[mid] = Pending(payload, True)
        self.changes.outbox_put[mid] = payload
        return pending

    def unsent(self, conn: int) -> Iterator[Pending]:
        """The entries not written on connection ``conn`` yet, in the order sent."""
        return (p for p in self.entries.values() if p.conn != conn)

    def remove(self, mid: str, stored: bool) -> Pending | None:
        """The entry ``mid`` is settled: answered (``stored``) or refused for good."""
        pending = self.entries.pop(mid, None)
        if pending is None:
            return None
        self.changes.outbox_put.pop(mid, None)
        self.changes.outbox_del.add(mid)
        if stored:
            self._answered[mid] = None
            if len(self._answered) > REMEMBER:
                del self._answered[next(iter(self._answered))]
        return pending

    def answered(self, msg: ImMsg) -> tuple[Sent, bool] | None:
        """The server stored entry ``msg.msgIdClient``: its result, and whether a send_chat
        awaits it (``None``: not waiting, the answer to a resend already answered)."""
        mid = msg.msg_id_client or ""
        pending = self.remove(mid, stored=True)
        if pending is None:
            return None
        seq, server_id, time = msg.seq or 0, msg.msg_id_server or 0, msg.send_time or 0
        return Sent(msg.chat_id, msg.team_id, seq, server_id, mid, time), pending.awaited

    def mine(self, mid: str) -> bool:
        """Whether ``mid`` names a message of this client (waiting, or answered lately)."""
        return mid in self.entries or mid in self._answered

    def take_changes(self) -> Changes:
        changes, self.changes = self.changes, Changes()
        return changes
