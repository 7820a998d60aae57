"""One message to a group whose members are all online: time to first and last delivery.

Starts a fresh server, creates a group of MEMBERS users, logs every member in over TCP, then
sends ROUNDS messages one at a time (each after the previous reached every member) and reports
send→chat_answer, send→first member and send→last member, and deliveries per second.

    .venv/bin/python bench/group_fanout.py [--members 1000] [--rounds 20]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from typing import Any

from bench.common import SECRET, Conn, add_users, post, run_on_fresh_server
from imhub.service.auth import TokenAuthority


async def run(members: int, rounds: int, port: int) -> dict[str, Any]:
    auth = TokenAuthority(SECRET)
    loop = asyncio.get_running_loop()
    ids = await add_users(port, members)
    owner = ids[0]
    team = (
        await post(
            port, "/api/v1/teams/create", {"userId": owner, "teamName": "bench", "memberIds": ids}
        )
    )["teamId"]
    logged = asyncio.Event()
    state: dict[str, Any] = {"logins": 0, "got": 0, "first": 0.0, "last": 0.0, "answer": 0.0}
    round_done = asyncio.Event()
    expected = members - 1  # everyone but the sender
    seqs: dict[int, list[int]] = {u: [] for u in ids}

    def on_member(user: int):  # type: ignore[no-untyped-def]
        def on(msg: dict[str, Any]) -> None:
            t = msg["msgType"]
            if t == 1:
                state["logins"] += 1
                if state["logins"] == members:
                    logged.set()
            elif t in (3, 7) and msg.get("teamId") == team:
                now = time.perf_counter()
                seqs[user].append(msg["seq"])
                state["got"] += 1
                if state["got"] == 1:
                    state["first"] = now
                if state["got"] == expected:
                    state["last"] = now
                    round_done.set()
            elif t == 4:
                state["answer"] = time.perf_counter()

        return on

    conns: dict[int, Conn] = {}
    for u in ids:
        _, c = await loop.create_connection(lambda u=u: Conn(on_member(u)), "127.0.0.1", port)
        c.write({"msgType": 1, "token": auth.mint(u), "backlog": False})
        conns[u] = c
    await asyncio.wait_for(logged.wait(), 60)
    first, last, answer = [], [], []
    t_all = time.perf_counter()
    for r in range(rounds):
        state["got"] = 0
        round_done.clear()
        t0 = time.perf_counter()
        conns[owner].write({"msgType": 3, "teamId": team, "msgIdClient": f"r{r}", "body": "x" * 20})
        await asyncio.wait_for(round_done.wait(), 30)
        first.append((state["first"] - t0) * 1000)
        last.append((state["last"] - t0) * 1000)
        answer.append((state["answer"] - t0) * 1000)
    elapsed = time.perf_counter() - t_all
    complete = all(
        s[-rounds:] == sorted(set(s[-rounds:])) and len(s) >= rounds
        for u, s in seqs.items()
        if u != owner
    )
    return {
        "scenario": "group_fanout_tcp",
        "members": members,
        "rounds": rounds,
        "answer_ms_median": round(statistics.median(answer), 2),
        "first_member_ms_median": round(statistics.median(first), 2),
        "last_member_ms_median": round(statistics.median(last), 2),
        "last_member_ms_max": round(max(last), 2),
        "deliveries_per_s_sequential": round(rounds * expected / elapsed),
        "complete": complete,
    }


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--members", type=int, default=1000)
    p.add_argument("--rounds", type=int, default=20)
    args = p.parse_args()
    run_on_fresh_server(lambda port: run(args.members, args.rounds, port))


if __name__ == "__main__":
    main()
