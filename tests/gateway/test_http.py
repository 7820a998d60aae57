"""The limit on log lines for malformed HTTP requests, on an injected clock."""

from __future__ import annotations

from imhub.logs import LogLimiter


def test_a_burst_per_interval_then_a_count_of_what_was_left_out() -> None:
    now = [0.0]
    limiter = LogLimiter(burst=3, interval=60.0, clock=lambda: now[0])
    assert [limiter.allow() for _ in range(5)] == [0, 0, 0, None, None]
    now[0] = 59.9
    assert limiter.allow() is None
    now[0] = 60.0  # a new interval: the first line says how many were left out
    assert [limiter.allow() for _ in range(4)] == [3, 0, 0, None]


def test_a_quiet_log_loses_nothing() -> None:
    now = [0.0]
    limiter = LogLimiter(burst=1, interval=1.0, clock=lambda: now[0])
    for i in range(10):
        now[0] = float(i)
        assert limiter.allow() == 0
