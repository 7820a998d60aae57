"""The browser client in Chromium: people chatting between pages and with the Python client,
unread badges, groups, recall, history, notices, and a server killed mid-conversation."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from imhub.client import GroupChanged, MsgType
from tests.browser.conftest import NO_PLAYWRIGHT, ChatPage
from tests.client.conftest import App
from tests.helpers import ServerProcess

expect = pytest.importorskip("playwright.async_api", reason=NO_PLAYWRIGHT).expect
pytestmark = pytest.mark.asyncio(loop_scope="session")

OpenPage = Callable[..., Awaitable[ChatPage]]
MakeClient = Callable[..., Awaitable[App]]


async def test_two_pages_chat_with_unread_badge_and_read_mark(
    server: ServerProcess, open_page: OpenPage, artifacts: Path
) -> None:
    alice_id, bob_id = await server.add_user("alice"), await server.add_user("bob")
    alice, bob = await open_page(server, alice_id), await open_page(server, bob_id)

    await alice.start_chat(bob_id)
    await alice.send("Hi Bob! Lunch at noon?")
    await expect(alice.message("Hi Bob! Lunch at noon?").locator(".status")).to_have_attribute(
        "title", "Sent"
    )

    row = bob.conv_titled(f"User {alice_id}")
    await expect(row.locator(".badge")).to_have_text("1")
    await expect(row.locator(".conv-preview")).to_have_text("Hi Bob! Lunch at noon?")
    await expect(bob.page).to_have_title("(1) imhub")
    await row.click()
    await expect(bob.texts()).to_have_text(["Hi Bob! Lunch at noon?"])
    await expect(row.locator(".badge")).to_be_hidden()
    await expect(bob.page).to_have_title("imhub")
    # Bob has read it: Alice's message says so.
    read_mark = alice.message("Hi Bob! Lunch at noon?").locator(".read-label")
    await expect(read_mark).to_have_text("read")

    await bob.send("Sure, see you there")
    await expect(alice.texts()).to_have_text(["Hi Bob! Lunch at noon?", "Sure, see you there"])
    await expect(bob.texts()).to_have_text(["Hi Bob! Lunch at noon?", "Sure, see you there"])
    # Alice has the chat open: Bob's reply is read at once, no badge.
    await expect(alice.conv_titled(f"User {bob_id}").locator(".badge")).to_be_hidden()
    await expect(bob.message("Sure, see you there").locator(".read-label")).to_have_text("read")

    shot = artifacts / "chat.png"
    await alice.page.screenshot(path=str(shot))
    print(f"screenshot of a chat: {shot}")
    assert shot.stat().st_size > 10_000


async def test_switching_chats_quits_the_one_left(
    server: ServerProcess, open_page: OpenPage, make_client: MakeClient
) -> None:
    """The chat shown is entered on the server (its messages are read at once); the one left
    is quit, so what arrives there counts as unread again."""
    mo_id, ned_id, oz_id = [await server.add_user(n) for n in ("mo", "ned", "oz")]
    mo = await open_page(server, mo_id)
    ned, oz = await make_client(server, ned_id), await make_client(server, oz_id)
    ned_chat = (await ned.client.send_chat(to_user=mo_id, body="from ned")).chat_id
    oz_chat = (await oz.client.send_chat(to_user=mo_id, body="from oz")).chat_id
    ned_row, oz_row = mo.conv(f"c{ned_chat}"), mo.conv(f"c{oz_chat}")
    await ned_row.click()
    await expect(ned_row.locator(".badge")).to_be_hidden()
    await ned.client.send_chat(to_user=mo_id, body="while shown")
    await expect(mo.texts()).to_have_text(["from ned", "while shown"])
    await expect(ned_row.locator(".badge")).to_be_hidden()  # read at once

    await oz_row.click()
    await expect(mo.texts()).to_have_text(["from oz"])
    await ned.client.send_chat(to_user=mo_id, body="after mo left")
    await expect(ned_row.locator(".badge")).to_have_text("1")
    phone = await make_client(server, mo_id)  # the server agrees: the chat is not shown
    assert {"chatId": ned_chat, "peerUserId": ned_id, "count": 1} in await phone.client.unread()
    await ned_row.click()
    await expect(mo.texts()).to_have_text(["from ned", "while shown", "after mo left"])
    await expect(ned_row.locator(".badge")).to_be_hidden()


async def test_a_page_chats_with_the_python_client(
    server: ServerProcess, open_page: OpenPage, make_client: MakeClient
) -> None:
    carol_id, dave_id = await server.add_user("carol"), await server.add_user("dave")
    carol = await make_client(server, carol_id)
    dave = await open_page(server, dave_id)

    sent = await carol.client.send_chat(to_user=dave_id, body="hello from Python")
    row = dave.conv(f"c{sent.chat_id}")
    await expect(row.locator(".badge")).to_have_text("1")
    await row.click()
    await expect(dave.texts()).to_have_text(["hello from Python"])
    await dave.send("hello from the browser")

    def replies() -> list[str]:
        return [m.body for m in carol.messages if m.from_user_id == dave_id]

    await carol.until(lambda: replies() == ["hello from the browser"])
    await carol.client.send_chat(to_user=dave_id, body="got it")
    await expect(dave.texts()).to_have_text(
        ["hello from Python", "hello from the browser", "got it"]
    )
    assert replies() == ["hello from the browser"]  # once


async def test_group_chat_and_adding_a_member(
    server: ServerProcess, open_page: OpenPage, make_client: MakeClient
) -> None:
    ids = [await server.add_user(name) for name in ("ann", "ben", "cat", "dan")]
    ann_id, ben_id, cat_id, dan_id = ids
    ann, ben = await open_page(server, ann_id), await open_page(server, ben_id)
    cat, dan = await make_client(server, cat_id, "ws"), await make_client(server, dan_id)

    await ann.create_group("Weekend trip", [ben_id, cat_id])
    await expect(ann.page.locator("#chat-name")).to_have_text("Weekend trip")
    await expect(ann.page.locator("#chat-sub")).to_have_text("3 members · you own it")
    await expect(ann.page.locator("#message-list .event")).to_have_count(1)
    await ann.send("Who brings the tent?")

    row = ben.conv_titled("Weekend trip")
    await expect(row.locator(".badge")).to_have_text("1")
    await row.click()
    await expect(ben.texts()).to_have_text(["Who brings the tent?"])
    await expect(ben.message("Who brings the tent?").locator(".sender")).to_have_text(
        f"User {ann_id}"
    )
    await cat.until(lambda: [m.body for m in cat.messages] == ["Who brings the tent?"])
    team_id = cat.messages[0].team_id
    assert team_id is not None
    await cat.client.send_chat(team=team_id, body="I do")
    for page in (ann, ben):
        await expect(page.texts()).to_have_text(["Who brings the tent?", "I do"])

    await ann.page.click("#add-members")
    await ann.page.fill("input[name=members]", str(dan_id))
    await ann.page.click("#dialog-ok")
    await expect(ann.page.locator("#chat-sub")).to_have_text("4 members · you own it")
    await expect(ann.page.locator("#message-list .event")).to_have_count(2)
    await dan.until(
        lambda: any(
            isinstance(e, GroupChanged) and e.op == MsgType.TEAM_ADD and e.team_id == team_id
            for e in dan.events
        )
    )
    await dan.client.send_chat(team=team_id, body="thanks for adding me")
    await expect(ben.texts()).to_have_text(["Who brings the tent?", "I do", "thanks for adding me"])
    await expect(ben.page.locator("#message-list .event")).to_have_count(2)


async def test_recall_of_ones_own_message(server: ServerProcess, open_page: OpenPage) -> None:
    eve_id, fay_id = await server.add_user("eve"), await server.add_user("fay")
    eve, fay = await open_page(server, eve_id), await open_page(server, fay_id)
    await eve.start_chat(fay_id)
    await eve.send("see you at 5")
    await eve.send("oops, wrong chat")
    await fay.conv_titled(f"User {eve_id}").click()
    await expect(fay.texts()).to_have_text(["see you at 5", "oops, wrong chat"])
    # Only one's own messages can be recalled.
    await expect(fay.page.locator("#message-list .recall")).to_have_count(0)

    mistake = eve.message("oops, wrong chat")
    await mistake.hover()
    await mistake.locator(".recall").click()
    await expect(eve.texts()).to_have_text(["see you at 5", "You recalled this message"])
    await expect(fay.texts()).to_have_text(["see you at 5", "This message was recalled"])
    await expect(fay.conv_titled(f"User {eve_id}").locator(".conv-preview")).to_have_text(
        "Message recalled"
    )
    assert await eve.page.locator("#message-list .msg.recalled .recall").count() == 0


async def test_history_scrolls_back_to_the_first_message(
    server: ServerProcess, open_page: OpenPage, make_client: MakeClient
) -> None:
    gus_id, hal_id = await server.add_user("gus"), await server.add_user("hal")
    gus = await make_client(server, gus_id)
    bodies = [f"message {i}" for i in range(1, 81)]
    sends = [gus.client.send_chat(to_user=hal_id, body=b) for b in bodies]
    chat_id = (await asyncio.gather(*sends))[0].chat_id
    phone = await make_client(server, hal_id)  # Hal read them all on another device
    assert await phone.client.enter(chat_id=chat_id) == 80
    hal = await open_page(server, hal_id)
    row = hal.conv(f"c{chat_id}")
    await expect(row.locator(".conv-preview")).to_have_text("message 80")
    await expect(row.locator(".badge")).to_be_hidden()
    await row.click()
    await expect(hal.message("message 80")).to_be_visible()
    await expect(hal.page.locator("#older")).to_be_visible()  # older pages not loaded yet
    scroller, older = hal.page.locator("#messages"), hal.page.locator("#older")
    while await older.is_visible():  # scroll to the top: the next page comes in above
        shown = await hal.texts().count()
        # A scroll to the top (a view already there moves nothing, and sends no event of its
        # own); then a new page above, or none left (the client may fetch the last by itself).
        await scroller.evaluate(
            "el => { el.scrollTo(0, 0); el.dispatchEvent(new Event('scroll')); }"
        )
        await hal.page.wait_for_function(
            "n => document.querySelectorAll('#message-list .msg').length > n"
            " || document.querySelector('#older').hidden",
            arg=shown,
        )
    await expect(hal.texts()).to_have_text(bodies)


async def test_history_that_does_not_fill_the_view_loads_on_its_own(
    server: ServerProcess, open_page: OpenPage, make_client: MakeClient
) -> None:
    """A view so tall that pages of history leave it at the top asks for page after page by
    itself, without a scroll (there is no scroll event to wait for when nothing scrolls)."""
    ann_id, bo_id = await server.add_user("ann"), await server.add_user("bo")
    ann = await make_client(server, ann_id)
    bodies = [f"line {i}" for i in range(1, 61)]
    sends = [ann.client.send_chat(to_user=bo_id, body=b) for b in bodies]
    chat_id = (await asyncio.gather(*sends))[0].chat_id
    phone = await make_client(server, bo_id)
    assert await phone.client.enter(chat_id=chat_id) == 60
    bo = await open_page(server, bo_id, viewport={"width": 1000, "height": 4000})
    await bo.conv(f"c{chat_id}").click()
    await expect(bo.texts()).to_have_text(bodies)
    await expect(bo.page.locator("#older")).to_be_hidden()


async def test_a_notice_shows_as_a_toast(server: ServerProcess, open_page: OpenPage) -> None:
    ida_id = await server.add_user("ida")
    ida = await open_page(server, ida_id)
    status, _ = await server.post(
        "/api/v1/notices", {"toUserIds": [ida_id], "body": "maintenance at 3"}
    )
    assert status == 200
    toast = ida.page.locator(".toast.notice")
    await expect(toast).to_contain_text("maintenance at 3")


async def test_a_narrow_window_shows_the_list_or_the_chat(
    server: ServerProcess, open_page: OpenPage
) -> None:
    jo_id, kim_id = await server.add_user("jo"), await server.add_user("kim")
    jo = await open_page(server, jo_id, viewport={"width": 390, "height": 760})
    await jo.start_chat(kim_id)
    sidebar, chat = jo.page.locator(".sidebar"), jo.page.locator("#chat")
    await expect(chat).to_be_visible()
    await expect(sidebar).to_be_hidden()
    await jo.send("on my phone")
    await jo.page.click("#back")
    await expect(sidebar).to_be_visible()
    await expect(chat).to_be_hidden()
    await expect(jo.conv_titled(f"User {kim_id}").locator(".conv-preview")).to_have_text(
        "You: on my phone"
    )


async def test_the_sign_in_form(server: ServerProcess, open_page: OpenPage) -> None:
    lee_id = await server.add_user("lee")
    lee = await open_page(server, lee_id, sign_in=False)
    await lee.page.goto(server.url + "/")
    await expect(lee.page.locator("#login-form")).to_be_visible()
    await lee.page.fill("#login-token", "not-a-token")
    await lee.page.click("#login-form button[type=submit]")
    await expect(lee.page.locator("#login-error")).to_contain_text("sign-in refused")
    await lee.page.fill("#login-token", server.token(lee_id))
    await lee.page.click("#login-form button[type=submit]")
    await expect(lee.state).to_have_text("Online")
    await expect(lee.page.locator("#me-name")).to_have_text(f"User {lee_id}")
    await lee.page.reload()  # the tab remembers its sign-in
    await expect(lee.state).to_have_text("Online")
    await lee.page.click("#sign-out")
    await expect(lee.page.locator("#login-form")).to_be_visible()
