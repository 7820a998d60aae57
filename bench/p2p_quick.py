"""A first one-to-one throughput measurement (the full suite is a later issue).

Starts a fresh `imhub serve` on a fresh SQLite database (pinned to CPU 0 when `taskset`
exists), logs in PAIRS sender/receiver pairs over TCP, and keeps WINDOW messages in flight per
sender for SECONDS. Reports acknowledged and delivered messages per second, and checks that
every acknowledged message was delivered exactly once and in order.

    .venv/bin/python -m bench.p2p_quick [--pairs 100] [--window 20] [--seconds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import time

from bench.common import SECRET, Conn, add_users, frame, run_on_fresh_server
from imhub.service.auth import TokenAuthority


async def run(pairs: int, window: int, seconds: float, port: int) -> dict[str, object]:
    auth = TokenAuthority(SECRET)
    ids = await add_users(port, pairs * 2)
    loop = asyncio.get_running_loop()
    acked: dict[int, int] = {}
    delivered: dict[int, list[int]] = {}
    sent: dict[int, int] = {}
    duplicates = 0
    stop_at = [0.0]
    logged = asyncio.Event()
    drained = asyncio.Event()  # every sent message acknowledged and delivered, after the stop
    logins = [0]
    totals = {"sent": 0, "acked": 0, "delivered": 0}

    def check_drained() -> None:
        if (
            time.perf_counter() >= stop_at[0]
            and totals["acked"] == totals["sent"]
            and totals["delivered"] >= totals["acked"]
        ):
            drained.set()

    def sender_msg(k: int, conns: list[Conn]):  # type: ignore[no-untyped-def]
        def on(msg: dict[str, object]) -> None:
            if msg["msgType"] == 1:
                logins[0] += 1
                if logins[0] == pairs * 2:
                    logged.set()
            elif msg["msgType"] == 4:
                acked[k] += 1
                totals["acked"] += 1
                if time.perf_counter() < stop_at[0]:
                    send(k, conns[0])
                else:
                    check_drained()

        return on

    def receiver_msg(k: int):  # type: ignore[no-untyped-def]
        def on(msg: dict[str, object]) -> None:
            nonlocal duplicates
            if msg["msgType"] == 1:
                logins[0] += 1
                if logins[0] == pairs * 2:
                    logged.set()
            elif msg["msgType"] in (3, 7):
                seq = int(str(msg["body"]))
                got = delivered[k]
                if got and seq <= got[-1]:
                    duplicates += 1
                got.append(seq)
                totals["delivered"] += 1
                check_drained()

        return on

    def send(k: int, conn: Conn) -> None:
        n = sent[k]
        sent[k] = n + 1
        totals["sent"] += 1
        assert conn.transport is not None
        conn.transport.write(
            frame(
                {
                    "msgType": 3,
                    "toUserId": ids[2 * k + 1],
                    "msgIdClient": f"{k}-{n}",
                    "body": str(n),
                }
            )
        )

    senders: list[Conn] = []
    for k in range(pairs):
        acked[k] = sent[k] = 0
        delivered[k] = []
        holder: list[Conn] = []
        _, s = await loop.create_connection(
            lambda k=k, h=holder: Conn(sender_msg(k, h)), "127.0.0.1", port
        )
        holder.append(s)
        senders.append(s)
        _, r = await loop.create_connection(lambda k=k: Conn(receiver_msg(k)), "127.0.0.1", port)
        for conn, uid in ((s, ids[2 * k]), (r, ids[2 * k + 1])):
            assert conn.transport is not None
            conn.transport.write(frame({"msgType": 1, "token": auth.mint(uid)}))
    await asyncio.wait_for(logged.wait(), 30)
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    stop_at[0] = t0 + seconds
    for k, s in enumerate(senders):
        for _ in range(window):
            send(k, s)
    await asyncio.wait_for(drained.wait(), seconds + 60)
    elapsed = time.perf_counter() - t0
    total_acked = sum(acked.values())
    total_delivered = sum(len(v) for v in delivered.values())
    in_order = all(v == list(range(len(v))) for v in delivered.values())
    return {
        "scenario": "p2p_throughput_tcp",
        "pairs": pairs,
        "window": window,
        "seconds": round(elapsed, 2),
        "acked": total_acked,
        "delivered": total_delivered,
        "msgs_per_s": round(total_acked / elapsed),
        "duplicates": duplicates,
        "complete": total_delivered == total_acked and in_order and duplicates == 0,
        "loadgen_cpu_s": round(time.process_time() - cpu0, 2),
    }


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--pairs", type=int, default=100)
    p.add_argument("--window", type=int, default=20)
    p.add_argument("--seconds", type=float, default=5)
    args = p.parse_args()
    run_on_fresh_server(lambda port: run(args.pairs, args.window, args.seconds, port))


if __name__ == "__main__":
    main()
