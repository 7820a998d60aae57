"""Reconnect delays: exponential, capped, with jitter so that many clients do not come back at
the same instant after a server restart."""

from __future__ import annotations

import random
from collections.abc import Iterator


def backoff(
    base: float = 0.5,
    cap: float = 30.0,
    factor: float = 2.0,
    rng: random.Random | None = None,
) -> Iterator[float]:
    """Delays before successive attempts: each is drawn from the upper half of
    ``min(cap, base * factor**n)`` ("equal jitter"), so it never collapses to zero."""
    rng = rng or random.Random()
    n = 0
    while True:
        ceiling = min(cap, base * factor**n)
        yield ceiling / 2 + rng.uniform(0, ceiling / 2)
        if ceiling < cap:
            n += 1
