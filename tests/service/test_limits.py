"""The limits' arithmetic, without sockets (tests/gateway/test_limits.py has them end to end)."""

from __future__ import annotations

from dataclasses import replace

from imhub.config import Config
from imhub.service.limits import SWEEP_FROM, Bucket, Limits, address_key


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_bucket_holds_its_burst_and_refills_at_its_rate() -> None:
    b = Bucket(3, 0.0)
    assert [b.take(2.0, 3, 0.0) for _ in range(4)] == [True, True, True, False]
    assert b.wait(2.0) == 0.5
    assert not b.take(2.0, 3, 0.25)  # half a token
    assert b.take(2.0, 3, 0.5)
    assert b.take(0, 3, 0.5)  # a rate of 0: no limit
    assert b.full(2.0, 3, 100.0)


def test_persistent_excess_closes_after_the_refusal_burst() -> None:
    clock = Clock()
    limits = Limits(replace(Config(), msg_rate=1.0, msg_burst=2), clock)
    budget = limits.budget(None)
    got = [limits.message(budget, None) for _ in range(6)]
    assert got == [True, True, False, False, None, None]  # 2 taken, 2 refused, then closed
    clock.now = 10.0  # refilled: served again
    assert limits.message(budget, None) is True


def test_a_users_bucket_outlives_its_connections() -> None:
    clock = Clock()
    limits = Limits(replace(Config(), user_msg_rate=1.0, user_msg_burst=2), clock)
    assert limits.join_user(7)
    assert [limits.message(limits.budget(None), 7) for _ in range(3)] == [True, True, False]
    limits.leave_user(7)
    assert limits.join_user(7)  # reconnected: still empty
    assert limits.message(limits.budget(None), 7) is False


def test_connections_are_counted_once_and_released_once() -> None:
    cfg = replace(Config(), max_connections_per_address=2, connect_rate=0.0, limit_exempt="")
    limits = Limits(cfg, Clock())
    a, b, c = ("10.0.0.1", 1), ("10.0.0.1", 2), ("10.0.0.1", 3)
    assert limits.admit(a) is None and limits.admit(b) is None
    assert limits.admit(c) == "connections from this address"
    limits.release(a)
    limits.release(a)  # again: nothing
    assert limits.connections == 1
    assert limits.admit(c) is None
    assert limits.admit(None) is None and limits.connections == 2  # no address: not counted


def test_ipv6_addresses_count_by_their_64() -> None:
    assert address_key("2001:db8:1:2:aaaa::1") == address_key("2001:db8:1:2:bbbb::9")
    assert address_key("2001:db8:1:3::1") != address_key("2001:db8:1:2::1")
    assert address_key("192.0.2.1") == "192.0.2.1"


def test_tables_of_buckets_stay_as_small_as_what_is_active() -> None:
    clock = Clock()
    limits = Limits(replace(Config(), limit_exempt=""), clock)
    for i in range(SWEEP_FROM * 3):
        clock.now += 1.0  # each address's bucket is full again long before the sweep
        peer = (f"10.1.{i // 256}.{i % 256}", 1)
        assert limits.admit(peer) is None
        limits.release(peer)
    assert len(limits._connect) <= SWEEP_FROM + 1
