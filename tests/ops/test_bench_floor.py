"""The benchmark's floor and its ratio table (bench/floor.py, bench/ratios.py): the floor must
relay completely (a floor that drops messages would flatter nothing and prove nothing), and
the targets must be judged as issue 14 states them."""

from __future__ import annotations

from pathlib import Path

import uvloop

from bench import fanout, hostcost, p2p, ratios


def test_the_floor_relays_every_message_once_in_order_over_tcp_and_websocket() -> None:
    with ratios.floor_server() as (_pid, tcp, http):
        by_tcp = uvloop.run(p2p.throughput(tcp, "tcp", pairs=4, window=5, seconds=0.3))
        by_ws = uvloop.run(p2p.throughput(http, "ws", pairs=4, window=5, seconds=0.3))
        group = uvloop.run(fanout.fanout(tcp, members=20, rounds=2, seconds=0.3, api_port=http))
    assert by_tcp["complete"] and by_tcp["acked"] > 0
    assert by_ws["complete"] and by_ws["acked"] > 0
    assert group["complete"] and group["sustained_deliveries_per_s"] > 0


def test_the_host_probe_reports_fsync_and_commit_costs(tmp_path: Path) -> None:
    host = hostcost.measure(tmp_path, n=30)
    assert 0 < host["fsync_p50_us"] <= host["fsync_p99_us"]
    assert 0 < host["sqlite_commit_p50_us"] <= host["sqlite_commit_p99_us"]
    assert list(tmp_path.iterdir()) == []  # its files are gone


def test_targets_follow_the_issue() -> None:
    by_key = {w.key: w for w in ratios.workloads()}
    fast_disk = {"fsync_p99_us": 200}
    slow_disk = {"fsync_p99_us": 5000}
    assert by_key["tcp"].target(fast_disk, 1.0) == 0.5
    assert by_key["ws"].target(fast_disk, 1.0) == 1.0
    assert by_key["group"].target(fast_disk, 1.0) == 1.0
    assert by_key["p99_2k"].target(slow_disk, 1.0) == 2.0
    # p99 at 10,000/s: 3× the floor, or the floor plus two fsyncs where that is more.
    assert by_key["p99_10k"].target(fast_disk, 1.5) == 3.0
    assert by_key["p99_10k"].target(slow_disk, 1.5) == (1.5 + 10.0) / 1.5
    assert by_key["tcp"].met(0.6, 0.5) and not by_key["tcp"].met(0.4, 0.5)
    assert by_key["p99_2k"].met(1.9, 2.0) and not by_key["p99_2k"].met(2.1, 2.0)
