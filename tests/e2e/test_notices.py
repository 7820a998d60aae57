"""Notices from a business backend over HTTP, and from clients."""

from __future__ import annotations

from tests.helpers import ServerProcess


async def test_notice_to_online_and_offline_users(server: ServerProcess) -> None:
    online, conn = await server.online("on", "ws")
    offline = await server.add_user("off")
    status, body = await server.post(
        "/api/v1/notices", {"toUserIds": [online, offline], "body": "maintenance at 3"}
    )
    assert status == 200, body
    assert body["delivered"] == [online] and body["pending"] == [offline]

    got = await conn.expect(7)
    assert got["noticeId"] == body["noticeId"] and got["body"] == "maintenance at 3"
    assert got["bodyType"] == 8 and got["fromUserId"] == 0

    late = await server.connect("tcp")
    await late.login(server.token(offline))
    assert (await late.expect(7))["noticeId"] == body["noticeId"]
    await late.close()

    again = await server.connect("tcp")  # delivered once: not on the next login
    await again.login(server.token(offline))
    assert await again.silent()
    await conn.close()  # nor to the online user's next connection
    conn2 = await server.connect("ws")
    await conn2.login(server.token(online))
    assert await conn2.silent()


async def test_notice_api_refuses_bad_requests(server: ServerProcess) -> None:
    user = await server.add_user("u")
    status, body = await server.post("/api/v1/notices", {"toUserIds": [user], "body": "x"}, "bad")
    assert status == 401 and body["code"] == 401
    status, body = await server.post("/api/v1/notices", {"toUserIds": [user], "body": "x"}, None)
    assert status == 401
    status, body = await server.post("/api/v1/notices", {"toUserIds": [user, 10**12], "body": "x"})
    assert status == 404 and "unknown users" in body["reason"]
    status, body = await server.post("/api/v1/notices", {"toUserIds": "1", "body": "x"})
    assert status == 400 and "toUserIds" in body["reason"]
    status, body = await server.post("/api/v1/notices", {"toUserIds": [], "body": "x"})
    assert status == 400
    assert server.count("select count(*) from notice_target where to_user_id=?", user) == 0


async def test_notice_from_a_client(server: ServerProcess) -> None:
    alice, a = await server.online("alice")
    bob, b = await server.online("bob", "ws")
    await a.send({"msgType": 7, "toUserId": bob, "body": "ping", "msgIdClient": "n1"})
    answer = await a.expect(7)
    assert answer["code"] == 0 and answer["msgIdClient"] == "n1" and answer["noticeId"] > 0
    got = await b.expect(7)
    assert got["fromUserId"] == alice and got["body"] == "ping"


async def test_health_and_unknown_routes(server: ServerProcess) -> None:
    import aiohttp

    async with aiohttp.ClientSession() as http:
        async with http.get(server.url + "/healthz") as resp:
            assert resp.status == 200
            assert (await resp.json())["status"] == "ok"
        async with http.get(server.url + "/nope") as resp:
            assert resp.status == 404


async def test_notices_racing_logins_arrive_exactly_once(server: ServerProcess) -> None:
    """Notices posted while the user logs in and out are each written to them once."""
    import asyncio

    user = await server.add_user("racer")
    received: list[int] = []

    async def post(i: int) -> int:
        status, body = await server.post("/api/v1/notices", {"toUserIds": [user], "body": f"n{i}"})
        assert status == 200, body
        return int(body["noticeId"])

    async def logins() -> None:
        for _ in range(5):
            c = await server.connect("ws")
            await c.login(server.token(user))
            while True:
                try:
                    received.append((await c.expect(7, timeout=0.3))["noticeId"])
                except TimeoutError:
                    break
            await c.close()

    posted, _ = await asyncio.gather(asyncio.gather(*(post(i) for i in range(40))), logins())
    last = await server.connect("tcp")  # picks up whatever was still pending
    await last.login(server.token(user))
    while True:
        try:
            received.append((await last.expect(7, timeout=0.5))["noticeId"])
        except TimeoutError:
            break
    assert sorted(received) == sorted(posted)


async def test_a_reason_names_a_few_unknown_users_not_all(server: ServerProcess) -> None:
    status, body = await server.post(
        "/api/v1/notices", {"toUserIds": list(range(10**9, 10**9 + 5000)), "body": "x"}
    )
    assert status == 404 and body["reason"].endswith(" and 4990 more"), body
    assert len(body["reason"]) < 200
