"""Prometheus metrics, one registry per ``App`` (tests run several apps in one process).

The send path counts with plain integers in this object, read only when ``/metrics`` is
scraped (a ``prometheus_client`` collector builds the families then). The client's own
``Counter.inc`` takes a lock and cost 0.57 µs here, ``Histogram.observe`` 1.05 µs: four of them
per message were 15 % of the server's CPU per message (docs/performance.md); a list increment
costs 0.03 µs and a histogram bucket 0.15 µs. Everything runs on the event loop's thread, so
nothing needs a lock.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from imhub.protocol.messages import MsgType

PROTOCOLS = ("tcp", "websocket", "http")
TCP, WEBSOCKET, HTTP = range(3)
# Counts per msgType: known types by name; a peer may send any number, kept under "other".
TYPE_SLOTS = 100  # outgoing types are parsed from one or two digits: 0–99
_NAMES = {int(t): t.name.lower() for t in MsgType}

# Seconds: from well under a millisecond (a small batch) to the seconds of a stalled disk.
LATENCY_BUCKETS = (
    0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
)  # fmt: skip
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


class Histogram:
    """Counts per bucket (upper bounds inclusive, as Prometheus's ``le``) and a sum."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)  # the last one: above every bound
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    def family(self, name: str, doc: str) -> HistogramMetricFamily:
        buckets, total = [], 0
        for bound, count in zip([*self.bounds, float("inf")], self.counts, strict=True):
            total += count
            buckets.append(("+Inf" if bound == float("inf") else f"{bound:g}", total))
        return HistogramMetricFamily(name, doc, buckets=buckets, sum_value=self.sum)


class Metrics:
    """What the server counts. Fields are written by the gateway, the services and the writer
    (each given this object by ``app.py``); ``collect`` turns them into metric families."""

    def __init__(self) -> None:
        self.opened = [0, 0, 0]  # connections by protocol (TCP, WEBSOCKET, HTTP)
        self.closed = [0, 0, 0]
        self.logins_ok = 0
        self.logins_refused = 0
        self.msgs_in = [0] * TYPE_SLOTS
        self.msgs_out = [0] * TYPE_SLOTS
        self.errors: dict[tuple[int, str], int] = {}  # (code, "protocol" | "http") -> count
        self.slow_consumers = 0
        self.rate_limited = 0  # messages refused over a rate limit (429)
        self.refused_connections = 0  # connections closed at once over a connection limit
        self.batch_size = Histogram(BATCH_BUCKETS)
        self.commit_seconds = Histogram(LATENCY_BUCKETS)
        self.send_answer_seconds = Histogram(LATENCY_BUCKETS)
        self.write_queue: Callable[[], int] = lambda: 0  # set by app.py: jobs waiting
        # A cluster node's bus and gap filler (their own counters), set by app.py.
        self.cluster: tuple[Any, Any] | None = None
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(_Collector(self))
        ProcessCollector(registry=self.registry)  # CPU, memory, open files of this process

    def error(self, code: int, via: str) -> None:
        key = (code, via)
        self.errors[key] = self.errors.get(key, 0) + 1

    def error_frame(self, payload: bytes) -> None:
        """Count an error frame (msgType 8) by its code, read from the encoded JSON: the code
        follows ``,"code":``, which no string field can contain unescaped."""
        at = payload.find(b',"code":')
        end = at + 8
        while at >= 0 and end < len(payload) and 48 <= payload[end] <= 57:
            end += 1
        self.error(int(payload[at + 8 : end]) if at >= 0 and end > at + 8 else 0, "protocol")

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


def _by_type(counts: list[int]) -> Iterator[tuple[str, int]]:
    other = 0
    for t, n in enumerate(counts):
        if n and t in _NAMES:
            yield _NAMES[t], n
        else:
            other += n
    if other:
        yield "other", other


class _Collector(Collector):
    def __init__(self, m: Metrics) -> None:
        self._m = m

    def collect(self) -> Iterator[Metric]:
        m = self._m
        conns = GaugeMetricFamily(
            "imhub_connections", "Open connections by protocol.", labels=["protocol"]
        )
        opened = CounterMetricFamily(
            "imhub_connections_opened", "Connections opened by protocol.", labels=["protocol"]
        )
        for i, name in enumerate(PROTOCOLS):
            conns.add_metric([name], m.opened[i] - m.closed[i])
            opened.add_metric([name], m.opened[i])
        yield conns
        yield opened
        logins = CounterMetricFamily("imhub_logins", "Logins by result.", labels=["result"])
        logins.add_metric(["ok"], m.logins_ok)
        logins.add_metric(["refused"], m.logins_refused)
        yield logins
        for field, direction in ((m.msgs_in, "in"), (m.msgs_out, "out")):
            family = CounterMetricFamily(
                f"imhub_messages_{direction}",
                f"Protocol messages {'received' if direction == 'in' else 'sent'} by msgType.",
                labels=["msg_type"],
            )
            for name, n in _by_type(field):
                family.add_metric([name], n)
            yield family
        errors = CounterMetricFamily(
            "imhub_errors",
            "Errors answered, by code: error frames (via=protocol) and HTTP responses (via=http).",
            labels=["code", "via"],
        )
        for (code, via), n in sorted(m.errors.items()):
            errors.add_metric([str(code), via], n)
        yield errors
        yield CounterMetricFamily(
            "imhub_slow_consumers_dropped",
            "Connections dropped for not reading what they were sent.",
            value=m.slow_consumers,
        )
        yield CounterMetricFamily(
            "imhub_rate_limited_messages",
            "Messages refused over a per-connection or per-user rate limit (429).",
            value=m.rate_limited,
        )
        yield CounterMetricFamily(
            "imhub_refused_connections",
            "Connections closed at once over a connection limit (in all, per address, rate).",
            value=m.refused_connections,
        )
        yield m.batch_size.family("imhub_write_batch_size", "Writes committed per batch.")
        yield m.commit_seconds.family(
            "imhub_write_commit_seconds", "Time to apply and commit one batch of writes."
        )
        yield m.send_answer_seconds.family(
            "imhub_send_answer_seconds", "From reading a chat message to writing its chat_answer."
        )
        yield GaugeMetricFamily(
            "imhub_write_queue", "Writes waiting for the writer.", value=m.write_queue()
        )
        if m.cluster is not None:
            yield from _cluster(*m.cluster)


def _cluster(bus: Any, filler: Any) -> Iterator[Metric]:
    yield GaugeMetricFamily("imhub_cluster_up", "1 while Redis is reachable.", value=int(bus.up))
    for name, doc, value in (
        ("published", "News published to the other nodes.", bus.published),
        ("received", "News received from the other nodes.", bus.received),
        ("dropped", "News not published while Redis was away (storage has it).", bus.dropped),
        ("outages", "Times the link to Redis was lost.", bus.outages),
        ("gap_fills", "Gaps in a connection's stream filled from storage.", filler.fills),
    ):
        yield CounterMetricFamily(f"imhub_cluster_{name}", doc, value=value)
