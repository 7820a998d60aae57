"""The session registry's index of who shows which conversation (no network)."""

from __future__ import annotations

import json
from collections.abc import Awaitable

from imhub.service.sessions import Session, SessionRegistry


class NullOutlet:
    limit = 1 << 20

    def send(self, payload: bytes) -> None: ...

    def queued(self) -> int:
        return 0

    def drained(self) -> Awaitable[None] | None:
        return None

    def close(self) -> None: ...


class RecordingOutlet(NullOutlet):
    """Keeps what was written; ``unread`` bytes stand for what the peer has not taken."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.unread = 0
        self.sent: list[dict[str, object]] = []
        self.closed = False

    def send(self, payload: bytes) -> None:
        self.sent.append(json.loads(payload))

    def queued(self) -> int:
        return self.unread

    def close(self) -> None:
        self.closed = True


def online(registry: SessionRegistry, user_id: int) -> Session:
    session = Session(NullOutlet(), 0.0)
    session.user_id = user_id
    registry.add(session)
    return session


def test_viewers_follow_enter_quit_and_close() -> None:
    registry = SessionRegistry()
    phone, pc = online(registry, 1), online(registry, 1)
    other = online(registry, 2)
    registry.enter(phone, 7)
    registry.enter(pc, 7)
    registry.enter(other, -3)
    assert set(registry.viewers(7)) == {1} and set(registry.viewers(-3)) == {2}
    registry.quit(phone, 7)
    assert set(registry.viewers(7)) == {1}  # the PC still shows it
    pc.closed = True
    registry.remove(pc)
    assert set(registry.viewers(7)) == set()
    registry.enter(pc, 9)  # a closed connection enters nothing
    assert set(registry.viewers(9)) == set() and registry.sessions_of(1) == [phone]


def test_what_is_held_for_a_connection_is_bounded_in_bytes() -> None:
    """A sync that is never finished holds live messages: past the connection's byte limit
    (with what is queued for it) the connection is told and dropped, and nothing is kept."""
    outlet = RecordingOutlet(limit=10_000)
    session = Session(outlet, 0.0)
    session.user_id = 1
    session.hold()
    outlet.unread = 4_000  # a sync page the client has not read yet
    payload = b"x" * 1_000
    for seq in range(1, 7):
        session.deliver(5, seq, payload)
    assert not session.closed and outlet.sent == []  # 6,000 + 4,000: at the limit
    session.deliver(5, 7, payload)
    assert session.closed and outlet.closed
    assert [(m["msgType"], m["code"]) for m in outlet.sent] == [(8, 429)]
    assert session.held is None and session.held_bytes == 0


def test_a_small_held_count_of_large_messages_is_enough_to_drop() -> None:
    outlet = RecordingOutlet(limit=1 << 20)
    session = Session(outlet, 0.0)
    session.hold()
    for seq in range(1, 22):  # 21 messages of 48 KB: about 1 MiB
        session.deliver(5, seq, b"x" * 48_000)
    assert not session.closed
    session.deliver(5, 22, b"x" * 48_000)
    assert session.closed


def test_end_answers_no_request() -> None:
    """What the server says when it ends a session (an expired token) is not the answer to
    whatever request is being handled, so a client does not take it for a refusal of that."""
    outlet = RecordingOutlet(limit=1 << 20)
    session = Session(outlet, 0.0)
    session.request_id = "sync-7"
    session.end(401, "token expired")  # type: ignore[arg-type]
    assert outlet.sent == [{"msgType": 8, "code": 401, "reason": "token expired"}]
    assert session.closed and outlet.closed
