"""The imhub client: keeps a user connected and hands the application every message once, in
order, whatever happens to the network or to the application.

``ImClient`` is the asyncio driver of ``core.SessionCore``, which holds every rule (what to
send on connect, what to hand over, when a link is dead). This module owns what the core
cannot: the socket (``link``), the clock and its timer, the reconnect loop with backoff, the
state file, the application's futures, listeners and the ``events()`` queue.

A message counts as *handed over* when the application has finished with it: for a listener,
when the listener returns; for ``events()``, when the application asks for the next event (or
stops iterating). Only then does the saved cursor pass it, so an application killed at any
instant gets again, after its restart, every message it had not finished with (at least once:
the one it was working on may come again; ``Message.msg_id_server`` tells them apart).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp

from imhub.client import arguments
from imhub.client.actions import Fail, Hand, Options, Resolve, Write
from imhub.client.backoff import backoff
from imhub.client.calls import Calls
from imhub.client.core import SessionCore
from imhub.client.errors import ClientClosed, ClientError, ConnectionLost
from imhub.client.events import Event, Sent, State
from imhub.client.handover import Handover
from imhub.client.link import Link, open_link
from imhub.client.store import Saved, StateFile
from imhub.protocol import codec
from imhub.protocol.messages import ClientType, ImMsg

log = logging.getLogger("imhub.client")

# A login token, or where to get a fresh one before each connect.
TokenSource = str | Callable[[], str] | Callable[[], Awaitable[str]]

__all__ = ["ClientClosed", "ClientError", "ConnectionLost", "ImClient", "TokenSource", "shared"]


class ImClient(Calls):
    def __init__(
        self,
        url: str,
        token: TokenSource,
        *,
        client_type: int = ClientType.PC,
        heartbeat_interval: float = 25.0,
        heartbeat_timeout: float = 10.0,
        backoff_base: float = 0.5,
        backoff_cap: float = 30.0,
        max_attempts: int | None = None,
        request_timeout: float = 15.0,
        state_file: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
        sync_page: int = 200,
        max_frame: int = 64 * 1024,
    ) -> None:
        self.url = url
        self._token = token
        self.client_type = client_type
        self.max_frame = max_frame  # the server's --max-frame
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.max_attempts = max_attempts
        self.request_timeout = request_timeout
        self._ssl = ssl_context
        self._store = StateFile(state_file) if state_file else None
        self._core = SessionCore(
            Options(
                client_type=client_type,
                heartbeat_interval=heartbeat_interval,
                heartbeat_timeout=heartbeat_timeout,
                request_timeout=request_timeout,
                sync_page=sync_page,
                renewable=not isinstance(token, str),
                keep_outbox=self._store is not None,
                saved=self._store.load() if self._store else Saved(),
            )
        )
        self._futures: dict[str, asyncio.Future[Any]] = {}
        self._handover = Handover(self._taken, self._closed)
        self._online = asyncio.Event()
        self._stopped = asyncio.Event()
        self._link: Link | None = None
        self._dropped: asyncio.Future[str] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._save_soon = False

    @property
    def state(self) -> State:
        return self._core.state

    @property
    def closed_reason(self) -> str:
        return self._core.closed_reason

    @property
    def user_id(self) -> int | None:
        return self._core.user_id

    def _closed(self) -> bool:
        return self._core.state is State.CLOSED

    # -- life cycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Connect (retrying as configured) and return once online; raises ``ClientClosed``
        if the client gives up or the server refuses the login."""
        if self._supervisor is None and self.state is State.IDLE:
            self._supervisor = asyncio.create_task(self._supervise(), name="imhub-client")
        await self._until_online()

    async def logout(self) -> None:
        """Log out on the server, then close; no reconnect."""
        if self.state is State.ONLINE:
            with contextlib.suppress(ClientError, TimeoutError):
                rid = self._core.logout(self._now())
                if rid is not None:
                    await self._answer(rid)
        await self.close("logged out")

    async def close(self, reason: str = "closed") -> None:
        """Close the connection; no reconnect. Unanswered sends fail with ``ClientClosed``
        (with a state file they stay in it, and are resent by the next start)."""
        self._core.close(reason)
        self._pump()
        if self._supervisor is not None and self._link is None:
            self._supervisor.cancel()  # between connections: nothing to say goodbye on
        if self._supervisor is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._supervisor
        self._save()
        if self._store is not None:
            self._store.close()
            self._store = None  # what the application still takes is not saved any more

    async def _until_online(self) -> None:
        online = asyncio.ensure_future(self._online.wait())
        stopped = asyncio.ensure_future(self._stopped.wait())
        await asyncio.wait({online, stopped}, return_when=asyncio.FIRST_COMPLETED)
        online.cancel()
        stopped.cancel()
        if self._closed():
            raise ClientClosed(self.closed_reason)

    async def _supervise(self) -> None:
        delays = backoff(self.backoff_base, self.backoff_cap)
        attempts = 0
        while not self._closed():
            self._core.attempt()
            self._pump()
            attempts += 1
            try:
                token = await self._fresh_token()
                link = await open_link(self.url, self.request_timeout, self._ssl)
            except (OSError, TimeoutError, aiohttp.ClientError) as exc:
                log.warning("connect attempt %d to %s failed: %s", attempts, self.url, exc)
            except Exception as exc:  # the application's token callable failed
                log.warning("connect attempt %d: no token: %r", attempts, exc, exc_info=True)
            else:
                await self._connection(link, token)
                if self._core.went_online:
                    attempts, delays = 0, backoff(self.backoff_base, self.backoff_cap)
            if self._closed():
                break
            if self._core.retry_at_once:
                continue
            if self.max_attempts is not None and attempts >= self.max_attempts:
                self._core.close(f"gave up after {attempts} attempts")
                self._pump()
                break
            delay = next(delays)
            log.info("reconnecting to %s in %.2f s", self.url, delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopped.wait(), delay)

    async def _fresh_token(self) -> str:
        """The token to log in with: the string given, or what the callable returns now."""
        if isinstance(self._token, str):
            return self._token
        token = self._token()
        if inspect.isawaitable(token):
            token = await token
        return token

    async def _connection(self, link: Link, token: str) -> None:
        """One connection, from login until it is lost or dropped."""
        if self._closed():  # closed while connecting
            link.abort()
            return
        self._link = link
        dropped = self._dropped = asyncio.get_running_loop().create_future()
        self._core.connected(token, self._now())
        self._pump()
        reader = asyncio.create_task(self._read(link))
        try:
            await asyncio.wait({reader, dropped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            reader.cancel()
            self._link = self._dropped = None
            reason = dropped.result() if dropped.done() else "closed by the server"
            if reader.done() and not reader.cancelled() and reader.result():
                reason = reader.result()
            self._core.lost(reason, self._now())
            self._pump()
        if self._closed():
            await link.close()  # deliberate: say goodbye, within a bound
        else:
            link.abort()

    async def _read(self, link: Link) -> str:
        try:
            while (data := await link.recv()) is not None:
                self._core.receive(data, self._now())
                self._pump()
        except (OSError, aiohttp.ClientError) as exc:
            return str(exc) or type(exc).__name__
        except Exception as exc:  # a fault of this library: give the connection up, log it
            log.exception("the client failed on a message from the server")
            return f"client error: {exc!r}"
        return "closed by the server"

    # -- carrying out what the core asks ---------------------------------------------------

    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    def _pump(self) -> None:
        if self._core.urgent:
            self._save()  # a send is saved before its message is written or control returns
        for action in self._core.actions():
            if isinstance(action, Write):
                if self._link is not None:
                    self._link.write(action.data)
            elif isinstance(action, Hand):
                self._handover.hand(action.event, action.number)
            elif isinstance(action, Resolve | Fail):
                future = self._futures.pop(action.key, None)
                if future is not None and not future.done():
                    if isinstance(action, Resolve):
                        future.set_result(action.value)
                    else:
                        future.set_exception(action.error)
            elif self._dropped is not None and not self._dropped.done():  # Drop
                self._dropped.set_result(action.reason)
        if self.state is State.ONLINE:
            self._online.set()
        else:
            self._online.clear()
        if self._closed():
            self._stopped.set()
            self._handover.wake()
        if self._core.urgent:
            self._save()
        self._schedule_save()
        self._arm_timer()

    def _arm_timer(self) -> None:
        deadline = self._core.deadline()
        if self._timer is not None:
            if deadline is not None and self._timer.when() == deadline:
                return
            self._timer.cancel()
            self._timer = None
        if deadline is not None and self.state is not State.CLOSED:
            self._timer = asyncio.get_running_loop().call_at(deadline, self._on_timer, deadline)

    def _on_timer(self, deadline: float) -> None:
        self._timer = None
        self._core.tick(max(self._now(), deadline))  # the loop may fire within its resolution
        self._pump()

    def _schedule_save(self) -> None:
        if self._store is not None and not self._save_soon:
            self._save_soon = True
            asyncio.get_running_loop().call_soon(self._save)

    def _save(self) -> None:
        self._save_soon = False
        changes = self._core.changes()
        if changes is not None and self._store is not None:
            self._store.apply(changes)

    # -- to the application ----------------------------------------------------------------

    def _taken(self, upto: int) -> None:
        """The application has finished with events up to ``upto``: saved at once."""
        self._core.taken(upto)
        self._save()

    def add_listener(self, listener: Callable[[Event], None]) -> None:
        """Call ``listener`` for every event, as it happens; an event counts as handed over
        when every listener has returned. Add listeners before ``start()``; one added later,
        while ``events()`` has not been used, first gets the events queued so far."""
        self._handover.add_listener(listener)

    def events(self) -> AsyncIterator[Event]:
        """Every event, in order; ends after the client has closed and all were taken. An
        event counts as handed over when the application asks for the next one (or stops)."""
        return self._handover.events()

    # -- the application's calls -----------------------------------------------------------

    async def send_chat(
        self,
        *,
        to_user: int | None = None,
        team: int | None = None,
        body: str,
        body_type: int = 0,
        voice_time: int | None = None,
        msg_id_client: str | None = None,
    ) -> Sent:
        """Send a message to a user or a group; returns once the server has stored it (or
        raises ``ClientError`` for a refusal, ``ClientClosed`` if the client closes first,
        ``ValueError`` for a malformed call). With a state file the message is saved before
        this call first gives up control. Survives reconnects: an unanswered message is resent
        with the same id. It has no deadline of its own: wrap it in ``asyncio.timeout`` for
        one (the message stays in the outbox and is still sent)."""
        if self._closed():
            raise ClientClosed(self.closed_reason)
        payload = arguments.chat(to_user, team, body, body_type, voice_time, msg_id_client)
        mid = payload["msgIdClient"]
        size = len(codec.encode_json(payload))
        if size > self.max_frame:  # the server would refuse it and close, at every resend
            raise ClientError(
                413, f"the message takes {size} bytes; the server accepts {self.max_frame}"
            )
        future = self._future(mid)
        self._core.send_chat(payload)
        self._pump()
        link = self._link
        if link is not None:
            # The write waits while the send buffer is full (back-pressure), but never past
            # the answer: if this link dies under it, the message is resent on the next one
            # and answered there, and this call returns then.
            writing = asyncio.ensure_future(link.drained())
            await asyncio.wait((writing, future), return_when=asyncio.FIRST_COMPLETED)
            writing.cancel()
        return await asyncio.shield(future)

    async def request(self, request: dict[str, Any]) -> ImMsg:
        """Send any protocol request once online and return its answer. Raises
        ``ClientError`` for a refusal, ``ConnectionLost`` if the link drops before the answer,
        ``ClientClosed`` if the client is closed, ``TimeoutError`` after ``request_timeout``."""
        arguments.request(request)
        await self._until_online()
        rid = self._core.call(request, self._now())
        return await self._answer(rid)

    async def _answer(self, rid: str) -> ImMsg:
        future = self._future(rid)
        self._pump()
        try:
            return await future  # type: ignore[no-any-return]
        except asyncio.CancelledError:
            self._core.abandon(rid)
            self._futures.pop(rid, None)
            raise

    def _future(self, key: str) -> asyncio.Future[Any]:
        future = self._futures.get(key)
        if future is None:
            future = self._futures[key] = asyncio.get_running_loop().create_future()
            future.add_done_callback(_retrieved)
        return future


_shared: dict[str, ImClient] = {}


def shared(url: str | None = None, token: TokenSource | None = None, **options: Any) -> ImClient:
    """The process's one client, as the seed has it: the first call (with ``url`` and
    ``token``) makes it, every later call returns it. Tests and tools make ``ImClient``s."""
    if "client" not in _shared:
        if url is None or token is None:
            raise RuntimeError("the shared client is not made yet: pass url and token")
        _shared["client"] = ImClient(url, token, **options)
    return _shared["client"]


def _retrieved(future: asyncio.Future[Any]) -> None:
    """Retrieve a call's outcome so that one nobody awaits any more is not reported by asyncio
    as never retrieved."""
    if not future.cancelled():
        future.exception()
