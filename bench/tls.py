"""The cost of TLS (issue 13): plain and TLS side by side in one run, each measurement on a
fresh server that has TLS on (plain and TLS share its port), pinned as in ``bench.run``.

- throughput (closed loop, 100 pairs, 20 in flight each) and delivery p99 at a fixed offered
  rate, for ``tcp`` vs ``tcps`` and ``ws`` vs ``wss``;
- the handshake rate: new connections that log in and leave, 50 at a time, each a full TLS
  handshake (no session resumption), for ``tcp`` vs ``tcps``;
- memory per idle logged-in connection, ``tcp`` vs ``tcps`` (``bench.idle``).

    python -m bench.tls            # about 3 minutes
    python -m bench.tls --quick    # about a minute

It prints a JSON line per measurement, appends them to ``bench/results.jsonl`` and prints a
Markdown table for docs/performance.md. The certificate is a throw-away one (trustme, ECDSA
P-256), as a real deployment's ECDSA certificate would cost; an RSA-2048 one costs more per
handshake."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from bench import idle, p2p
from bench.common import SECRET, connect, pin_self, start_server, stop_server
from imhub.service.auth import TokenAuthority

RESULTS = Path(__file__).resolve().parent / "results.jsonl"
Run = Callable[[int, int], Coroutine[Any, Any, dict[str, Any]]]


async def handshakes(port: int, transport: str, total: int, parallel: int = 50) -> dict[str, Any]:
    """``total`` connections, ``parallel`` at a time: connect, log in, wait for the answer,
    close. Users 1..total."""
    auth = TokenAuthority(SECRET)
    tokens = [auth.mint(user) for user in range(1, total + 1)]
    queue = list(reversed(tokens))
    failed = 0

    async def one(token: str) -> None:
        nonlocal failed
        answered: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()

        def on(msg: dict[str, Any]) -> None:
            if msg["msgType"] == 1 and not answered.done():
                answered.set_result(msg)

        conn = await connect(transport, port, on)
        conn.write({"msgType": 1, "token": token, "backlog": False})
        if (await asyncio.wait_for(answered, 30))["code"] != 0:
            failed += 1
        assert conn.transport is not None
        conn.transport.close()

    async def worker() -> None:
        while queue:
            await one(queue.pop())

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(parallel)))
    seconds = time.perf_counter() - t0
    return {
        "scenario": "tls_handshakes",
        "transport": transport,
        "connections": total,
        "failed": failed,
        "logins_per_s": round(total / seconds),
    }


def on_tls_server(run: Run, users: int, cert: Path, key: str) -> dict[str, Any]:
    """``run(port, pid)`` against a fresh server with TLS on, this process on the other core."""
    import uvloop

    with tempfile.TemporaryDirectory() as tmp:
        proc, port = start_server(Path(tmp), users, IMHUB_TLS_CERT=str(cert), IMHUB_TLS_KEY=key)
        try:
            pin_self()
            cpu = time.process_time()
            busy = cpu_seconds(proc.pid)
            result = uvloop.run(run(port, proc.pid))
            busy = cpu_seconds(proc.pid) - busy
            loadgen_cpu = round(time.process_time() - cpu, 2)
        finally:
            server_cpu = stop_server(proc)
    work = result.get("acked") or result.get("messages") or result.get("connections") or 1
    return {
        **result,
        "server_cpu_s": server_cpu,
        "loadgen_cpu_s": loadgen_cpu,
        "scenario_server_cpu_s": round(busy, 2),
        # what one message (or connection) cost the server's CPU, logins included: a
        # measure the other load on a shared machine disturbs far less than rates
        "server_cpu_us_each": round(busy / work * 1e6),
    }


def cpu_seconds(pid: int) -> float:
    """User and system CPU seconds a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def scenarios(quick: bool) -> list[tuple[str, Run, int]]:
    secs = 3 if quick else 5
    idle_n = 2000 if quick else 5000
    shakes = 1000 if quick else 3000
    out: list[tuple[str, Run, int]] = []
    for pair in (("tcp", "tcps"), ("ws", "wss")):
        for t in pair:
            out.append(
                (
                    f"throughput {t}",
                    lambda port, pid, t=t: p2p.throughput(port, t, seconds=secs),
                    200,
                )
            )
        for t in pair:
            out.append(
                (
                    f"latency {t} 2000/s",
                    lambda port, pid, t=t: p2p.latency(port, t, rate=2000, seconds=secs),
                    200,
                )
            )
    for t in ("tcp", "tcps"):
        out.append((f"handshakes {t}", lambda port, pid, t=t: handshakes(port, t, shakes), shakes))
    for t in ("tcp", "tcps"):
        out.append(
            (f"idle {t} {idle_n}", lambda port, pid, t=t: idle.idle(port, pid, t, idle_n), idle_n)
        )
    return out


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| measurement | result | server CPU per message or connection |", "|---|---|---|"]
    for r in rows:
        if r["scenario"] == "p2p_throughput":
            what = f"{r['msgs_per_s']:,} msgs/s (complete: {r['complete']})"
        elif r["scenario"] == "p2p_latency":
            what = f"delivery p50 {r['deliver_p50_ms']} ms, p99 {r['deliver_p99_ms']} ms"
        elif r["scenario"] == "tls_handshakes":
            what = f"{r['logins_per_s']:,} connect+login+close/s ({r['failed']} failed)"
        else:
            what = (
                f"{r['kib_per_connection']} KiB/connection, {r['connects_per_s']:,} connects/s"
                f" (all received: {r['all_received']})"
            )
        lines.append(f"| {r['label']} | {what} | {r['server_cpu_us_each']} µs |")
    return "\n".join(lines)


def main() -> None:
    import trustme

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        ca = trustme.CA()
        issued = ca.issue_cert("localhost", "127.0.0.1")
        cert, key, ca_file = Path(tmp, "cert.pem"), Path(tmp, "key.pem"), Path(tmp, "ca.pem")
        cert.write_bytes(b"".join(blob.bytes() for blob in issued.cert_chain_pems))
        issued.private_key_pem.write_to_path(str(key))
        ca.cert_pem.write_to_path(str(ca_file))
        os.environ["BENCH_TLS_CA"] = str(ca_file)  # for bench.common.connect, and idle's workers
        for label, run, users in scenarios(args.quick):
            result = {"label": label, **on_tls_server(run, users, cert, str(key))}
            print(json.dumps(result), flush=True)
            with RESULTS.open("a") as f:
                f.write(json.dumps({"bench": "tls", "quick": args.quick, **result}) + "\n")
            rows.append(result)
    print(table(rows))


if __name__ == "__main__":
    main()
