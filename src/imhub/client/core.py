"""The client's session, without I/O: every rule of staying connected and handing messages
over, as a state machine that a driver feeds and obeys (in the manner of h11, and of aioquic's
``QuicConnection`` for timers: ``deadline()`` says when to call ``tick(now)``).

In: a connection opened (``connected``), a message from the server (``receive``), the
connection gone (``lost``), the clock (``tick``), the application's calls (``send_chat``,
``call``, ``close``, ``taken``). Out (``actions()``): frames to write, events to hand over,
calls to resolve or fail, the connection to drop; ``changes()`` gives what to persist.

One connection's life: log in, re-enter the entered conversations, sync every conversation
from its cursor page by page, resend the unanswered outbox, then ONLINE with heartbeats.
Any failure on the way drops the connection and the driver tries again, except a refused
login (401), which closes the client.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from imhub.client.actions import (
    Action,
    Call,
    Drop,
    Fail,
    Hand,
    Handler,
    Options,
    Pending,
    Phase,
    Resolve,
    Write,
    address,
)
from imhub.client.errors import ClientClosed, ClientError, ConnectionLost
from imhub.client.events import Event, SendFailed, Sent, State, StateChanged
from imhub.client.inbox import Inbox
from imhub.client.outbox import Outbox
from imhub.client.requests import Heartbeat, Requests
from imhub.client.store import Changes
from imhub.protocol import codec
from imhub.protocol.conversation import conv_key
from imhub.protocol.errors import ErrorCode
from imhub.protocol.messages import ImMsg, MsgType

log = logging.getLogger("imhub.client")

HEARTBEAT = codec.encode(ImMsg(msg_type=MsgType.HEARTBEAT))
RESEND_AFTER = 1.0  # s: a send refused as retryable (500) is tried again this much later


class SessionCore:
    def __init__(self, options: Options) -> None:
        self.o = options
        self.state = State.IDLE
        self.phase = Phase.OFFLINE
        self.closed_reason = ""
        self.user_id: int | None = None
        self.retry_at_once = False  # after the last loss: reconnect without a backoff delay
        self.went_online = False  # the current (or last) connection got as far as ONLINE
        self.entered: set[int] = set(options.saved.entered)
        self.outbox = Outbox(options.saved.outbox)
        self._actions: list[Action] = []
        self._events = 0
        self.inbox = Inbox(options.saved.cursors, self._hand)
        self._entered_changed = False
        self._calls = Requests(options.request_timeout)
        self._conn = 0
        self._now = 0.0
        self._heartbeat = Heartbeat(options.heartbeat_interval, options.heartbeat_timeout)
        self._resend_at: float | None = None
        self._entering: set[str] = set()
        self._gap_sync = False
        self._expired = ""  # the session was ended by the server: why (token expired, …)
        self._leaving = False

    # -- the driver's side -----------------------------------------------------------------

    def actions(self) -> list[Action]:
        out, self._actions = self._actions, []
        return out

    def changes(self) -> Changes | None:
        """What to persist since the last call (``None``: nothing). ``urgent``: the outbox
        grew, and the send must not return control before it is saved."""
        c = self.outbox.take_changes()
        c.cursors = {conv: self.inbox.handed.get(conv) for conv in self.inbox.changed}
        self.inbox.changed.clear()
        if self._entered_changed:
            c.entered, self._entered_changed = sorted(self.entered), False
        return None if c.empty() else c

    @property
    def urgent(self) -> bool:
        """Save before anything else happens: a send entered the outbox (it must be saved
        before ``send_chat`` returns control or its message is written), or a handed-over
        cursor moved (a conversation started, or the application finished with an event)."""
        return self.outbox.changes.urgent or bool(self.inbox.changed)

    def deadline(self) -> float | None:
        """When ``tick`` must be called next (the driver's clock), or ``None``."""
        times = (self._calls.deadline(), self._heartbeat.deadline(), self._resend_at)
        return min((t for t in times if t is not None), default=None)

    def attempt(self) -> None:
        """The driver is about to connect."""
        if self.state is State.IDLE:
            self._set_state(State.CONNECTING)
        self.retry_at_once = False

    def connected(self, token: str, now: float) -> None:
        """A connection is open: log in on it."""
        self._now = now
        self._conn += 1
        self.phase = Phase.LOGIN
        self.went_online = False
        self._expired = ""
        login = {
            "msgType": MsgType.LOGIN,
            "token": token,
            "fromClientType": self.o.client_type,
            "backlog": False,
        }
        self._request(login, self._on_login, "login")

    def receive(self, data: bytes, now: float) -> None:
        self._now = now
        if self.phase is Phase.OFFLINE:
            return  # the rest of a connection already given up
        try:
            msg = codec.decode(data)
        except Exception:
            log.warning("undecodable message from the server: %r", data[:200])
            return
        t, rid = msg.msg_type, msg.msg_id_client
        if t == MsgType.HEARTBEAT:
            self._heartbeat.answered(now)
        if rid is not None and rid in self._calls:  # whatever it asked (a heartbeat too)
            self._settle_call(rid, msg)
        elif t == MsgType.HEARTBEAT:
            pass
        elif t == MsgType.CHAT_ANSWER:
            self._answered(msg)
        elif t == MsgType.ERROR:
            if rid is not None and rid in self.outbox.entries:
                self._refused(rid, msg)
            elif msg.code == ErrorCode.UNAUTHORIZED:  # about no request: the session is over
                self._expired = msg.reason or "session ended"  # token expired, user deleted
                self._drop(self._expired)
            else:
                log.warning("server error %s: %s", msg.code, msg.reason)
        else:
            self._deliver(msg)

    def lost(self, reason: str, now: float) -> None:
        """The connection is gone (whoever closed it)."""
        self._now = now
        if self.phase is Phase.OFFLINE:
            return
        self.phase = Phase.OFFLINE
        self._heartbeat.stop()
        self._resend_at = None
        self._gap_sync = False
        self._entering.clear()
        for rid, call in self._calls.take_all():
            if call.handler is None:
                self._actions.append(Fail(rid, ConnectionLost(reason)))
        if self.state is State.CLOSED:
            return
        if self._expired and not self.o.renewable:
            renew = " (pass a callable to renew it)" if "expired" in self._expired else ""
            self.close(f"{self._expired}{renew}")
            return
        if self._expired:
            log.info("%s: logging in again with a fresh token", self._expired)
            self.retry_at_once = self.went_online  # at once, unless it never got online
        elif not self._leaving:
            log.warning("connection lost: %s", reason)
        if self.went_online:
            self._set_state(State.RECONNECTING)  # at the drop, not at the next attempt

    def tick(self, now: float) -> None:
        self._now = now
        for rid, call in self._calls.expired(now):
            self._expire(rid, call)
        if self.phase is not Phase.ONLINE:
            return
        beat = self._heartbeat.due(now)
        if beat == "dead":
            self._drop(f"no heartbeat answer within {self.o.heartbeat_timeout:g} s")
            return
        if beat == "ping":
            self._actions.append(Write(HEARTBEAT))
        if self._resend_at is not None and now >= self._resend_at:
            self._resend_at = None
            self._flush_outbox()

    # -- the application's side ------------------------------------------------------------

    def send_chat(self, payload: dict[str, Any]) -> str:
        """Put a chat message in the outbox (written now if online); returns its key, the
        ``msgIdClient``. The same id again while unanswered is the same message."""
        if self.state is State.CLOSED:
            raise ClientClosed(self.closed_reason)
        pending = self.outbox.add(payload)
        if pending is not None and self.phase is Phase.ONLINE:
            self._write_pending(pending)
        return str(payload["msgIdClient"])

    def call(self, request: dict[str, Any], now: float) -> str:
        """Send a request now; returns its key. Raises ``ConnectionLost`` when not online."""
        self._now = now
        if self.state is State.CLOSED:
            raise ClientClosed(self.closed_reason)
        if self.phase is not Phase.ONLINE:
            raise ConnectionLost("not connected")
        return self._request(request, None, f"msgType {request.get('msgType')}")

    def abandon(self, key: str) -> None:
        """The application stopped waiting for a request (cancelled)."""
        self._calls.settle(key)

    def logout(self, now: float) -> str | None:
        """Ask the server to log out; its close that follows is expected."""
        self._leaving = True
        return self.call({"msgType": MsgType.LOGOUT}, now) if self.phase is Phase.ONLINE else None

    def close(self, reason: str) -> None:
        """No more connections: unanswered sends fail (with a state file they stay saved,
        and the next start resends them)."""
        if self.state is State.CLOSED:
            return
        self.closed_reason = reason
        for mid, pending in self.outbox.entries.items():
            if pending.awaited:
                pending.awaited = False
                self._actions.append(Fail(mid, ClientClosed(reason)))
        if not self.o.keep_outbox:
            self.outbox.entries.clear()
        for rid, call in self._calls.take_all():
            if call.handler is None:
                self._actions.append(Fail(rid, ClientClosed(reason)))
        self._set_state(State.CLOSED, reason)
        self._drop(reason)

    def entering(self, conv: int) -> None:
        """The application is about to enter ``conv``. A conversation this client has not
        started starts at its beginning, saved before the request leaves: the server reads
        at once whatever arrives while it is entered, so after a kill before the answer a
        start taken from the server's read position would pass over those messages. (Unknown
        after a sync means it had nothing for this client; a group starts at its ``joinSeq``.)"""
        self.inbox.know([(conv, 0)])

    def entered_at(self, conv: int, read_seq: int) -> None:
        """The application entered ``conv``, whose read position was then ``read_seq``: a
        conversation not started yet starts there (what follows is new to this client)."""
        self.set_entered(conv, True)
        self.inbox.know([(conv, read_seq)])

    def set_entered(self, conv: int, entered: bool) -> None:
        (self.entered.add if entered else self.entered.discard)(conv)
        self._entered_changed = True

    def silent(self, conv: int, seq: int) -> None:
        """The application's own change at ``seq`` (a recall, a group change): not handed
        over, but it fills its place."""
        self.inbox.silent(conv, seq)
        self._fill_gaps()

    def taken(self, upto: int) -> None:
        """The application has finished with events up to number ``upto``."""
        self.inbox.take(upto)

    # -- one connection's phases -----------------------------------------------------------

    def _on_login(self, answer: ImMsg | None, error: ClientError | None) -> None:
        if error is not None:
            if error.code == ErrorCode.UNAUTHORIZED:  # the token or the user: final
                self.close(f"login refused: {error}")
            else:  # e.g. 503 from a server shutting down: try again
                self._drop(f"login not taken now: {error}")
            return
        assert answer is not None
        self.user_id = answer.user_id
        self.phase = Phase.ENTER
        for conv in list(self.entered):
            rid = "q-" + uuid.uuid4().hex
            self._entering.add(rid)
            enter = {"msgType": MsgType.CHAT_ENTER, **address(conv)}
            self._request(enter, self._on_enter(conv, rid), "enter", rid)
        if not self._entering:
            self._sync()

    def _on_enter(self, conv: int, rid: str) -> Handler:
        def entered(answer: ImMsg | None, error: ClientError | None) -> None:
            if error is not None:
                self.set_entered(conv, False)  # no longer ours
            elif answer is not None:
                self.inbox.know([(conv, answer.seq or 0)])
            self._entering.discard(rid)
            if self.phase is Phase.ENTER and not self._entering:
                self._sync()

        return entered

    def _sync(self) -> None:
        """Ask for everything after each cursor; the answer handler asks for the next page."""
        if self.phase is Phase.ENTER:
            self.phase = Phase.SYNC
        background = self.phase is Phase.ONLINE
        self._gap_sync = background
        self._request(self.inbox.sync_request(self.o.sync_page), self._on_sync, "sync")

    def _on_sync(self, page: ImMsg | None, error: ClientError | None) -> None:
        if error is not None:
            if self.phase is Phase.ONLINE:
                log.warning("sync after a gap failed: %s", error)
                self._gap_sync = False
            else:  # not final: the connection is given up and tried again
                self._drop(f"sync refused: {error}")
            return
        assert page is not None
        if not self.inbox.page(page, self._mine):
            self._sync()  # the next page
        elif self.phase is Phase.SYNC:
            self._go_online()
        else:
            self._gap_sync = False

    def _go_online(self) -> None:
        self.phase = Phase.ONLINE
        self.went_online = True
        self._flush_outbox()
        self._heartbeat.start(self._now)
        self._set_state(State.ONLINE)

    # -- sends -----------------------------------------------------------------------------

    def _write_pending(self, pending: Pending) -> None:
        pending.conn = self._conn
        self._actions.append(Write(codec.encode_json(pending.payload)))

    def _flush_outbox(self) -> None:
        for pending in list(self.outbox.unsent(self._conn)):
            self._write_pending(pending)

    def _answered(self, msg: ImMsg) -> None:
        answered = self.outbox.answered(msg)
        if answered is None:
            return  # the answer to a resend of something already answered
        sent, awaited = answered
        self.inbox.silent(conv_key(sent.chat_id, sent.team_id), sent.seq)
        self._fill_gaps()
        self._settled(awaited, Resolve(sent.msg_id_client, sent), sent)

    def _refused(self, mid: str, msg: ImMsg) -> None:
        code, reason = msg.code or 0, msg.reason or ""
        if ErrorCode.is_retryable(code):  # nothing was stored: the same id again, later
            self.outbox.entries[mid].conn = 0
            self._resend_at = self._now + RESEND_AFTER
        elif (pending := self.outbox.remove(mid, stored=False)) is not None:
            failed = Fail(mid, ClientError(code, reason))
            self._settled(pending.awaited, failed, SendFailed(mid, code, reason))

    def _settled(self, awaited: bool, outcome: Resolve | Fail, event: Sent | SendFailed) -> None:
        """A send's outcome goes to the ``send_chat`` that awaits it, or else is an event (a
        send restored after a restart)."""
        if awaited:
            self._actions.append(outcome)
        else:
            self.inbox.queue(event)

    # -- requests and what arrives ---------------------------------------------------------

    def _request(
        self, request: dict[str, Any], handler: Handler | None, what: str, rid: str = ""
    ) -> str:
        rid, data = self._calls.open(request, handler, what, self._now, rid)
        self._actions.append(Write(data))
        return rid

    def _settle_call(self, rid: str, msg: ImMsg) -> None:
        call = self._calls.settle(rid)
        if call is None:
            return
        error = None
        if msg.msg_type == MsgType.ERROR:
            error = ClientError(msg.code or 0, msg.reason or "")
        if call.handler is not None:
            call.handler(None if error else msg, error)
        elif error is not None:
            self._actions.append(Fail(rid, error))
        else:
            self._actions.append(Resolve(rid, msg))

    def _expire(self, rid: str, call: Call) -> None:
        reason = f"no answer to {call.what} within {self.o.request_timeout:g} s"
        if call.handler is None:
            self._actions.append(Fail(rid, TimeoutError(reason)))
        elif self.phase is Phase.ONLINE and call.what == "sync":
            log.warning("sync after a gap failed: %s", reason)
            self._gap_sync = False
        else:
            self._drop(reason)

    def _mine(self, msg: ImMsg) -> bool:
        """A message this client sent (the application has it from ``send_chat``)."""
        return msg.from_user_id == self.user_id and self.outbox.mine(msg.msg_id_client or "")

    def _deliver(self, msg: ImMsg) -> None:
        self.inbox.deliver(msg, from_sync=False, mine=self._mine(msg))
        self._fill_gaps()

    def _fill_gaps(self) -> None:
        """Sync, in the background, a conversation with something missing (or not started)."""
        if self.phase is Phase.ONLINE and not self._gap_sync and self.inbox.order.gaps():
            self._sync()

    def _drop(self, reason: str) -> None:
        if self.phase is Phase.OFFLINE:
            return
        self._actions.append(Drop(reason))
        self.lost(reason, self._now)

    def _hand(self, event: Event) -> int:
        self._events += 1
        self._actions.append(Hand(event, self._events))
        return self._events

    def _set_state(self, state: State, reason: str = "") -> None:
        if state is not self.state:
            log.info("imhub client %s%s", state.value, f": {reason}" if reason else "")
            self.state = state
            self.inbox.queue(StateChanged(state, reason))
