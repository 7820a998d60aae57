"""The session registry's index of who shows which conversation (no network)."""

from __future__ import annotations

from imhub.service.sessions import Session, SessionRegistry


class NullOutlet:
    def send(self, payload: bytes) -> None: ...

    def close(self) -> None: ...


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
