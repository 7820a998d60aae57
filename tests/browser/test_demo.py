"""``imhub demo`` (what ``make run`` calls before serving): two users when the database has
none, and a link for each that signs the browser client in at once."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Awaitable, Callable

import pytest

from tests.browser.conftest import NO_PLAYWRIGHT, ChatPage
from tests.helpers import ServerProcess

expect = pytest.importorskip("playwright.async_api", reason=NO_PLAYWRIGHT).expect
pytestmark = pytest.mark.asyncio(loop_scope="session")


def demo(server: ServerProcess) -> str:
    env = {**server.env, "IMHUB_PORT": str(server.port)}
    result = subprocess.run(
        [sys.executable, "-m", "imhub", "demo"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return result.stdout


async def test_demo_users_and_their_links(
    make_server: Callable[..., ServerProcess],
    open_page: Callable[..., Awaitable[ChatPage]],
) -> None:
    server = make_server()  # an empty database, as every test server starts with
    assert server.count("SELECT COUNT(*) FROM users") == 0
    first = demo(server)
    links = re.findall(r"^  (\w+) \(user (\d+)\)\s+(http://\S+)$", first, re.M)
    assert [(name, user) for name, user, _ in links] == [("alice", "1"), ("bob", "2")]
    assert all(link.startswith(f"{server.url}/#token=") for _, _, link in links)
    # Run again (the next `make run`): nobody new, links for the same two users.
    again = demo(server)
    assert server.count("SELECT COUNT(*) FROM users") == 2
    assert re.findall(r"\(user (\d+)\)", again) == ["1", "2"]

    alice = await open_page(server, 1, sign_in=False)
    await alice.page.goto(links[0][2])
    await expect(alice.state).to_have_text("Online")
    await expect(alice.page.locator("#me-name")).to_have_text("User 1")
