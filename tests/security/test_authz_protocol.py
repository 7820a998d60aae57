"""The authorization matrix of the wire protocol: every message type, generated from the
protocol's own table (``MsgType``), tried by someone who may not: before login, behind a
refused login (an expired or forged token), as another user (``fromUserId``), on a chat or
group that is not theirs, as a member who is not the owner, on someone else's message.

Each try must be refused with the code docs/protocol.md gives, change no stored row, tell
nothing (no message text, no membership, and a chat that is not yours reads exactly like one
that does not exist), and nobody else may hear of it. A message type added to the protocol
without an entry in ``EXPECT`` fails ``test_every_message_type_has_expectations``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from imhub.protocol.messages import MsgType
from imhub.service.auth import TokenAuthority
from tests.databases import Databases
from tests.e2e.test_bad_input import WatchedServer
from tests.helpers import Client, ServerProcess
from tests.security.world import SECRET, UNKNOWN, World, build, snapshot

OK = 0  # answered (with code 0): allowed, and harmless by design
REFUSED = -1  # sync: answered, the conversation listed in ``refused``, nothing of it sent

# What each conversation-addressing scenario names (a request adds the fields it needs).
TARGETS: dict[str, Callable[[World], dict[str, Any]]] = {
    # alice and bob's chat: not mallory's
    "chat": lambda w: {"chatId": w.chat, "seq": w.chat_seq},
    # alice's group with bob: mallory is not a member
    "team": lambda w: {"teamId": w.team, "seq": w.team_seq},
    # alice's group with mallory in it: mallory is a member, not the owner; alice's message
    "shared": lambda w: {"teamId": w.shared, "seq": w.shared_seq},
    # alice's message in alice and mallory's chat
    "their_chat": lambda w: {"chatId": w.their_chat, "seq": w.their_chat_seq},
    # a group mallory was removed from, and mallory's own message in it from before
    "former": lambda w: {"teamId": w.former, "seq": w.former_seq},
}

# Per message type: the fields of a request that would be done if allowed, and for each
# scenario that applies to it the code of its refusal. A scenario left out does not apply
# (the type names no conversation, or what it asks is allowed there: a member renaming).
SERVER_ONLY = {"only": 400}  # the server's own types: unknown to the server as requests
Spec = tuple[dict[str, Any], dict[str, int]]
EXPECT: dict[MsgType, Spec] = {
    MsgType.HEARTBEAT: ({}, {}),
    MsgType.LOGIN: ({}, {}),  # with mallory's token
    MsgType.LOGOUT: ({}, {}),
    MsgType.CHAT: ({"toUserId": "<alice>", "body": f"{SECRET}?"}, {"team": 403, "former": 403}),
    MsgType.CHAT_ANSWER: ({}, SERVER_ONLY),
    MsgType.CHAT_ENTER: ({}, {"chat": 404, "team": 403}),
    MsgType.CHAT_QUIT: ({}, {"chat": OK, "team": OK}),  # per connection, stores nothing
    MsgType.NOTICE: ({"toUserId": "<alice>", "body": "n"}, {}),  # anyone may notify anyone
    MsgType.ERROR: ({}, SERVER_ONLY),
    MsgType.UNREAD: ({}, {}),
    MsgType.RECALL: (
        {},
        {"chat": 404, "team": 403, "shared": 403, "their_chat": 403, "former": 403},
    ),
    MsgType.SYNC: ({}, {"chat": REFUSED, "team": REFUSED}),
    MsgType.READ: ({}, {"chat": 404, "team": 403}),
    MsgType.RECEIPTS: ({"withReaders": True}, {"chat": 404, "team": 403}),
    MsgType.HISTORY: ({}, {"chat": 404, "team": 403}),
    MsgType.CONVS: ({}, {}),
    MsgType.TEAM_CREATE: ({"teamName": "mine", "memberIds": ["<alice>", "<bob>"]}, {}),
    MsgType.TEAM_ADD: ({"memberIds": ["<mallory>"]}, {"team": 403, "shared": 403, "former": 403}),
    MsgType.TEAM_REMOVE: ({"memberIds": ["<bob>"]}, {"team": 403, "shared": 403, "former": 403}),
    MsgType.TEAM_LEAVE: ({}, {"team": 403, "former": 403}),
    MsgType.TEAM_RENAME: ({"teamName": "pwned"}, {"team": 403, "former": 403}),
    MsgType.TEAM_DISMISS: ({}, {"team": 403, "shared": 403, "former": 403}),
    MsgType.TEAM_INFO: ({}, {"team": 403, "former": 403}),
}


def test_every_message_type_has_expectations() -> None:
    missing = [t.name for t in MsgType if t not in EXPECT]
    assert not missing, f"add the authorization expectations of {missing} to EXPECT"
    for _fields, cases in EXPECT.values():
        assert set(cases) <= {*TARGETS, "only"}, cases


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, databases: Databases
) -> Iterator[WatchedServer]:
    """A server of its own, whose log must stay free of tracebacks and warnings."""
    proc = WatchedServer(tmp_path_factory.mktemp("authz"), databases)
    yield proc
    proc.stop()


def fill(value: Any, w: World) -> Any:
    """``"<alice>"`` is alice's id, in a value or a list of them."""
    names = {"<alice>": w.alice, "<bob>": w.bob, "<mallory>": w.mallory}
    if isinstance(value, list):
        return [names.get(v, v) if isinstance(v, str) else v for v in value]
    if isinstance(value, str) and value in names:
        return names[value]
    return value


