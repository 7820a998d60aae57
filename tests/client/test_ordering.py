"""The client's ordering and backoff, without a network."""

from __future__ import annotations

import random

from imhub.client.backoff import backoff
from imhub.client.ordering import Ordering, Step


def items(steps: list[Step[str]]) -> list[str]:
    """What the steps hand over (positions filled by nothing are left out)."""
    return [item for _, item in steps if item is not None]


def test_in_order_duplicates_and_gaps() -> None:
    o: Ordering[str] = Ordering()
    assert items(o.accept(1, 5, "m5", start=True)) == ["m5"]  # a sync page starts the cursor
    assert items(o.accept(1, 5, "m5 again")) == []  # a duplicate
    assert items(o.accept(1, 7, "m7")) == []  # waits behind the missing 6
    assert o.gaps() == [1]
    assert items(o.accept(1, 8, "m8")) == []
    assert items(o.accept(1, 6, "m6")) == ["m6", "m7", "m8"]
    assert o.gaps() == [] and o.cursors[1] == 8


def test_own_messages_advance_silently() -> None:
    o: Ordering[str] = Ordering()
    o.know([(2, 3)])
    assert items(o.accept(2, 5, "m5")) == []
    assert items(o.accept(2, 4, None)) == ["m5"]  # 4 was ours: not handed over, but fills the gap
    assert o.cursors[2] == 5


def test_conversations_are_independent() -> None:
    o: Ordering[str] = Ordering()
    o.know([(1, 0), (-9, 10)])
    assert items(o.accept(-9, 12, "g12")) == []
    assert items(o.accept(1, 1, "c1")) == ["c1"]
    assert o.gaps() == [-9]


def test_backoff_grows_to_the_cap_with_jitter() -> None:
    delays = backoff(base=1.0, cap=8.0, rng=random.Random(7))
    got = [next(delays) for _ in range(8)]
    ceilings = [1, 2, 4, 8, 8, 8, 8, 8]
    assert all(c / 2 <= d <= c for d, c in zip(got, ceilings, strict=True))
    assert len(set(got)) == len(got)  # jittered: no two equal


def test_a_conversation_seen_first_live_waits_for_a_sync() -> None:
    o: Ordering[str] = Ordering()
    assert items(o.accept(3, 31, None)) == []  # our own message, answered: not a start
    assert items(o.accept(3, 32, "m32")) == []
    assert o.gaps() == [3]
    assert items(o.accept(3, 30, "m30", start=True)) == ["m30", "m32"]  # the sync began at 30
    assert o.cursors[3] == 32 and o.gaps() == []


def test_the_conversation_list_starts_what_pages_did_not() -> None:
    o: Ordering[str] = Ordering()
    assert items(o.accept(4, 8, "m8")) == []
    started = o.know([(4, 7), (5, 2)])
    assert started == [(4, [(7, None), (8, "m8")]), (5, [(2, None)])]
    assert o.cursors == {4: 8, 5: 2}


def test_a_conversation_never_starts_after_a_live_message_waiting_for_it() -> None:
    """Issue 10, fault 3: a connection showing a conversation reads its messages at once, so
    the server may start it after messages this client got live but has not handed over."""
    order: Ordering[str] = Ordering()
    order.cursors[1] = 7
    assert items(order.accept(9, 4, "four")) == []  # conversation 9 not started: waits
    assert items(order.accept(9, 5, "five")) == []
    assert order.positions() == {1: 7}  # the server starts 9 where it will
    assert items(order.accept(9, 6, "six", start=True)) == ["four", "five", "six"]
    assert order.cursors[9] == 6
    started = order.know([(9, 9), (12, 3)])  # 9 has started already: the list leaves it
    assert started == [(12, [(3, None)])]
    order.forget(9)
    assert order.positions() == {1: 7, 12: 3}


def test_the_conversation_list_does_not_start_past_a_live_message() -> None:
    order: Ordering[str] = Ordering()
    assert items(order.accept(3, 10, "ten")) == []
    started = order.know([(3, 12)])  # the server has 12 as read: 10 was read at delivery
    assert [(conv, items(steps)) for conv, steps in started] == [(3, ["ten"])]
    assert order.cursors[3] == 10 and order.gaps() == []
