"""The imhub client: one object that keeps a user connected and hands the application every
message once, in order, whatever happens to the network.

- The first connect is retried with jittered exponential backoff (``backoff_base``,
  ``backoff_cap``, ``max_attempts``), each attempt logged.
- A dropped link (server restart, network loss, idle close) is re-established with the same
  backoff: log in again, re-enter the chats that were entered, sync what was missed since each
  conversation's cursor, and resend every message sent but not answered, with the same
  ``msgIdClient`` so the server stores it once.
- A heartbeat goes out every ``heartbeat_interval``; no answer within ``heartbeat_timeout``
  means the link is dead (even if the socket looks open), and it is replaced.
- ``logout()`` and ``close()`` end it: no reconnect.
- A token is a string, or a callable (plain or async) asked for a fresh one before every
  connect. When the server ends a session because its token expired (401), a client with a
  callable logs in again at once with a new token, as after any drop (nothing lost, nothing
  twice); with a string it closes, since the same token would be refused.
- Messages reach the application through ``events()`` (or listeners), de-duplicated and in
  each conversation's sequence order (``ordering.Ordering``).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import ssl
import uuid
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp

from imhub.client.backoff import backoff
from imhub.client.events import (
    Conversations,
    Event,
    GroupChanged,
    Message,
    Notice,
    Read,
    Recalled,
    SendFailed,
    Sent,
    State,
    StateChanged,
)
from imhub.client.link import Link, open_link
from imhub.client.ordering import Ordering
from imhub.client.store import Saved, StateFile
from imhub.protocol import codec
from imhub.protocol.conversation import conv_ids, conv_key
from imhub.protocol.errors import ErrorCode
from imhub.protocol.messages import ClientType, ImMsg, MsgType

log = logging.getLogger("imhub.client")

GROUP_EVENTS = frozenset(range(MsgType.TEAM_CREATE, MsgType.TEAM_DISMISS + 1))
# A login token, or where to get a fresh one before each connect.
TokenSource = str | Callable[[], str] | Callable[[], Awaitable[str]]
HEARTBEAT = codec.encode(ImMsg(msg_type=MsgType.HEARTBEAT))


class ClientError(Exception):
    """The server refused a request: ``code`` and ``reason`` as in docs/protocol.md."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason


class ClientClosed(ClientError):
    """The client was closed (or gave up) before the request could complete."""

    def __init__(self, reason: str) -> None:
        super().__init__(0, reason)


class ConnectionLost(ClientError):
    """The connection dropped before the answer came: the request may or may not have been
    applied. The client reconnects by itself; ask again once it is online."""

    def __init__(self, reason: str) -> None:
        super().__init__(0, reason)


class _LoginRefused(ClientError):
    """The server refused the login itself (401): the one refusal that retrying cannot help."""


class _LinkLost(Exception):
    """Inside the client only: the link in use is gone (public calls raise ConnectionLost)."""


@dataclass
class _Pending:
    payload: dict[str, Any]
    future: asyncio.Future[Sent] | None  # None: restored from the state file
    link: Link | None = None  # the link it was last written to


def address(conv: int) -> dict[str, int]:
    """The wire fields that name a conversation."""
    chat_id, team_id = conv_ids(conv)
    return {"teamId": team_id} if team_id else {"chatId": chat_id}


