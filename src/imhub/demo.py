"""``imhub demo``: two users to try the browser client with, and a link that signs each in.

``make run`` calls it before ``imhub serve``. When the database has no users it creates two,
alice and bob; then, every time, it prints a link for each of the first two users
(``http://HOST:PORT/#token=…``, a token valid for a week), so a newcomer opens one link per
browser tab and chats between them. A database that has users already gets no new ones. The
server itself never creates users: ``imhub serve`` (and so every test server) is unaffected.
"""

from __future__ import annotations

from imhub.config import Config
from imhub.service.auth import TokenAuthority
from imhub.storage.database import create_engine
from imhub.storage.users import UserRow, add_user, list_users

DEMO_USERS = ("alice", "bob")
LINK_TTL = 7 * 24 * 3600  # seconds


async def demo_users(config: Config) -> tuple[list[UserRow], bool]:
    """The first two users, made first if the database has none; and whether they were."""
    engine = create_engine(config.db_url)
    try:
        users = await list_users(engine, 0, len(DEMO_USERS))
        if users:
            return users, False
        for name in DEMO_USERS:
            await add_user(engine, name, "")
        return await list_users(engine, 0, len(DEMO_USERS)), True
    finally:
        await engine.dispose()


def link(config: Config, user_id: int) -> str:
    """A link to the browser client that signs ``user_id`` in at once."""
    host = "127.0.0.1" if config.host in ("", "0.0.0.0", "::") else config.host
    if ":" in host:
        host = f"[{host}]"
    token = TokenAuthority(config.token_secret).mint(user_id, LINK_TTL)
    scheme = "https" if config.tls_cert else "http"
    return f"{scheme}://{host}:{config.port}/#token={token}"


def report(config: Config, users: list[UserRow], created: bool) -> str:
    """What ``imhub demo`` prints."""
    if not users:
        return "no users"
    made = "created two users" if created else "the database's first users"
    lines = [f"imhub demo: {made}; once the server is up, open each link in its own tab:"]
    width = max(len(f"{u.username} (user {u.user_id})") for u in users)
    for u in users:
        who = f"{u.username} (user {u.user_id})"
        lines.append(f"  {who:<{width}}  {link(config, u.user_id)}")
    if config.port == 0:
        lines.append("  (port 0: use the port the server prints instead)")
    return "\n".join(lines)