def request(t: MsgType, w: World, s: ServerProcess, target: str | None) -> dict[str, Any]:
    fields, _ = EXPECT[t]
    msg: dict[str, Any] = {"msgType": int(t), "msgIdClient": f"m{int(t)}-{target}"}
    msg.update({k: fill(v, w) for k, v in fields.items()})
    if t == MsgType.LOGIN:
        msg["token"] = s.token(w.mallory)
    if target is not None:
        where = TARGETS[target](w)
        if t == MsgType.SYNC:
            msg["convs"] = [{k: v for k, v in where.items() if k != "seq"} | {"seq": 0}]
        else:
            msg.update(where)
    return msg


def unknown(msg: dict[str, Any]) -> dict[str, Any]:
    """The same request on a conversation that does not exist."""
    out = dict(msg)
    for key in ("chatId", "teamId"):
        if key in out:
            out[key] = UNKNOWN
    return out


async def mallory_online(server: ServerProcess, w: World, via: str) -> Client:
    m = await server.connect(via)
    await m.send({"msgType": 1, "token": server.token(w.mallory), "backlog": False})
    assert (await m.expect(1))["code"] == 0
    # Mallory has read what is hers, so that a sync naming nothing of hers sends nothing.
    for where in ({"chatId": w.their_chat}, {"teamId": w.shared}, {"teamId": w.former}):
        await m.send({"msgType": 5, **where})
        assert (await m.answer(5))["code"] == 0
    return m


def leaks(frames: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Frames that tell mallory something: a secret text, a member list, messages."""
    out = []
    for f in frames:
        text = json.dumps(f)
        if SECRET in text or f.get("memberIds") or f.get("messages") or f.get("readerIds"):
            out.append(f)
    return out


@pytest.mark.parametrize("via", ["tcp", "ws"])
async def test_every_message_type_is_refused_to_who_may_not(
    server: WatchedServer, via: str
) -> None:
    w = await build(server)
    m = await mallory_online(server, w, via)
    heard: list[dict[str, Any]] = []
    failures: list[str] = []

    async def ask(client: Client, msg: dict[str, Any]) -> dict[str, Any]:
        await client.send(msg)
        got = await client.next_of(lambda f: f["msgType"] in (8, msg["msgType"]) and "code" in f)
        heard.append(got)
        return got

    def check(what: str, got: dict[str, Any], code: int) -> None:
        if got.get("code") != code or (code and got["msgType"] != 8):
            failures.append(f"{what}: expected {code}, got {got}")

    for t in MsgType:
        _, cases = EXPECT[t]
        first_target = next((c for c in cases if c != "only"), None)

        # Before login: 401 (the server's own types are unknown: 400; a heartbeat is fine).
        before = snapshot(server)
        c = await server.connect(via)
        msg = request(t, w, server, first_target)
        if t == MsgType.LOGIN:
            msg.pop("token")  # a login without a token
        got = await ask(c, msg)
        want = 400 if "only" in cases else OK if t == MsgType.HEARTBEAT else 401
        check(f"{t.name} before login", got, want)
        if t == MsgType.LOGIN:
            assert await c.closed(), "a refused login ends the connection"
        await c.close()
        assert snapshot(server) == before, f"{t.name} before login changed something"

        # Behind a login with an expired or forged token, in the same write: never handled.
        for token in (
            server.auth.mint(w.mallory, ttl=-10),
            TokenAuthority("another-secret-" + "y" * 32).mint(w.alice),
        ):
            c = await server.connect(via)
            await c.send({"msgType": 1, "token": token})
            await c.send(request(t, w, server, first_target))
            got = await c.recv()
            heard.append(got)
            check(f"{t.name} behind a bad login", got, 401)
            assert await c.closed(), f"{t.name}: the connection outlived a refused login"
            assert snapshot(server) == before, f"{t.name} behind a bad login changed something"

        # As another user: fromUserId is never trusted.
        msg = request(t, w, server, first_target) | {"fromUserId": w.alice}
        got = await ask(m, msg)
        check(f"{t.name} as alice", got, 400 if "only" in cases else 403)
        assert snapshot(server) == before, f"{t.name} as alice changed something"

        # On what is not mallory's.
        for target, code in cases.items():
            if target == "only":
                got = await ask(m, request(t, w, server, None))
                check(f"{t.name} from a client", got, code)
                continue
            msg = request(t, w, server, target)
            got = await ask(m, msg)
            if code == REFUSED:
                named = [{k: v for k, v in c.items() if k != "seq"} for c in msg["convs"]]
                listed = [c for c in got.get("convs", []) if c | named[0] == c]
                if got.get("code") != 0 or got.get("refused") != named or got["messages"] or listed:
                    failures.append(f"{t.name} on {target}: expected refused, got {got}")
            else:
                check(f"{t.name} on {target}", got, code)
            if code == 404:  # not yours reads exactly as no such conversation
                other = await ask(m, unknown(msg))
                shown = got.get("reason", "").replace(str(msg.get("chatId")), "N")
                if other.get("code") != 404 or other["reason"].replace(str(UNKNOWN), "N") != shown:
                    failures.append(f"{t.name} on {target} tells it exists: {got} vs {other}")
            assert snapshot(server) == before, f"{t.name} on {target} changed something"

    assert not failures, "\n".join(failures)
    assert not leaks(heard), leaks(heard)
    for client in w.online:  # nobody heard of any of it
        assert await client.silent(0.3)
    await m.close()
    for client in w.online:
        await client.close()
