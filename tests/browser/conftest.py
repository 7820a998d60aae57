"""Fixtures for the browser client's tests: one headless Chromium (Debian's, never a
downloaded one) for the whole session, driven by Playwright; a page per user, signed in by a
``#token=`` link as a person would open it; applications on the Python client beside them.

Without Chromium or Playwright the tests skip locally and fail in CI (``CI=true``)."""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import pytest_asyncio

from imhub.client import ImClient
from tests.client.conftest import App
from tests.helpers import ServerProcess

if TYPE_CHECKING:
    from playwright.async_api import Browser, Locator, Page

NO_PLAYWRIGHT = "Playwright is not installed: pip install -e '.[dev]'"
if os.environ.get("CI") == "true":
    import playwright  # noqa: F401  (in CI a missing Playwright fails the run, never skips)

CHROMIUM = Path(os.environ.get("IMHUB_CHROMIUM", "/usr/bin/chromium"))
WAIT = 10_000  # ms: how long an expectation waits (a reconnect takes a few seconds)


def unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI must run the browser tests)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def chromium() -> Path:
    if not CHROMIUM.exists():
        unavailable(f"no Chromium at {CHROMIUM}: apt-get install chromium")
    return CHROMIUM


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def browser(chromium: Path) -> AsyncIterator[Browser]:
    try:
        from playwright.async_api import async_playwright, expect
    except ImportError:
        unavailable(NO_PLAYWRIGHT)
    expect.set_options(timeout=WAIT)
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(chromium), headless=True)
        yield browser
        await browser.close()


class ChatPage:
    """The browser client signed in as one user, driven as a person would."""

    def __init__(self, page: Page, user_id: int) -> None:
        self.page = page
        self.user_id = user_id
        self.errors: list[str] = []
        page.on("pageerror", lambda error: self.errors.append(str(error)))

    async def sign_in(self, server: ServerProcess) -> None:
        from playwright.async_api import expect

        await self.page.goto(f"{server.url}/#token={server.token(self.user_id)}")
        await expect(self.state).to_have_text("Online")

    @property
    def state(self) -> Locator:
        return self.page.locator("#state")

    def conv(self, key: str) -> Locator:
        """A row of the conversation list ("c5": chat 5, "t7": group 7)."""
        return self.page.locator(f'.conv[data-conv="{key}"]')

    def conv_titled(self, title: str) -> Locator:
        return self.page.locator(".conv").filter(
            has=self.page.locator(".conv-title", has_text=re.compile(f"^{re.escape(title)}$"))
        )

    def texts(self) -> Locator:
        """The text of every message shown in the open chat (sent or on its way)."""
        return self.page.locator("#message-list .msg .text")

    def message(self, text: str) -> Locator:
        return self.page.locator("#message-list .msg").filter(
            has=self.page.locator(".text", has_text=re.compile(f"^{re.escape(text)}$"))
        )

    async def open_key(self) -> str | None:
        return await self.page.evaluate("window.imhub.session.open")  # type: ignore[no-any-return]

    async def start_chat(self, user_id: int) -> None:
        await self.page.click("#new-chat")
        await self.page.fill("input[name=user]", str(user_id))
        await self.page.click("#dialog-ok")
        await self.page.locator("#dialog").wait_for(state="hidden")

    async def create_group(self, name: str, members: list[int]) -> None:
        await self.page.click("#new-group")
        await self.page.fill("input[name=name]", name)
        await self.page.fill("input[name=members]", ", ".join(map(str, members)))
        await self.page.click("#dialog-ok")
        await self.page.locator("#dialog").wait_for(state="hidden")

    async def send(self, text: str) -> None:
        await self.page.fill("#composer-text", text)
        await self.page.press("#composer-text", "Enter")


@pytest_asyncio.fixture(loop_scope="session")
async def open_page(browser: Browser) -> AsyncIterator[Callable[..., Awaitable[ChatPage]]]:
    """``await open_page(server, user_id)``: a page of its own (own storage), signed in.
    Each page must end without an uncaught error in its scripts."""
    pages: list[ChatPage] = []

    async def open_(
        server: ServerProcess, user_id: int, *, sign_in: bool = True, **options: Any
    ) -> ChatPage:
        options.setdefault("viewport", {"width": 1000, "height": 700})
        context = await browser.new_context(**options)
        chat = ChatPage(await context.new_page(), user_id)
        pages.append(chat)
        if sign_in:
            await chat.sign_in(server)
        return chat

    yield open_
    for chat in pages:
        await chat.page.context.close()
    assert [e for chat in pages for e in chat.errors] == []


@pytest_asyncio.fixture(loop_scope="session")
async def make_client() -> AsyncIterator[Callable[..., Awaitable[App]]]:
    """``await make_client(server, user_id)``: a started application on the Python client."""
    apps: list[App] = []

    async def make(server: ServerProcess, user_id: int, transport: str = "tcp") -> App:
        url = f"tcp://127.0.0.1:{server.port}"
        if transport == "ws":
            url = f"ws://127.0.0.1:{server.port}/ws"
        app = App(ImClient(url, server.token(user_id), backoff_base=0.05, backoff_cap=0.5))
        apps.append(app)
        await app.client.start()
        return app

    yield make
    for app in apps:
        await app.client.close()


@pytest.fixture
def artifacts(tmp_path: Path) -> Path:
    """Where a test leaves what a person may want to look at (``IMHUB_TEST_ARTIFACTS``, or
    the test's temporary folder)."""
    folder = Path(os.environ.get("IMHUB_TEST_ARTIFACTS") or tmp_path / "artifacts")
    folder.mkdir(parents=True, exist_ok=True)
    return folder
