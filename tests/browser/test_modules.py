"""The browser client's session modules on their own, in the browser (no server traffic):
per-conversation ordering and de-duplication, history merged below, unread counts, recall,
the outbox kept in storage, and the backoff."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

import pytest
import pytest_asyncio

from tests.browser.conftest import NO_PLAYWRIGHT, ChatPage
from tests.helpers import ServerProcess

if TYPE_CHECKING:
    from playwright.async_api import Page

pytest.importorskip("playwright.async_api", reason=NO_PLAYWRIGHT)
pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest_asyncio.fixture(loop_scope="session")
async def page(
    server: ServerProcess, open_page: Callable[..., Awaitable[ChatPage]]
) -> AsyncIterator[Page]:
    chat = await open_page(server, 0, sign_in=False)
    await chat.page.goto(server.url + "/app/icon.svg")  # any page of the server's origin
    yield chat.page


async def run(page: Page, body: str, arg: Any = None) -> Any:
    """Run ``body`` (JavaScript with the modules imported) and return its result."""
    script = f"""async (arg) => {{
        const {{ Conversation }} = await import("/app/conversation.js");
        const {{ Inbox }} = await import("/app/inbox.js");
        const {{ Outbox }} = await import("/app/outbox.js");
        const {{ backoff }} = await import("/app/backoff.js");
        const msg = (seq, extra = {{}}) =>
            ({{ msgType: 7, chatId: 1, seq, fromUserId: 2, body: `m${{seq}}`, ...extra }});
        {body}
    }}"""
    return await page.evaluate(script, arg)


@pytest.mark.parametrize("seed", range(5))
async def test_every_item_once_and_in_order_whatever_the_arrival(page: Page, seed: int) -> None:
    rng = random.Random(seed)
    arrivals = [s for s in range(1, 61) for _ in range(rng.randint(1, 3))]  # with duplicates
    rng.shuffle(arrivals)
    released, held, waiting = await run(
        page,
        """
        const inbox = new Inbox();
        inbox.me = 1;
        const c = inbox.get("c1");
        c.startAfter(0);
        const out = [];
        for (const seq of arg) out.push(...c.accept({ seq, kind: "msg", fromUserId: 2 }));
        return [out.map((i) => i.seq), [...c.held()].map((i) => i.seq), c.waiting.size];
        """,
        arrivals,
    )
    assert released == list(range(1, 61))
    assert held == list(range(1, 61))
    assert waiting == 0


async def test_a_conversation_starts_no_later_than_what_waits_for_it(page: Page) -> None:
    result = await run(
        page,
        """
        const inbox = new Inbox();
        inbox.me = 1;
        inbox.deliver(msg(5), false);            // live, before the conversation is known
        inbox.deliver(msg(6), false);
        const c = inbox.get("c1");
        const before = [c.started, inbox.gaps()];
        inbox.know([{ chatId: 1, peerUserId: 2, lastSeq: 7, readSeq: 7 }]);
        inbox.deliver(msg(7, { msgType: 3 }), true);  // from the sync page
        inbox.deliver(msg(6), false);            // a duplicate
        return [before, c.cursor, [...c.held()].map((i) => i.seq), inbox.gaps(), c.peerUserId];
        """,
    )
    assert result == [[False, True], 7, [5, 6, 7], False, 2]


async def test_history_goes_below_and_unread_counts_what_others_sent(page: Page) -> None:
    result = await run(
        page,
        """
        const inbox = new Inbox();
        inbox.me = 1;
        const c = inbox.get("c1");
        c.startAfter(10);
        const more = [c.hasOlder];
        c.older([7, 8, 9, 10].map((s) => msg(s)), true);
        more.push(c.hasOlder, c.low);
        c.older([1, 2, 3, 4, 5, 6].map((s) => msg(s, s === 3 ? { recalled: true } : {})), false);
        more.push(c.hasOlder, c.low);
        for (const s of [11, 12, 13, 14]) {
            inbox.deliver(msg(s, s === 12 ? { fromUserId: 1 } : {}), false);
        }
        c.read(10, 0);
        const unread = [c.unread(1)];
        inbox.deliver({ msgType: 10, chatId: 1, seq: 15, refSeq: 13, fromUserId: 2 }, false);
        unread.push(c.unread(1), c.items.get(13).recalled, c.items.get(3).body);
        inbox.read({ msgType: 12, chatId: 1, fromUserId: 1, seq: 15 });
        unread.push(c.unread(1));
        inbox.read({ msgType: 12, chatId: 1, fromUserId: 2, seq: 12 });
        return [more, [...c.held()].map((i) => i.seq).join(), unread, c.peerReadSeq, c.last().seq];
        """,
    )
    more, seqs, unread, peer_read, last = result
    assert more == [True, True, 7, False, 1]
    assert seqs == ",".join(map(str, range(1, 16)))
    # 11, 13, 14 are from the other user (12 is mine); then 13 is recalled; then all read.
    assert unread == [3, 2, True, "", 0]
    assert peer_read == 12
    assert last == 14  # the recall (15) is not a line of its own


async def test_the_outbox_is_kept_in_storage_per_user(page: Page) -> None:
    result = await run(
        page,
        """
        const store = new Map();
        const storage = {
            get length() { return store.size; },
            key: (i) => [...store.keys()][i] ?? null,
            getItem: (k) => store.get(k) ?? null,
            setItem: (k, v) => store.set(k, String(v)),
            removeItem: (k) => store.delete(k),
        };
        const a = new Outbox(storage);
        a.load(7);
        a.add({ msgType: 3, toUserId: 2, msgIdClient: "m1", body: "one" }, "c1");
        a.add({ msgType: 3, toUserId: 2, msgIdClient: "m2", body: "two" }, "c1");
        const other = new Outbox(storage);
        other.load(8);                           // another user's: nothing of these
        const reloaded = new Outbox(storage);
        reloaded.load(7);                        // after a reload: both, oldest first
        const before = reloaded.unsent(1).map((e) => e.payload.msgIdClient);
        reloaded.take("m1", true);
        const after = new Outbox(storage);
        after.load(7);
        return [other.entries.size, before, after.unsent(1).map((e) => e.payload.body),
                reloaded.mine("m1"), [...store.keys()]];
        """,
    )
    assert result == [0, ["m1", "m2"], ["two"], True, ["imhub.outbox.7.m2"]]


async def test_the_backoff_doubles_up_to_its_cap_with_jitter(page: Page) -> None:
    delays = await run(
        page,
        """
        const least = (n) => backoff(n, 0.5, 4, () => 0);
        const most = (n) => backoff(n, 0.5, 4, () => 1);
        return [1, 2, 3, 4, 10].map((n) => [least(n), most(n)]);
        """,
    )
    assert delays == [[250, 500], [500, 1000], [1000, 2000], [2000, 4000], [2000, 4000]]
