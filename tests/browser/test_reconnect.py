"""The browser client across failures: the server killed and restarted mid-conversation, a
link that goes silent (found by heartbeats), and a reload with sends still unanswered. In
every case each message shows exactly once, in order, and is stored once."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import pytest

from tests.browser.conftest import NO_PLAYWRIGHT, ChatPage
from tests.client.conftest import App
from tests.helpers import TIMEOUT, ServerProcess
from tests.proxy import Proxy

if TYPE_CHECKING:
    from playwright.async_api import WebSocketRoute

expect = pytest.importorskip("playwright.async_api", reason=NO_PLAYWRIGHT).expect
pytestmark = pytest.mark.asyncio(loop_scope="session")

OpenPage = Callable[..., Awaitable[ChatPage]]
MakeClient = Callable[..., Awaitable[App]]


async def test_the_server_killed_mid_conversation(
    make_server: Callable[..., ServerProcess], open_page: OpenPage, make_client: MakeClient
) -> None:
    """Every message shows exactly once and in order across a SIGKILL of the server and its
    restart on the same port: the pages reconnect and sync, what was written while the server
    was down goes out once, and what another user sent meanwhile arrives."""
    server = make_server()
    amy_id, bo_id, cy_id = [await server.add_user(n) for n in ("amy", "bo", "cy")]
    amy, bo = await open_page(server, amy_id), await open_page(server, bo_id)
    cy = await make_client(server, cy_id)
    await amy.start_chat(bo_id)
    await amy.send("one")
    await bo.conv_titled(f"User {amy_id}").click()
    await bo.send("two")
    await expect(amy.texts()).to_have_text(["one", "two"])

    server.crash()
    for page in (amy, bo):
        await expect(page.state).to_have_text("Reconnecting…")
    await expect(amy.page.locator("#banner")).to_be_visible()
    await amy.send("three, while the server is down")
    await bo.send("four, while the server is down")
    for page in (amy, bo):
        await expect(page.page.locator("#message-list .msg.pending")).to_have_count(1)

    await asyncio.to_thread(server.restart, True)
    await asyncio.gather(*[cy.client.send_chat(to_user=bo_id, body=f"cy {i}") for i in range(5)])
    for page in (amy, bo):  # both resent what they had (which of them first: either)
        await expect(page.state).to_have_text("Online")
        await expect(page.page.locator("#message-list .msg.pending")).to_have_count(0)
        await expect(page.page.locator("#banner")).to_be_hidden()
    await expect(amy.texts()).to_have_count(4)
    down = await amy.texts().all_inner_texts()
    await amy.send("five")
    assert sorted(down[2:]) == ["four, while the server is down", "three, while the server is down"]
    for page in (amy, bo):
        await expect(page.texts()).to_have_text([*down, "five"])
    cy_row = bo.conv_titled(f"User {cy_id}")
    await expect(cy_row.locator(".badge")).to_have_text("5")
    await cy_row.click()
    await expect(bo.texts()).to_have_text([f"cy {i}" for i in range(5)])
    assert server.count("SELECT COUNT(*) FROM person_msg WHERE body LIKE '%server is down'") == 2


async def test_unanswered_sends_survive_a_reload(
    server: ServerProcess, open_page: OpenPage
) -> None:
    """A send whose answer never came is kept in localStorage: after a reload it is sent
    again with the same msgIdClient, stored once and shown once, whether it had reached the
    server (only its answer was lost) or not."""
    ann_id, bea_id = await server.add_user("ann"), await server.add_user("bea")
    ann = await open_page(server, ann_id, sign_in=False)
    bea = await open_page(server, bea_id)
    lossy = True
    lost_answers: set[str] = set()

    def route(page_side: WebSocketRoute) -> None:
        server_side = page_side.connect_to_server()

        def from_page(data: str | bytes) -> None:
            msg = json.loads(data)
            if lossy and msg.get("body") == "lost on the way":
                return  # never reaches the server
            if lossy and msg.get("body") == "answer lost":
                lost_answers.add(msg["msgIdClient"])
            server_side.send(data)

        def from_server(data: str | bytes) -> None:
            msg = json.loads(data)
            if lossy and msg.get("msgType") == 4 and msg.get("msgIdClient") in lost_answers:
                return  # stored, but the page never hears so
            page_side.send(data)

        page_side.on_message(from_page)
        server_side.on_message(from_server)

    await ann.page.route_web_socket("**/ws", route)
    await ann.sign_in(server)
    await ann.start_chat(bea_id)
    await ann.send("all fine")
    await ann.send("lost on the way")
    await ann.send("answer lost")  # the last: no later message shows the page it was stored
    row = bea.conv_titled(f"User {ann_id}")
    await expect(row.locator(".conv-preview")).to_have_text("answer lost")
    await expect(ann.page.locator("#message-list .msg.pending")).to_have_count(2)
    saved = "Object.keys(localStorage).filter(k => k.startsWith('imhub.outbox.'))"
    assert len(await ann.page.evaluate(saved)) == 2

    lossy = False
    await ann.page.reload()
    await expect(ann.state).to_have_text("Online")
    await expect(ann.page.locator("#message-list .msg.pending")).to_have_count(0)
    await row.click()
    # In the order stored: "lost on the way" only now.
    await expect(bea.texts()).to_have_text(["all fine", "answer lost", "lost on the way"])
    await expect(ann.texts()).to_have_text(["all fine", "answer lost", "lost on the way"])
    assert await ann.page.evaluate(saved) == []
    for body in ("answer lost", "lost on the way"):
        assert server.count("SELECT COUNT(*) FROM person_msg WHERE body = ?", body) == 1


async def test_a_silent_link_is_found_by_heartbeats_and_replaced(
    server: ServerProcess, open_page: OpenPage, make_client: MakeClient
) -> None:
    """The connection stays open but nothing passes either way (a black-holed network): only
    the heartbeat's missing answer tells. The page gives the link up, connects again and gets
    what was sent to it meanwhile, once."""
    dee_id, eli_id = await server.add_user("dee"), await server.add_user("eli")
    eli = await make_client(server, eli_id)
    dee = await open_page(server, dee_id, sign_in=False)
    timings = {"session": {"heartbeatInterval": 300, "heartbeatTimeout": 1500}}
    await dee.page.add_init_script(f"window.imhubOptions = {json.dumps(timings)}")
    links: list[list[bool]] = []  # per connection: [silent]

    def route(page_side: WebSocketRoute) -> None:
        server_side = page_side.connect_to_server()
        silent = [False]
        links.append(silent)
        page_side.on_message(lambda data: None if silent[0] else server_side.send(data))
        server_side.on_message(lambda data: None if silent[0] else page_side.send(data))

    await dee.page.route_web_socket("**/ws", route)
    await dee.sign_in(server)
    sent = await eli.client.send_chat(to_user=dee_id, body="before")
    await dee.conv(f"c{sent.chat_id}").click()
    await expect(dee.texts()).to_have_text(["before"])

    await dee.page.evaluate(  # the connection states the page goes through from now on
        "() => { window.states = []; imhub.session.on((e) => e.state && states.push(e.state)); }"
    )
    links[0][0] = True  # from now on the first link carries nothing
    await eli.client.send_chat(to_user=dee_id, body="during")
    await dee.page.wait_for_function("states.includes('online')")
    await expect(dee.state).to_have_text("Online")
    assert await dee.page.evaluate("states") == ["reconnecting", "online"]
    assert len(links) == 2
    # Only the sync after the reconnect brings it: nothing later shows a gap.
    await expect(dee.texts()).to_have_text(["before", "during"])
    await eli.client.send_chat(to_user=dee_id, body="after")
    await expect(dee.texts()).to_have_text(["before", "during", "after"])


async def test_a_handshake_into_a_black_hole_is_given_up_and_tried_again(
    server: ServerProcess, open_page: OpenPage
) -> None:
    """Found by an outside tester: an attempt to reconnect while the network was black-holed
    waited for its handshake until the browser gave up (about 240 s), and the page stayed
    "Reconnecting…" that long after the network came back. A handshake has a deadline."""
    proxy = await Proxy(server.port).start()
    fay_id = await server.add_user("fay")
    fay = await open_page(server, fay_id, sign_in=False)
    timings = {"connection": {"openWithin": 500, "backoffBase": 0.1, "backoffCap": 0.2}}
    await fay.page.add_init_script(f"window.imhubOptions = {json.dumps(timings)}")
    await fay.page.goto(f"http://127.0.0.1:{proxy.port}/#token={server.token(fay_id)}")
    await expect(fay.state).to_have_text("Online")

    proxy.blackhole = True  # connections are taken, and nothing comes back
    before = proxy.accepted
    proxy.drop_all()
    async with asyncio.timeout(TIMEOUT):  # attempt after attempt, none left hanging
        while proxy.accepted < before + 3:
            proxy.new_connection.clear()
            await proxy.new_connection.wait()
    proxy.blackhole = False
    await expect(fay.state).to_have_text("Online", timeout=5_000)
    await proxy.close()


async def test_a_deleted_user_is_told_why_and_the_address_keeps_no_token(
    server: ServerProcess, open_page: OpenPage
) -> None:
    """Found by an outside tester: a deleted user was told "your session expired", and the
    token stayed in the address bar after signing in with a link."""
    gus_id = await server.add_user("gus")
    gus = await open_page(server, gus_id)
    assert "token" not in gus.page.url
    assert (await server.call("DELETE", f"/api/v1/users/{gus_id}"))[0] == 204
    await expect(gus.page.locator("#login-error")).to_contain_text("user deleted")