class ImClient:
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
        self.heartbeat_interval = heartbeat_interval
        self.heartbeat_timeout = heartbeat_timeout
        self.max_frame = max_frame  # the server's --max-frame
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.max_attempts = max_attempts
        self.request_timeout = request_timeout
        self.sync_page = sync_page
        self._ssl = ssl_context
        self._store = StateFile(state_file) if state_file else None
        self.state = State.IDLE
        self.closed_reason = ""
        self.user_id: int | None = None
        self._order: Ordering[Event] = Ordering()
        self._outbox: dict[str, _Pending] = {}
        self._waiting: dict[str, asyncio.Future[ImMsg]] = {}
        self._entered: set[int] = set()
        self._notices: deque[int] = deque(maxlen=10_000)
        # msgIdClients this client sent and got answered: a sync page that carries one of them
        # fills its place silently, as the answer did (the application has it already).
        self._sent: dict[str, None] = {}
        self._events: asyncio.Queue[Event] = asyncio.Queue()
        self._listeners: list[Callable[[Event], None]] = []
        self._link: Link | None = None
        self._online = asyncio.Event()
        self._stopped = asyncio.Event()
        self._pong = asyncio.Event()
        self._supervisor: asyncio.Task[None] | None = None
        self._resync: asyncio.Task[None] | None = None
        self._save_scheduled = False
        self._went_online = False  # whether the current connection got as far as online
        self._leaving = False  # logging out: the server's close is expected
        self._expired = False  # the server ended the current session: its token expired

    # -- life cycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Connect (retrying as configured) and return once online; raises ``ClientClosed``
        if the client gives up or the server refuses the login."""
        if self._supervisor is None:
            self._restore()
            self._supervisor = asyncio.create_task(self._supervise(), name="imhub-client")
        await self._until_online()

    async def logout(self) -> None:
        """Log out on the server, then close; no reconnect."""
        if self.state is State.ONLINE:
            self._leaving = True  # the server closes after answering: not a lost connection
            with contextlib.suppress(ClientError, TimeoutError, ConnectionError, OSError):
                await self._call({"msgType": MsgType.LOGOUT}, self.request_timeout)
        await self.close("logged out")

    async def close(self, reason: str = "closed") -> None:
        """Close the connection; no reconnect. Unanswered sends fail with ``ClientClosed``
        (with a state file they stay in it, and are resent by the next start)."""
        self._finish(reason)
        if self._link is not None:
            await self._link.close()
        if self._supervisor is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._supervisor
        self._save()

    def _finish(self, reason: str) -> None:
        if self.state is State.CLOSED:
            return
        self.closed_reason = reason
        self._stopped.set()
        for pending in self._outbox.values():
            if pending.future is not None and not pending.future.done():
                pending.future.set_exception(ClientClosed(reason))
        if self._store is None:
            self._outbox.clear()
        self._set_state(State.CLOSED, reason)

    async def _until_online(self) -> None:
        online = asyncio.ensure_future(self._online.wait())
        stopped = asyncio.ensure_future(self._stopped.wait())
        await asyncio.wait({online, stopped}, return_when=asyncio.FIRST_COMPLETED)
        online.cancel()
        stopped.cancel()
        if self.state is State.CLOSED:
            raise ClientClosed(self.closed_reason)

    async def _supervise(self) -> None:
        delays = backoff(self.backoff_base, self.backoff_cap)
        attempts = 0
        was_online = False
        while not self._stopped.is_set():
            self._set_state(State.RECONNECTING if was_online else State.CONNECTING)
            attempts += 1
            renew = False
            try:
                token = await self._fresh_token()
                link = await open_link(self.url, self.request_timeout, self._ssl)
            except (OSError, TimeoutError, aiohttp.ClientError) as exc:
                log.warning("connect attempt %d to %s failed: %s", attempts, self.url, exc)
            except Exception as exc:  # the application's token callable failed
                log.warning("connect attempt %d: no token: %r", attempts, exc, exc_info=True)
            else:
                self._expired = False
                try:
                    await self._run(link, token)
                except _LoginRefused as exc:  # retrying cannot help
                    self._finish(f"login refused: {exc}")
                except (_LinkLost, ClientError, OSError, TimeoutError, aiohttp.ClientError) as exc:
                    # Anything else refused while coming online (a sync) is not final: the
                    # link is given up and tried again with backoff.
                    if self._expired and isinstance(self._token, str):
                        self._finish("token expired (pass a callable to renew it)")
                    elif self._expired:
                        log.info("token expired: logging in again with a fresh one")
                        renew = self._went_online  # at once, unless it never got online
                    elif not self._leaving and not self._stopped.is_set():
                        log.warning(
                            "connection to %s lost: %s", self.url, exc or type(exc).__name__
                        )
                finally:
                    self._online.clear()
                    self._link = None
                    if self._went_online and not self._stopped.is_set():
                        self._set_state(State.RECONNECTING)  # at the drop, not at the retry
                    await link.close()
                    self._fail_waiting()
                if self.state is State.ONLINE or self._went_online:
                    was_online, attempts = True, 0
                    delays = backoff(self.backoff_base, self.backoff_cap)
            if self._stopped.is_set():
                break
            if renew:
                continue
            if self.max_attempts is not None and attempts >= self.max_attempts:
                self._finish(f"gave up after {attempts} attempts")
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

    async def _run(self, link: Link, token: str) -> None:
        """One connection: log in, re-enter, sync, resend, then serve until it drops."""
        self._link = link
        self._went_online = False
        reader = asyncio.create_task(self._read(link))
        heartbeat: asyncio.Task[None] | None = None
        try:
            try:
                login = await self._call(
                    {
                        "msgType": MsgType.LOGIN,
                        "token": token,
                        "fromClientType": self.client_type,
                        "backlog": False,
                    },
                    self.request_timeout,
                    reader,
                )
            except ClientError as exc:
                if exc.code == 401:  # the token or the user: final
                    raise _LoginRefused(exc.code, exc.reason) from None
                raise _LinkLost(f"login not taken now: {exc}") from None  # e.g. 503: retry
            self.user_id = login.user_id
            for conv in list(self._entered):
                try:
                    await self._call({"msgType": MsgType.CHAT_ENTER, **address(conv)}, None, reader)
                except ClientError:
                    self._entered.discard(conv)  # no longer ours
            await self._sync(reader)
            while unsent := [p for p in self._outbox.values() if p.link is not link]:
                for p in unsent:
                    p.link = link
                    await link.send(codec.encode_json(p.payload))
            self._went_online = True
            self._set_state(State.ONLINE)
            self._online.set()
            heartbeat = asyncio.create_task(self._heartbeat(link))
            done, _ = await asyncio.wait({reader, heartbeat}, return_when=asyncio.FIRST_COMPLETED)
            for finished in done:
                finished.result()
        finally:
            for task in (reader, heartbeat, self._resync):
                if task is not None:
                    task.cancel()

    async def _read(self, link: Link) -> None:
        while (data := await link.recv()) is not None:
            try:
                msg = codec.decode(data)
            except Exception:
                log.warning("undecodable message from the server: %r", data[:200])
                continue
            self._receive(msg)
            if self._expired:  # the server closes next; nothing after this counts
                raise _LinkLost("token expired")
        raise _LinkLost("closed by the server")

    async def _heartbeat(self, link: Link) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_interval)  # the heartbeat period itself
            self._pong.clear()
            try:
                # The deadline covers the write too: behind a send buffer that a dead peer
                # never empties, the heartbeat itself cannot leave, and that is the sign.
                async with asyncio.timeout(self.heartbeat_timeout):
                    await link.send(HEARTBEAT)
                    await self._pong.wait()
            except TimeoutError:
                raise _LinkLost(
                    f"no heartbeat answer within {self.heartbeat_timeout:g} s"
                ) from None

    # -- requests --------------------------------------------------------------------------

    async def _call(
        self,
        request: dict[str, Any],
        within: float | None = None,
        reader: asyncio.Task[None] | None = None,
    ) -> ImMsg:
        """Send a request named by a fresh ``msgIdClient`` and wait for its answer."""
        link = self._link
        if link is None:
            raise _LinkLost("not connected")
        rid = "q-" + uuid.uuid4().hex
        future: asyncio.Future[ImMsg] = asyncio.get_running_loop().create_future()
        self._waiting[rid] = future
        try:
            await link.send(codec.encode_json({**request, "msgIdClient": rid}))
            waiters: set[asyncio.Future[Any]] = {future}
            if reader is not None:
                waiters.add(reader)  # a dropped link must not leave us waiting
            done, _ = await asyncio.wait(
                waiters,
                timeout=within or self.request_timeout,
                return_when=asyncio.FIRST_COMPLETED,
            )
            if future in done:
                return future.result()
            if reader is not None and reader in done:
                reader.result()
            raise TimeoutError(f"no answer to msgType {request['msgType']}")
        finally:
            self._waiting.pop(rid, None)
            if future.done() and not future.cancelled():
                # Failed by the drop while this call was being cancelled (a background sync):
                # retrieved here, or asyncio reports it as never retrieved.
                future.exception()

    async def request(self, request: dict[str, Any]) -> ImMsg:
        """Send any protocol request once online and return its answer. Raises
        ``ClientError`` for a refusal, ``ConnectionLost`` if the link drops before the answer,
        ``ClientClosed`` if the client is closed, ``TimeoutError`` after ``request_timeout``."""
        await self._until_online()
        try:
            return await self._call(request)
        except TimeoutError:
            raise
        except (_LinkLost, OSError, aiohttp.ClientError) as exc:  # the link, not the request
            raise ConnectionLost(str(exc) or type(exc).__name__) from None

    def _fail_waiting(self) -> None:
        for future in self._waiting.values():
            if not future.done():
                future.set_exception(_LinkLost("connection lost"))
        self._waiting.clear()

    # -- what arrives ----------------------------------------------------------------------

    def _receive(self, msg: ImMsg) -> None:
        t = msg.msg_type
        rid = msg.msg_id_client
        if t == MsgType.HEARTBEAT:
            self._pong.set()
        elif t == MsgType.CHAT_ANSWER:
            self._answered(msg)
        elif rid is not None and rid in self._waiting:
            future = self._waiting.pop(rid)
            if not future.done():
                if t == MsgType.ERROR:
                    future.set_exception(ClientError(msg.code or 0, msg.reason or ""))
                else:
                    future.set_result(msg)
        elif t == MsgType.ERROR:
            if rid is not None and rid in self._outbox:
                self._refused(rid, msg)
            elif msg.code == ErrorCode.UNAUTHORIZED:  # about no request: the session is over
                self._expired = True
            else:
                log.warning("server error %s: %s", msg.code, msg.reason)
        else:
            self._deliver(msg)

    def _deliver(self, msg: ImMsg, from_sync: bool = False) -> None:
        """Hand a delivered message, recall or group event over in order (``from_sync``: it
        came in a sync page, which may start a conversation)."""
        t = msg.msg_type
        if t == MsgType.READ:
            self._emit(Read(msg.chat_id, msg.team_id, msg.from_user_id or 0, msg.seq or 0))
            return
        if t == MsgType.NOTICE and msg.seq is None:
            if msg.notice_id is not None and msg.notice_id not in self._notices:
                self._notices.append(msg.notice_id)
                self._emit(
                    Notice(
                        msg.notice_id,
                        msg.from_user_id or 0,
                        msg.body_type or 0,
                        msg.body or "",
                        msg.send_time or 0,
                    )
                )
            return
        if msg.seq is None:
            return
        conv = conv_key(msg.chat_id, msg.team_id)
        item: Event | None
        if t in (MsgType.CHAT, MsgType.NOTICE):
            mid = msg.msg_id_client or ""
            mine = msg.from_user_id == self.user_id and (mid in self._outbox or mid in self._sent)
            item = None if mine else self._message(msg, t == MsgType.CHAT and not from_sync)
        elif t == MsgType.RECALL:
            item = Recalled(
                msg.chat_id, msg.team_id, msg.seq, msg.ref_seq or 0, msg.from_user_id or 0
            )
        elif t in GROUP_EVENTS:
            item = GroupChanged(
                t,
                msg.team_id or 0,
                msg.seq,
                msg.from_user_id or 0,
                msg.body or "",
                tuple(msg.member_ids or ()),
                msg.team_name,
            )
        else:
            return
        self._ordered(conv, msg.seq, item, from_sync)

    @staticmethod
    def _message(msg: ImMsg, as_chat: bool) -> Message:
        return Message(
            chat_id=msg.chat_id,
            team_id=msg.team_id,
            seq=msg.seq or 0,
            msg_id_server=msg.msg_id_server or 0,
            msg_id_client=msg.msg_id_client or "",
            from_user_id=msg.from_user_id or 0,
            to_user_id=msg.to_user_id,
            body_type=msg.body_type or 0,
            body=msg.body or "",
            send_time=msg.send_time or 0,
            recalled=bool(msg.recalled),
            shown_as_chat=as_chat,
        )

    def _ordered(self, conv: int, seq: int, item: Event | None, start: bool = False) -> None:
        for ready in self._order.accept(conv, seq, item, start):
            self._emit(ready)
        self._schedule_save()
        if self._order.gaps() and self.state is State.ONLINE and self._resync is None:
            self._resync = asyncio.create_task(self._fill_gaps())

    async def _fill_gaps(self) -> None:
        try:
            await self._sync(None)
        except (ClientError, _LinkLost, TimeoutError, OSError) as exc:
            log.warning("sync after a gap failed: %s", exc)
        finally:
            self._resync = None

    async def _sync(self, reader: asyncio.Task[None] | None) -> None:
        """Ask for everything after each cursor, page by page, until nothing more follows."""
        while True:
            convs = [{**address(c), "seq": s} for c, s in self._order.positions().items()]
            page = await self._call(
                {"msgType": MsgType.SYNC, "convs": convs, "limit": self.sync_page}, None, reader
            )
            for m in page.messages or ():
                self._deliver(m, from_sync=True)
            for c in page.refused or ():  # not ours (any more): stop asking for it
                self._order.forget(conv_key(c.chat_id, c.team_id))
            if not page.more:
                states = page.convs or []
                self._order.know((conv_key(c.chat_id, c.team_id), c.last_seq or 0) for c in states)
                self._emit(Conversations([codec_dict(c) for c in states]))
                return

    def _answered(self, msg: ImMsg) -> None:
        pending = self._outbox.pop(msg.msg_id_client or "", None)
        if pending is None:
            return  # the answer to a resend of something already answered
        self._sent[pending.payload["msgIdClient"]] = None
        if len(self._sent) > 10_000:
            del self._sent[next(iter(self._sent))]
        sent = Sent(
            msg.chat_id,
            msg.team_id,
            msg.seq or 0,
            msg.msg_id_server or 0,
            msg.msg_id_client or "",
            msg.send_time or 0,
        )
        self._ordered(conv_key(msg.chat_id, msg.team_id), sent.seq, None)
        if pending.future is None:
            self._emit(sent)
        elif not pending.future.done():
            pending.future.set_result(sent)

    def _refused(self, mid: str, msg: ImMsg) -> None:
        code = msg.code or 0
        if ErrorCode.is_retryable(code):
            # Nothing was stored: the next connection resends it with the same id.
            self._outbox[mid].link = None
            return
        pending = self._outbox.pop(mid)
        self._schedule_save()
        if pending.future is None:
            self._emit(SendFailed(mid, code, msg.reason or ""))
        elif not pending.future.done():
            pending.future.set_exception(ClientError(code, msg.reason or ""))

    # -- to the application ----------------------------------------------------------------

    def _emit(self, event: Event) -> None:
        self._events.put_nowait(event)
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:
                log.exception("event listener failed")

    def _set_state(self, state: State, reason: str = "") -> None:
        if state is not self.state:
            log.info("imhub client %s%s", state.value, f": {reason}" if reason else "")
            self.state = state
            self._emit(StateChanged(state, reason))

    def add_listener(self, listener: Callable[[Event], None]) -> None:
        """Call ``listener`` for every event, as it happens (in addition to ``events()``)."""
        self._listeners.append(listener)

    async def events(self) -> AsyncIterator[Event]:
        """Every event, in order; ends after the client has closed and all were taken."""
        while True:
            if self.state is State.CLOSED and self._events.empty():
                return
            getter = asyncio.ensure_future(self._events.get())
            stopped = asyncio.ensure_future(self._stopped.wait())
            await asyncio.wait({getter, stopped}, return_when=asyncio.FIRST_COMPLETED)
            stopped.cancel()
            if getter.done():
                yield getter.result()
            else:
                getter.cancel()

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
        raises ``ClientError`` for a refusal, ``ClientClosed`` if the client closes first).
        Survives reconnects: an unanswered message is resent with the same id."""
        if self.state is State.CLOSED:
            raise ClientClosed(self.closed_reason)
        if (to_user is None) == (team is None):
            raise ValueError("give exactly one of to_user and team")
        mid = msg_id_client or uuid.uuid4().hex
        earlier = self._outbox.get(mid)
        if earlier is not None:  # the same message, sent again before its answer: one answer
            if earlier.future is None:  # restored from the state file: now someone waits
                earlier.future = asyncio.get_running_loop().create_future()
            return await asyncio.shield(earlier.future)
        payload: dict[str, Any] = {
            "msgType": MsgType.CHAT,
            "msgIdClient": mid,
            "bodyType": body_type,
            "body": body,
        }
        payload.update({"teamId": team} if team is not None else {"toUserId": to_user})
        if voice_time:
            payload["time"] = voice_time
        size = len(codec.encode_json(payload))
        if size > self.max_frame:  # the server would refuse it and close, at every resend
            raise ClientError(
                413, f"the message takes {size} bytes; the server accepts {self.max_frame}"
            )
        future: asyncio.Future[Sent] = asyncio.get_running_loop().create_future()
        pending = self._outbox[mid] = _Pending(payload, future)
        self._schedule_save()
        link = self._link
        if self.state is State.ONLINE and link is not None:
            pending.link = link
            # The write waits while the send buffer is full (back-pressure), but never past
            # the answer: if this link dies under it, the message is resent on the next one
            # and answered there, and this call returns then.
            writing = asyncio.ensure_future(link.send(codec.encode_json(payload)))
            writing.add_done_callback(_quietly)  # a dead link's error: resent on reconnect
            await asyncio.wait((writing, future), return_when=asyncio.FIRST_COMPLETED)
            if not writing.done():
                writing.cancel()
        return await future

    async def enter(self, *, chat_id: int | None = None, team_id: int | None = None) -> int:
        """Show a conversation: its messages arrive as chat and are read; returns the read
        position. Re-entered automatically after a reconnect."""
        conv = conv_key(chat_id, team_id)
        answer = await self.request({"msgType": MsgType.CHAT_ENTER, **address(conv)})
        self._entered.add(conv)
        self._schedule_save()
        return answer.seq or 0

    async def quit(self, *, chat_id: int | None = None, team_id: int | None = None) -> None:
        conv = conv_key(chat_id, team_id)
        self._entered.discard(conv)
        self._schedule_save()
        await self.request({"msgType": MsgType.CHAT_QUIT, **address(conv)})

    async def read(
        self, seq: int, *, chat_id: int | None = None, team_id: int | None = None
    ) -> int:
        """Mark read up to ``seq``; returns the read position."""
        answer = await self.request(
            {"msgType": MsgType.READ, "seq": seq, **address(conv_key(chat_id, team_id))}
        )
        return answer.seq or 0

    async def recall(
        self, seq: int, *, chat_id: int | None = None, team_id: int | None = None
    ) -> int:
        """Recall your message ``seq``; returns the recall's own position."""
        conv = conv_key(chat_id, team_id)
        answer = await self.request({"msgType": MsgType.RECALL, "seq": seq, **address(conv)})
        self._ordered(conv, answer.seq or 0, None)
        return answer.seq or 0

    async def history(
        self,
        *,
        chat_id: int | None = None,
        team_id: int | None = None,
        before_seq: int | None = None,
        limit: int = 50,
    ) -> tuple[list[Message], bool]:
        """A page of older messages (oldest first) and whether there are more before it."""
        request: dict[str, Any] = {
            "msgType": MsgType.HISTORY,
            "limit": limit,
            **address(conv_key(chat_id, team_id)),
        }
        if before_seq is not None:
            request["beforeSeq"] = before_seq
        answer = await self.request(request)
        messages = [
            self._message(m, False) for m in answer.messages or () if m.msg_type == MsgType.CHAT
        ]
        return messages, bool(answer.more)

    async def unread(self) -> list[dict[str, Any]]:
        answer = await self.request({"msgType": MsgType.UNREAD})
        return [codec_dict(u) for u in answer.unread or ()]

    async def conversations(self) -> list[dict[str, Any]]:
        answer = await self.request({"msgType": MsgType.CONVS})
        return [codec_dict(c) for c in answer.convs or ()]

    async def receipts(
        self, seq: int, *, chat_id: int | None = None, team_id: int | None = None
    ) -> tuple[int, list[int]]:
        """How many have read message ``seq``, and who."""
        answer = await self.request(
            {
                "msgType": MsgType.RECEIPTS,
                "seq": seq,
                "withReaders": True,
                **address(conv_key(chat_id, team_id)),
            }
        )
        return answer.read_num or 0, list(answer.reader_ids or ())

    async def group(self, op: MsgType, **fields: Any) -> ImMsg:
        """A group operation (``MsgType.TEAM_CREATE`` … ``TEAM_INFO``), e.g.
        ``group(MsgType.TEAM_CREATE, teamName="crew", memberIds=[2, 3])``."""
        answer = await self.request({"msgType": op, **fields})
        if answer.team_id and answer.seq:
            self._ordered(-answer.team_id, answer.seq, None)
        return answer

    # -- the state file --------------------------------------------------------------------

    def _restore(self) -> None:
        if self._store is None:
            return
        saved = self._store.load()
        self._order.cursors.update(saved.cursors)
        self._entered.update(saved.entered)
        for payload in saved.outbox:
            self._outbox[str(payload["msgIdClient"])] = _Pending(payload, None)

    def _schedule_save(self) -> None:
        if self._store is not None and not self._save_scheduled:
            self._save_scheduled = True
            asyncio.get_running_loop().call_soon(self._save)

    def _save(self) -> None:
        self._save_scheduled = False
        if self._store is not None:
            self._store.save(
                Saved(
                    dict(self._order.cursors),
                    [p.payload for p in self._outbox.values()],
                    sorted(self._entered),
                )
            )


def codec_dict(value: Any) -> dict[str, Any]:
    """A protocol struct as the plain dict the application gets (camelCase keys)."""
    import msgspec

    return dict(msgspec.to_builtins(value))


_shared: dict[str, ImClient] = {}


def shared(url: str | None = None, token: TokenSource | None = None, **options: Any) -> ImClient:
    """The process's one client, as the seed has it: the first call (with ``url`` and
    ``token``) makes it, every later call returns it. Tests and tools make ``ImClient``s."""
    if "client" not in _shared:
        if url is None or token is None:
            raise RuntimeError("the shared client is not made yet: pass url and token")
        _shared["client"] = ImClient(url, token, **options)
    return _shared["client"]


def _quietly(task: asyncio.Future[Any]) -> None:
    """Retrieve a write's outcome so that a failed one is not reported as never retrieved."""
    if not task.cancelled():
        task.exception()
