"""One sender, one group whose members are all online over TCP.

``rounds`` messages one at a time (each after the previous reached every member) give the time
from send to the first and to the last member; then a window of messages in flight for
``seconds`` gives sustained deliveries per second. Every member must see every message once
and in order ("complete").
"""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any

from bench.common import SECRET, connect, post
from imhub.service.auth import TokenAuthority


async def fanout(
    port: int,
    members: int = 1000,
    rounds: int = 20,
    window: int = 10,
    seconds: float = 5,
    api_port: int | None = None,
) -> dict[str, Any]:
    """``api_port``: where the HTTP API is when it is not on ``port`` (the floor relay)."""
    auth = TokenAuthority(SECRET)
    owner = 1
    team = (
        await post(
            api_port or port,
            "/api/v1/teams/create",
            {"userId": owner, "teamName": "bench", "memberIds": list(range(2, members + 1))},
        )
    )["teamId"]
    logged = asyncio.Event()
    state: dict[str, Any] = {"logins": 0, "got": 0, "round_first": 0.0, "round_last": 0.0}
    round_done = asyncio.Event()
    expected = members - 1
    seqs: dict[int, list[int]] = {u: [] for u in range(2, members + 1)}
    acked = [0]
    sustained = {"on": False, "deliveries": 0, "stop": float("inf")}
    drained = asyncio.Event()

    def check_drained() -> None:
        # After the stop, once every send is acked, wait for every member to have them all.
        if (
            sustained["on"]
            and time.perf_counter() >= sustained["stop"]
            and acked[0] == n[0]
            and sustained["deliveries"] >= (n[0] - rounds) * expected
        ):
            drained.set()

    def on_member(user: int):  # type: ignore[no-untyped-def]
        def on(msg: dict[str, Any]) -> None:
            t = msg["msgType"]
            if t == 1:
                state["logins"] += 1
                if state["logins"] == members:
                    logged.set()
            elif t in (3, 7) and msg.get("teamId") == team:
                seqs[user].append(msg["seq"])
                if sustained["on"]:
                    sustained["deliveries"] += 1
                    check_drained()
                    return
                now = time.perf_counter()
                state["got"] += 1
                if state["got"] == 1:
                    state["round_first"] = now
                if state["got"] == expected:
                    state["round_last"] = now
                    round_done.set()

        return on

    def on_owner(msg: dict[str, Any]) -> None:
        if msg["msgType"] == 1:
            state["logins"] += 1
            if state["logins"] == members:
                logged.set()
        elif msg["msgType"] == 4:
            acked[0] += 1
            if sustained["on"] and time.perf_counter() < sustained["stop"]:
                send()
            check_drained()

    sender = await connect("tcp", port, on_owner)
    sender.write({"msgType": 1, "token": auth.mint(owner), "backlog": False})
    conns = []
    for u in range(2, members + 1):
        c = await connect("tcp", port, on_member(u))
        c.write({"msgType": 1, "token": auth.mint(u), "backlog": False})
        conns.append(c)
    await asyncio.wait_for(logged.wait(), 120)
    n = [0]

    def send() -> None:
        n[0] += 1
        sender.write({"msgType": 3, "teamId": team, "msgIdClient": f"r{n[0]}", "body": "x" * 20})

    first, last = [], []
    for _ in range(rounds):
        state["got"] = 0
        round_done.clear()
        t0 = time.perf_counter()
        send()
        await asyncio.wait_for(round_done.wait(), 60)
        first.append((state["round_first"] - t0) * 1000)
        last.append((state["round_last"] - t0) * 1000)

    sustained["on"] = True
    t0 = time.perf_counter()
    sustained["stop"] = t0 + seconds
    for _ in range(window):
        send()
    await asyncio.wait_for(drained.wait(), seconds + 120)
    elapsed = time.perf_counter() - t0
    complete = all(s == list(range(2, n[0] + 2)) for s in seqs.values())
    return {
        "scenario": "group_fanout",
        "members": members,
        "first_member_ms_median": round(statistics.median(first), 2),
        "last_member_ms_median": round(statistics.median(last), 2),
        "last_member_ms_max": round(max(last), 2),
        "sustained_deliveries_per_s": round(sustained["deliveries"] / elapsed),
        "complete": complete,
    }
