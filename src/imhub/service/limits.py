"""Limits that keep one client, one user or one address from starving the others.

Token buckets (a rate and a burst) for messages per connection and per user, new connections
per remote address and HTTP API requests per key; counters for connections in total, per
address and per user. Every check is a few arithmetic operations on the event loop, made
before any work is done for what it refuses (nothing decoded further, stored or fanned out).

Everything here is per process: on a cluster each node counts its own connections and
messages (docs/security.md, "Limits").
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Callable
from typing import Any

from imhub.config import Config

Clock = Callable[[], float]
# Refusals a connection may take in a row (beyond what its rate refills) before it is closed:
# persistent excess. Few, so that a flood costs little more than its first burst.
REFUSAL_BURST = 100
# Messages a connection may send before its login is answered (the login, a few heartbeats):
# more is a peer without a token using the server's time, and it is closed.
BEFORE_LOGIN = 10
SWEEP_FROM = 1024  # entries of a table of buckets before it is first swept


class Bucket:
    """A token bucket: ``burst`` tokens at most, refilled at ``rate`` per second."""

    __slots__ = ("stamp", "tokens")

    def __init__(self, burst: float, now: float) -> None:
        self.tokens = float(burst)
        self.stamp = now

    def take(self, rate: float, burst: float, now: float) -> bool:
        """Take one token if there is one. A ``rate`` of 0 means no limit."""
        if rate <= 0:
            return True
        tokens = min(burst, self.tokens + (now - self.stamp) * rate)
        self.stamp = now
        if tokens >= 1.0:
            self.tokens = tokens - 1.0
            return True
        self.tokens = tokens
        return False

    def wait(self, rate: float) -> float:
        """Seconds until the next token (after a refused ``take``)."""
        return (1.0 - self.tokens) / rate if rate > 0 else 0.0

    def full(self, rate: float, burst: float, now: float) -> bool:
        return rate <= 0 or self.tokens + (now - self.stamp) * rate >= burst


class ConnBudget:
    """One connection's message bucket, and its bucket of refusals: a connection that keeps
    sending while refused (more than a burst of refusals, faster than the rate) is closed."""

    __slots__ = ("address", "before_login", "cut", "refusals", "sends")

    def __init__(self, burst: float, now: float, address: str | None) -> None:
        self.sends = Bucket(burst, now)
        self.refusals = Bucket(min(burst, REFUSAL_BURST), now)
        self.cut = False  # closed for persistent excess: read no further
        self.address = address  # its address's key (None: exempt)
        self.before_login = 0  # messages read while no user was logged in


def address_key(host: str) -> str:
    """What one "address" is: an IPv4 address, or an IPv6 /64 (one subscriber's network,
    which hands its hosts any number of addresses)."""
    if ":" not in host:
        return host
    try:
        return str(ipaddress.IPv6Network(f"{host.split('%', 1)[0]}/64", strict=False))
    except ValueError:
        return host


class Limits:
    """The process's counters and buckets, and the checks the gateway and services call."""

    def __init__(self, config: Config, clock: Clock) -> None:
        self.config = config
        self.clock = clock
        self.exempt = frozenset(
            address_key(a) for a in config.limit_exempt.replace(",", " ").split()
        )
        self.connections = 0
        self._admitted: dict[object, str | None] = {}  # peername -> address key (None: exempt)
        self._by_address: dict[str, int] = {}
        self._connect: dict[str, Bucket] = {}  # address -> new-connection bucket
        self._by_user: dict[int, int] = {}
        self._user_sends: dict[int, Bucket] = {}
        self._api: dict[str, Bucket] = {}
        self._address_sends: dict[str, Bucket] = {}
        self._http: dict[str, Bucket] = {}
        self._sweep_at: dict[int, int] = {}  # a table's size at which it is swept next

    # -- connections -------------------------------------------------------------------------

    def admit(self, peername: object) -> str | None:
        """Count a new connection from ``peername``; None if admitted, else why it is not
        (then it is not counted, and the caller closes it at once)."""
        cfg = self.config
        if self.connections >= cfg.max_connections:
            return "connections"
        if not isinstance(peername, tuple) or peername in self._admitted:
            return None  # no address to count it by (gone before it was accepted)
        key = address_key(str(peername[0]))
        if key in self.exempt:
            self._admitted[peername] = None
            self.connections += 1
            return None
        if self._by_address.get(key, 0) >= cfg.max_connections_per_address:
            return "connections from this address"
        bucket = self._bucket(self._connect, key, cfg.connect_rate, cfg.connect_burst)
        if not bucket.take(cfg.connect_rate, cfg.connect_burst, self.clock()):
            return "new connections from this address"
        self._admitted[peername] = key
        self._by_address[key] = self._by_address.get(key, 0) + 1
        self.connections += 1
        return None

    def release(self, peername: object) -> None:
        """The connection from ``peername`` is gone (idempotent)."""
        if peername not in self._admitted:
            return
        key = self._admitted.pop(peername)
        self.connections -= 1
        if key is not None:
            left = self._by_address[key] - 1
            if left:
                self._by_address[key] = left
            else:
                del self._by_address[key]

    def _bucket(self, table: dict[Any, Bucket], key: Any, rate: float, burst: int) -> Bucket:
        """``table``'s bucket for ``key``, made full when there is none. Buckets that are full
        again (unused for a burst's worth of time) are forgotten whenever a table doubles
        since it was last swept: the tables stay as small as the set of addresses, users and
        keys active lately, at a constant cost per new entry."""
        bucket = table.get(key)
        if bucket is not None:
            return bucket
        now = self.clock()
        if len(table) >= self._sweep_at.get(id(table), SWEEP_FROM):
            for old in [k for k, b in table.items() if b.full(rate, burst, now)]:
                del table[old]
            self._sweep_at[id(table)] = max(SWEEP_FROM, 2 * len(table))
        bucket = table[key] = Bucket(burst, now)
        return bucket

    def join_user(self, user_id: int) -> bool:
        """A login of ``user_id``: False when the user has as many connections as allowed."""
        count = self._by_user.get(user_id, 0)
        if count >= self.config.max_connections_per_user:
            return False
        self._by_user[user_id] = count + 1
        return True

    def leave_user(self, user_id: int) -> None:
        left = self._by_user.get(user_id, 0) - 1
        if left > 0:
            self._by_user[user_id] = left
        else:  # its bucket stays until it is full again: reconnecting refills nothing
            self._by_user.pop(user_id, None)

    # -- messages ----------------------------------------------------------------------------

    def message(self, budget: ConnBudget, user_id: int | None) -> bool | None:
        """One message from a connection: True to handle it, False to refuse it (429), None
        to refuse it and close the connection (persistent excess, or more than
        ``BEFORE_LOGIN`` messages with no user logged in). Its connection's, its user's and its
        address's buckets must all have a token."""
        cfg = self.config
        now = self.clock()
        if user_id is None:
            budget.before_login += 1
            if budget.before_login > BEFORE_LOGIN:
                budget.cut = True
                return None
        rate = cfg.msg_rate
        if budget.sends.take(rate, cfg.msg_burst, now):
            rate = cfg.user_msg_rate
            if user_id is None or self._bucket(
                self._user_sends, user_id, rate, cfg.user_msg_burst
            ).take(rate, cfg.user_msg_burst, now):
                rate = cfg.address_msg_rate
                if budget.address is None or self._bucket(
                    self._address_sends, budget.address, rate, cfg.address_msg_burst
                ).take(rate, cfg.address_msg_burst, now):
                    return True
        if budget.refusals.take(rate, min(cfg.msg_burst, REFUSAL_BURST), now):
            return False
        budget.cut = True
        return None

    def budget(self, peername: object) -> ConnBudget:
        """The message budget of a new connection from ``peername`` (as admitted)."""
        return ConnBudget(self.config.msg_burst, self.clock(), self._admitted.get(peername))

    # -- HTTP API ----------------------------------------------------------------------------

    def api_request(self, key: str) -> float:
        """One API request with ``key``: 0 to serve it, else the seconds to wait (429)."""
        cfg = self.config
        now = self.clock()
        bucket = self._bucket(self._api, key, cfg.api_rate, cfg.api_burst)
        if bucket.take(cfg.api_rate, cfg.api_burst, now):
            return 0.0
        return max(bucket.wait(cfg.api_rate), 1e-3)

    def http_request(self, host: str | None) -> float:
        """One HTTP request without the API key (a public route, or no or a wrong key) from
        ``host``: 0 to serve it, else the seconds to wait (429). Exempt addresses: 0."""
        cfg = self.config
        key = address_key(host or "")
        if key in self.exempt:
            return 0.0
        bucket = self._bucket(self._http, key, cfg.http_rate, cfg.http_burst)
        if bucket.take(cfg.http_rate, cfg.http_burst, self.clock()):
            return 0.0
        return max(bucket.wait(cfg.http_rate), 1e-3)


def retry_after(seconds: float) -> str:
    """A ``Retry-After`` value: whole seconds, at least 1."""
    return str(max(1, math.ceil(seconds)))
