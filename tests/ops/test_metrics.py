"""``/metrics``: Prometheus text from the server's own registry, counting what clients did."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from imhub.metrics import Histogram, Metrics
from tests.helpers import TIMEOUT, ServerProcess

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape(srv: ServerProcess) -> Samples:
    async with aiohttp.ClientSession() as http, http.get(srv.url + "/metrics") as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain; version=")
        text = await resp.text()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def test_metrics_count_connections_logins_messages_and_errors(
    make_server: Callable[..., ServerProcess],
) -> None:
    srv = make_server()
    async with aiohttp.ClientSession() as http, http.get(srv.url + "/nowhere") as resp:
        assert resp.status == 404  # (first: its connection has long closed by the scrape)
    alice, a = await srv.online("alice", "tcp")
    bob, b = await srv.online("bob", "ws")
    for i in range(5):
        await a.chat(bob, f"m{i}", "hi")
        assert (await b.expect(7))["body"] == "hi"
    await b.send({"msgType": 15, "msgIdClient": "c"})  # convs: a two-digit msgType
    await b.expect(15)
    await a.send({"msgType": 3, "toUserId": alice, "msgIdClient": "self", "body": "x"})
    assert (await a.expect(8))["code"] == 400  # chatting with yourself
    refused = await srv.connect("tcp")
    await refused.send({"msgType": 1, "token": "bad"})
    assert (await refused.expect(8))["code"] == 401
    assert await refused.closed()
    await refused.close()  # the server reads on until the peer closes (no reset: docs)

    async with asyncio.timeout(TIMEOUT):  # the refused one is gone once its close is read
        tcp = value(await scrape(srv), "imhub_connections", protocol="tcp")
        while tcp != 1:  # each scrape is a request answered by the server: no busy loop
            tcp = value(await scrape(srv), "imhub_connections", protocol="tcp")
    m = await scrape(srv)
    assert value(m, "imhub_connections", protocol="tcp") == 1
    assert value(m, "imhub_connections", protocol="websocket") == 1
    assert value(m, "imhub_connections", protocol="http") == 1  # this scrape's
    assert value(m, "imhub_connections_opened_total", protocol="tcp") == 2
    assert value(m, "imhub_logins_total", result="ok") == 2
    assert value(m, "imhub_logins_total", result="refused") == 1
    assert value(m, "imhub_messages_in_total", msg_type="chat") == 6
    assert value(m, "imhub_messages_in_total", msg_type="convs") == 1
    assert value(m, "imhub_messages_out_total", msg_type="chat_answer") == 5
    assert value(m, "imhub_messages_out_total", msg_type="notice") == 5
    assert value(m, "imhub_messages_out_total", msg_type="convs") == 1
    assert value(m, "imhub_messages_out_total", msg_type="login") == 2
    assert value(m, "imhub_errors_total", code="400", via="protocol") == 1
    assert value(m, "imhub_errors_total", code="401", via="protocol") == 1
    assert value(m, "imhub_errors_total", code="404", via="http") == 1
    assert value(m, "imhub_send_answer_seconds_count") == 5
    assert 0 < value(m, "imhub_send_answer_seconds_sum") < 5
    assert value(m, "imhub_send_answer_seconds_bucket", le="+Inf") == 5
    batches = value(m, "imhub_write_batch_size_count")
    assert batches >= 7  # two logins and five messages, one at a time
    assert value(m, "imhub_write_batch_size_sum") >= 7
    assert value(m, "imhub_write_commit_seconds_count") == batches
    assert value(m, "imhub_write_queue") == 0
    assert value(m, "process_open_fds") > 0  # the process collector is registered too


async def test_a_dropped_slow_consumer_is_counted(
    make_server: Callable[..., ServerProcess],
) -> None:
    srv = make_server(max_outbound=64 * 1024)
    _alice, a = await srv.online("alice")
    bob = await srv.add_user("bob")
    slow = await srv.slow_reader(bob)
    body = "x" * 50_000  # 150 of them: more than the socket buffers and the allowance
    for i in range(150):
        await a.send({"msgType": 3, "toUserId": bob, "msgIdClient": f"m{i}", "body": body})
    for _ in range(150):
        await a.expect(4)
    assert await slow.closed(10)
    m = await scrape(srv)
    assert value(m, "imhub_slow_consumers_dropped_total") == 1
    assert value(m, "imhub_connections", protocol="tcp") == 1


def test_each_metrics_object_has_its_own_registry() -> None:
    one, two = Metrics(), Metrics()  # two apps in one process: no clash of names
    one.msgs_in[3] += 2
    assert b'imhub_messages_in_total{msg_type="chat"} 2.0' in one.exposition()
    assert b"imhub_messages_in_total{" not in two.exposition()


def test_histogram_buckets_are_inclusive_and_cumulative() -> None:
    h = Histogram([1, 2])
    for v in (0.5, 1, 1.5, 3):
        h.observe(v)
    family = h.family("h", "doc")
    got = {(s.name, s.labels.get("le")): s.value for s in family.samples}
    assert got[("h_bucket", "1")] == 2  # 0.5 and 1: le is "less than or equal"
    assert got[("h_bucket", "2")] == 3
    assert got[("h_bucket", "+Inf")] == 4
    assert got[("h_count", None)] == 4 and got[("h_sum", None)] == 6


def test_an_error_frame_is_counted_by_its_code_whatever_comes_before() -> None:
    m = Metrics()
    m.error_frame(b'{"msgType":8,"msgIdClient":"a,\\"code\\":1","code":429,"reason":"x"}')
    m.error_frame(b'{"msgType":8,"code":503}')
    assert m.errors == {(429, "protocol"): 1, (503, "protocol"): 1}
