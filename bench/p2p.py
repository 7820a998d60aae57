"""One-to-one scenarios: closed-loop throughput and open-loop latency, over TCP or WebSocket.

PAIRS sender/receiver pairs (users 2k-1 → 2k). Every message is stored and acknowledged by the
server; the run checks that each acknowledged message reached its receiver exactly once and in
order ("complete").
"""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import dataclass, field
from typing import Any

from bench.common import SECRET, Conn, connect
from imhub.service.auth import TokenAuthority


@dataclass
class Pair:
    sender: Conn | None = None
    receiver: Conn | None = None
    sent: int = 0
    acked: int = 0
    delivered: list[int] = field(default_factory=list)
    sent_at: dict[int, int] = field(default_factory=dict)  # n -> perf_counter_ns at send


class Placement:
    """Which server (port) each pair's sender and receiver connect to.

    ``same``: both ends of pair k on ``ports[k % n]``; ``cross``: the receiver on the next
    port, so every message crosses nodes; ``mixed``: alternate blocks of ``n`` pairs are same
    and cross, to compare the two paths in one run."""

    def __init__(self, ports: int | list[int], mode: str = "same") -> None:
        self.ports = [ports] if isinstance(ports, int) else list(ports)
        assert mode in ("same", "cross", "mixed")
        assert mode == "same" or len(self.ports) > 1, "crossing nodes needs two ports"
        self.mode = mode

    def crosses(self, k: int) -> bool:
        n = len(self.ports)
        return self.mode == "cross" or (self.mode == "mixed" and (k // n) % 2 == 1)

    def sender(self, k: int) -> int:
        return self.ports[k % len(self.ports)]

    def receiver(self, k: int) -> int:
        n = len(self.ports)
        return self.ports[(k + 1) % n] if self.crosses(k) else self.ports[k % n]


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


async def _pairs(
    place: Placement, transport: str, n: int, on_ack: Any, on_deliver: Any
) -> list[Pair]:
    auth = TokenAuthority(SECRET)
    pairs = [Pair() for _ in range(n)]
    logged = asyncio.Event()
    logins = [0]

    def login_seen() -> None:
        logins[0] += 1
        if logins[0] == 2 * n:
            logged.set()

    for k, pair in enumerate(pairs):

        def on_sender(msg: dict[str, Any], k: int = k) -> None:
            if msg["msgType"] == 4:
                on_ack(k, msg)
            elif msg["msgType"] == 1:
                login_seen()

        def on_receiver(msg: dict[str, Any], k: int = k) -> None:
            if msg["msgType"] in (3, 7):
                on_deliver(k, msg)
            elif msg["msgType"] == 1:
                login_seen()

        pair.sender = await connect(transport, place.sender(k), on_sender)
        pair.receiver = await connect(transport, place.receiver(k), on_receiver)
        pair.sender.write({"msgType": 1, "token": auth.mint(2 * k + 1), "backlog": False})
        pair.receiver.write({"msgType": 1, "token": auth.mint(2 * k + 2), "backlog": False})
    await asyncio.wait_for(logged.wait(), 60)
    return pairs


def _send(pair: Pair, k: int, now_ns: int) -> None:
    n = pair.sent
    pair.sent += 1
    pair.sent_at[n] = now_ns
    assert pair.sender is not None
    pair.sender.write(
        {"msgType": 3, "toUserId": 2 * k + 2, "msgIdClient": f"{k}-{n}", "body": str(n)}
    )


def _complete(pairs: list[Pair]) -> bool:
    return all(p.delivered == list(range(p.acked)) and p.acked == p.sent for p in pairs)


async def throughput(
    port: int | Placement,
    transport: str = "tcp",
    pairs: int = 100,
    window: int = 20,
    seconds: float = 5,
) -> dict[str, Any]:
    """Each sender keeps ``window`` messages in flight for ``seconds`` (``port``: one
    server's, or a placement of the pairs over several)."""
    place = port if isinstance(port, Placement) else Placement(port)
    stop_at = [float("inf")]
    drained = asyncio.Event()
    totals = {"sent": 0, "acked": 0, "delivered": 0}

    def check() -> None:
        if time.perf_counter() >= stop_at[0] and totals["delivered"] >= totals["sent"]:
            drained.set()

    def on_ack(k: int, msg: dict[str, Any]) -> None:
        p = ps[k]
        p.acked += 1
        totals["acked"] += 1
        if time.perf_counter() < stop_at[0]:
            _send(p, k, 0)
            totals["sent"] += 1

    def on_deliver(k: int, msg: dict[str, Any]) -> None:
        ps[k].delivered.append(int(msg["body"]))
        totals["delivered"] += 1
        check()

    ps = await _pairs(place, transport, pairs, on_ack, on_deliver)
    t0 = time.perf_counter()
    stop_at[0] = t0 + seconds
    for k, p in enumerate(ps):
        for _ in range(window):
            _send(p, k, 0)
            totals["sent"] += 1
    await asyncio.wait_for(drained.wait(), seconds + 60)
    elapsed = time.perf_counter() - t0
    return {
        "scenario": "p2p_throughput",
        "transport": transport,
        "pairs": pairs,
        "window": window,
        "acked": totals["acked"],
        "msgs_per_s": round(totals["acked"] / elapsed),
        "complete": _complete(ps),
    }


async def latency(
    port: int | Placement,
    transport: str = "tcp",
    rate: int = 2000,
    pairs: int = 100,
    seconds: float = 5,
    warmup: float = 1,
) -> dict[str, Any]:
    """Open loop: ``rate`` messages/s spread over the pairs, whatever the answers do. With a
    ``mixed`` placement, send→delivery is also reported for same-node and cross-node pairs."""
    place = port if isinstance(port, Placement) else Placement(port)
    ack_ms: list[float] = []
    deliver_ms: list[float] = []
    by_path: dict[bool, list[float]] = {False: [], True: []}  # crosses nodes -> ms
    measure_from = [0]

    def on_ack(k: int, msg: dict[str, Any]) -> None:
        p = ps[k]
        p.acked += 1
        n = int(msg["msgIdClient"].split("-")[1])
        sent = p.sent_at[n]
        if sent >= measure_from[0]:
            ack_ms.append((time.perf_counter_ns() - sent) / 1e6)

    def on_deliver(k: int, msg: dict[str, Any]) -> None:
        p = ps[k]
        n = int(msg["body"])
        p.delivered.append(n)
        sent = p.sent_at[n]
        if sent >= measure_from[0]:
            ms = (time.perf_counter_ns() - sent) / 1e6
            deliver_ms.append(ms)
            by_path[place.crosses(k)].append(ms)
        if len(p.delivered) == p.sent and all_sent.is_set():
            check()

    def check() -> None:
        if all(len(p.delivered) == p.sent for p in ps):
            drained.set()

    ps = await _pairs(place, transport, pairs, on_ack, on_deliver)
    all_sent = asyncio.Event()
    drained = asyncio.Event()
    loop = asyncio.get_running_loop()
    start = loop.time()
    measure_from[0] = time.perf_counter_ns() + int(warmup * 1e9)
    total = int(rate * (seconds + warmup))
    tick = 0.001
    sent = 0
    k = 0
    while sent < total:  # a fixed schedule: message i is due at start + i / rate
        now = loop.time()
        due = min(total, int((now - start) * rate) + 1)
        now_ns = time.perf_counter_ns()
        while sent < due:
            _send(ps[k], k, now_ns)
            sent += 1
            k = (k + 1) % pairs
        await asyncio.sleep(tick)  # the sending schedule's clock, not a wait for the server
    all_sent.set()
    check()
    await asyncio.wait_for(drained.wait(), 60)
    out: dict[str, Any] = {
        "scenario": "p2p_latency",
        "transport": transport,
        "offered_per_s": rate,
        "messages": total,
        "ack_p50_ms": round(statistics.median(ack_ms), 2),
        "ack_p99_ms": round(percentile(ack_ms, 0.99), 2),
        "deliver_p50_ms": round(statistics.median(deliver_ms), 2),
        "deliver_p99_ms": round(percentile(deliver_ms, 0.99), 2),
        "deliver_max_ms": round(max(deliver_ms), 2),
    }
    if place.mode == "mixed":
        same, cross = by_path[False], by_path[True]
        out["same_node_p50_ms"] = round(statistics.median(same), 3)
        out["same_node_p99_ms"] = round(percentile(same, 0.99), 3)
        out["cross_node_p50_ms"] = round(statistics.median(cross), 3)
        out["cross_node_p99_ms"] = round(percentile(cross, 0.99), 3)
        out["cross_adds_p50_ms"] = round(out["cross_node_p50_ms"] - out["same_node_p50_ms"], 3)
        out["cross_adds_p99_ms"] = round(out["cross_node_p99_ms"] - out["same_node_p99_ms"], 3)
    out["lost"] = sum(p.sent - len(p.delivered) for p in ps)
    out["complete"] = _complete(ps)
    return out
