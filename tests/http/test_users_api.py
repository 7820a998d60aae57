"""Users over the HTTP API: create, read, change, list in pages, and the soft delete that
takes effect at once on live connections, logins, tokens and sends."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tests.helpers import ServerProcess


async def test_create_read_change(server: ServerProcess) -> None:
    status, user = await server.call("POST", "/api/v1/users", {"username": "ann", "mobile": "1"})
    assert status == 201 and user["username"] == "ann" and user["mobile"] == "1"
    path = f"/api/v1/users/{user['userId']}"
    status, changed = await server.call("PATCH", path, {"mobile": "555", "headImg": "h.png"})
    assert status == 200 and changed == {**user, "mobile": "555", "headImg": "h.png"}
    assert await server.call("GET", path) == (200, changed)
    status, body = await server.call("PATCH", path, {"username": "x" * 21})  # too long
    assert status == 400 and "$.username" in body["reason"]
    status, body = await server.call("PATCH", path, {"mobile": 5})
    assert status == 400 and body["code"] == 400
    assert await server.call("GET", path) == (200, changed)  # a refused change changed nothing
    status, body = await server.call("GET", "/api/v1/users/0")
    assert status == 400 and "$.userId" in body["reason"]
    status, body = await server.call("PATCH", "/api/v1/users/999999999", {"mobile": "1"})
    assert status == 404 and body == {"code": 404, "reason": "user 999999999 does not exist"}


async def all_pages(server: ServerProcess, path: str, key: str, between: Any = None) -> list[Any]:
    """Every item of a paged list, walking ``next``; ``between(page)`` runs after each page."""
    items: list[Any] = []
    after: Any = None
    while True:
        query = "" if after is None else f"&after={after}"
        status, page = await server.call("GET", f"{path}?limit=5{query}")
        assert status == 200, page
        items += page[key]
        if between is not None:
            await between(page)
        after = page.get("next")
        if after is None:
            return items


async def test_paging_is_complete_and_stable(make_server: Callable[..., ServerProcess]) -> None:
    """Users created and deleted while a client pages: everyone who exists throughout is seen
    once, in order; the deleted are not seen after their deletion; the new are seen."""
    srv = make_server()
    first = [await srv.add_user(f"u{i}") for i in range(23)]
    deleted: list[int] = []
    created: list[int] = []

    async def churn(page: dict[str, Any]) -> None:
        seen = page["users"][-1]["userId"]
        ahead = [u for u in first if u > seen + 1 and u not in deleted]
        if ahead:  # one not seen yet, and one seen already
            deleted.append(ahead[0])
            assert (await srv.call("DELETE", f"/api/v1/users/{ahead[0]}"))[0] == 204
            deleted.append(seen)
            assert (await srv.call("DELETE", f"/api/v1/users/{seen}"))[0] == 204
        created.append(await srv.add_user("late"))

    users = await all_pages(srv, "/api/v1/users", "users", churn)
    ids = [u["userId"] for u in users]
    assert ids == sorted(set(ids))  # in order, nobody twice
    unseen_deleted = {d for i, d in enumerate(deleted) if i % 2 == 0}
    assert set(ids) == (set(first) | set(created[:-1])) - unseen_deleted
    status, body = await srv.call("GET", "/api/v1/users?limit=501")
    assert status == 400 and "$.limit" in body["reason"]
    status, body = await srv.call("GET", "/api/v1/users?after=-1")
    assert status == 400 and "$.after" in body["reason"]


async def test_deleting_a_user_takes_effect_at_once(server: ServerProcess) -> None:
    user, tcp = await server.online("doomed", "tcp")
    ws = await server.connect("ws")
    await ws.login(server.token(user), client_type=4)
    other, peer = await server.online("peer")
    await peer.chat(user, "before", "still here?")
    token = server.token(user)

    status, body = await server.call("DELETE", f"/api/v1/users/{user}")
    assert status == 204 and body is None
    for conn in (tcp, ws):
        while (msg := await conn.recv())["msgType"] != 8:
            assert msg["msgType"] == 7, msg  # the message sent before, nothing else
        assert msg == {"msgType": 8, "code": 401, "reason": "user deleted"}
        assert await conn.closed()

    again = await server.connect("ws")  # the token it had is refused, and so is a fresh one
    await again.send({"msgType": 1, "token": token})
    refused = await again.expect(8)
    assert refused["code"] == 401 and "does not exist" in refused["reason"]
    assert await again.closed()
    status, body = await server.call("POST", "/api/v1/tokens", {"userId": user})
    assert status == 404
    await peer.send({"msgType": 3, "toUserId": user, "msgIdClient": "after", "body": "hi"})
    assert (await peer.expect(8))["code"] == 404
    status, body = await server.call("POST", "/api/v1/notices", {"toUserIds": [user], "body": "x"})
    assert status == 404
    assert (await server.call("GET", f"/api/v1/users/{user}"))[0] == 404
    assert (await server.call("GET", f"/api/v1/users/{user}/online"))[0] == 404
    assert (await server.call("DELETE", f"/api/v1/users/{user}"))[0] == 404
    # Soft: the row stays, flagged, and the messages keep their sender.
    assert server.count("select delete_flag from users where user_id=?", user) == 1
    assert server.count("select count(*) from person_msg where to_user_id=?", user) == 1
    assert other  # the peer itself is untouched
    await peer.chat(await server.add_user("third"), "fine", "the peer goes on")


async def test_a_login_racing_the_delete_is_closed_or_refused(server: ServerProcess) -> None:
    """Logins sent while the deletion is in flight: each ends closed, none stays online."""
    user = await server.add_user("racer")
    conns = [await server.connect(t) for t in ("tcp", "ws", "tcp", "ws")]
    for c in conns:
        await c.send({"msgType": 1, "token": server.token(user)})
    status, _ = await server.call("DELETE", f"/api/v1/users/{user}")
    assert status == 204
    for c in conns:
        msg = await c.recv()
        if msg["msgType"] == 1:  # it logged in before the deletion: then it was ended
            assert msg["code"] == 0, msg
            msg = await c.recv()
            assert msg["reason"] == "user deleted", msg
        assert msg["msgType"] == 8 and msg["code"] == 401, msg
        assert await c.closed()
