"""Cross-node delivery latency: what Redis adds between two nodes of a cluster.

Two nodes (``imhub serve --cluster``) on one PostgreSQL database and one Redis; a sender on
node 1 sends one message at a time, alternately to a user on node 1 and to a user on node 2,
and the time from the send to the recipient's copy is recorded for each. Usage:

    python -m bench.cluster_latency --database-url postgresql+asyncpg://... --redis redis://...

(the database migrated; each run adds users). Prints p50/p99 for each path in milliseconds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from pathlib import Path
from tempfile import mkdtemp

from tests.cluster.conftest import Node


async def run(db: str, redis: str, n: int) -> dict[str, float]:
    root = Path(mkdtemp(prefix="imhub-bench-"))
    nodes = [Node(root / f"n{i}", database_url=db, cluster=redis, log_level="WARNING")
             for i in range(2)]  # fmt: skip
    try:
        a, sender = await nodes[0].online("a")
        b, near = await nodes[0].online("b")
        c, far = await nodes[1].online("c")
        times: dict[str, list[float]] = {"same node": [], "cross node": []}
        for i in range(n):
            for name, to, conn in (("same node", b, near), ("cross node", c, far)):
                began = time.perf_counter()
                await sender.send(
                    {"msgType": 3, "toUserId": to, "msgIdClient": f"{name}{i}", "body": "x"}
                )
                await conn.expect(7)
                times[name].append((time.perf_counter() - began) * 1000)
                await sender.expect(4)
        out = {}
        for name, values in times.items():
            values.sort()
            out[f"{name} p50 ms"] = round(statistics.median(values), 3)
            out[f"{name} p99 ms"] = round(values[int(len(values) * 0.99) - 1], 3)
        return out
    finally:
        for node in nodes:
            node.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--redis", required=True)
    parser.add_argument("-n", type=int, default=2000)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args.database_url, args.redis, args.n)), indent=1))


if __name__ == "__main__":
    main()

