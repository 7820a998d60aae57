"""The browser client over TLS: the page comes over https and chats over wss, in a Chromium
that trusts exactly the server's throw-away certificate (by its public key's hash)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import pytest_asyncio

from tests.browser.conftest import NO_PLAYWRIGHT, WAIT, ChatPage
from tests.databases import Databases
from tests.helpers import ServerProcess
from tests.tls import Certs

if TYPE_CHECKING:
    from playwright.async_api import Browser

expect = pytest.importorskip("playwright.async_api", reason=NO_PLAYWRIGHT).expect
pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest_asyncio.fixture(loop_scope="session")
async def trusting(
    browser: Browser, chromium: Path, tmp_path: Path
) -> AsyncIterator[tuple[Browser, Certs]]:
    """A second Chromium, trusting one throw-away certificate, and that certificate."""
    certs = Certs(tmp_path)
    trusting = await browser.browser_type.launch(
        executable_path=str(chromium),
        headless=True,
        args=[f"--ignore-certificate-errors-spki-list={certs.spki_hash()}"],
    )
    yield trusting, certs
    await trusting.close()


async def test_pages_over_https_chat_over_wss(
    trusting: tuple[Browser, Certs], tmp_path: Path, databases: Databases
) -> None:
    browser, certs = trusting
    server = ServerProcess(tmp_path / "server", databases, tls_cert=certs.cert, tls_key=certs.key)
    try:
        alice_id, bob_id = await server.add_user("alice"), await server.add_user("bob")
        pages = []
        sockets: list[str] = []
        for user_id in (alice_id, bob_id):
            context = await browser.new_context(viewport={"width": 1000, "height": 700})
            chat = ChatPage(await context.new_page(), user_id)
            chat.page.on("websocket", lambda ws: sockets.append(ws.url))
            url = f"https://127.0.0.1:{server.port}/#token={server.token(user_id)}"
            await chat.page.goto(url)
            await expect(chat.state).to_have_text("Online", timeout=WAIT)
            pages.append(chat)
        alice, bob = pages
        assert await alice.page.evaluate("location.protocol") == "https:"
        assert sockets == [f"wss://127.0.0.1:{server.port}/ws"] * 2

        await alice.start_chat(bob_id)
        await alice.send("sealed hello")
        await bob.conv_titled(f"User {alice_id}").click()
        await expect(bob.texts()).to_have_text(["sealed hello"], timeout=WAIT)
        await bob.send("sealed reply")
        await expect(alice.texts()).to_have_text(["sealed hello", "sealed reply"], timeout=WAIT)
        assert [e for chat in pages for e in chat.errors] == []
        for chat in pages:
            await chat.page.context.close()
    finally:
        server.stop()
