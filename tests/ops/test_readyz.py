"""``/readyz``: 200 while the database answers, a JSON 503 saying why while it does not."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import aiohttp

from tests.helpers import ServerProcess


async def get(srv: ServerProcess, path: str) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as http, http.get(srv.url + path) as resp:
        return resp.status, await resp.json()


async def test_readyz_follows_the_database(make_server: Callable[..., ServerProcess]) -> None:
    srv = make_server()
    assert await get(srv, "/readyz") == (200, {"status": "ready"})
    # The probe reads a table every migrated database has; take it away under the server.
    with srv.db() as db:
        db.execute("ALTER TABLE alembic_version RENAME TO hidden_version")
    status, body = await get(srv, "/readyz")
    assert status == 503
    assert body["code"] == 503 and "database" in body["reason"]
    assert (await get(srv, "/healthz"))[0] == 200  # alive all the same
    with srv.db() as db:
        db.execute("ALTER TABLE hidden_version RENAME TO alembic_version")
    assert await get(srv, "/readyz") == (200, {"status": "ready"})
