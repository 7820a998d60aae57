"""Users as a business backend manages them: create, read, list, change, delete, and tokens.

Deleting is a soft delete (``delete_flag``) that takes effect at once: it is a write in the
writer's stream, so every login and send queued after it finds no such user, and right after
its commit every live connection of the user is told (401) and closed. Nothing of it is in
memory before the commit: a deletion that does not commit leaves the user as they were.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from imhub.protocol.errors import ErrorCode, ImError
from imhub.service.auth import TokenAuthority
from imhub.service.crossnode import CrossNode
from imhub.service.sessions import SessionRegistry
from imhub.storage import users
from imhub.storage.users import DeleteUsers, UserRow
from imhub.storage.writer import BatchWriter

DELETED_REASON = "user deleted"


class UserService:
    def __init__(
        self,
        engine: AsyncEngine,
        writer: BatchWriter,
        registry: SessionRegistry,
        auth: TokenAuthority,
        delete: DeleteUsers,
        cluster: CrossNode | None = None,
    ) -> None:
        self._cluster = cluster  # None: one process
        self._engine = engine
        self._writer = writer
        self._registry = registry
        self._auth = auth
        self._delete = delete

    async def create(self, username: str, mobile: str, head_img: str) -> UserRow:
        user_id = await users.add_user(self._engine, username, mobile, head_img)
        return UserRow(user_id, username, mobile, head_img)

    async def get(self, user_id: int) -> UserRow:
        """The user, or ``ImError`` 404 (also for a deleted one)."""
        row = await users.get_user(self._engine, user_id)
        if row is None:
            raise ImError(ErrorCode.NOT_FOUND, f"user {user_id} does not exist")
        return row

    async def page(self, after: int, limit: int) -> tuple[list[UserRow], int | None]:
        """Users with ids above ``after``, and the ``after`` of the next page (None: last)."""
        rows = await users.list_users(self._engine, after, limit + 1)
        if len(rows) > limit:
            return rows[:limit], rows[limit - 1].user_id
        return rows, None

    async def update(self, user_id: int, changes: dict[str, str]) -> UserRow:
        row = await users.update_user(self._engine, user_id, changes)
        if row is None:
            raise ImError(ErrorCode.NOT_FOUND, f"user {user_id} does not exist")
        return row

    async def delete(self, user_id: int) -> None:
        """Soft-delete a user and end their sessions; 404 when there is no such user."""
        await self._writer.call(self._delete, user_id, self._deleted)

    def _deleted(self, user_id: int) -> None:
        # Right after the commit, in the writer's order: a login registered before the
        # deletion is among these; one queued after it is refused by the writer.
        for session in list(self._registry.sessions_of(user_id)):
            session.end(ErrorCode.UNAUTHORIZED, DELETED_REASON)
        if self._cluster is not None:  # and on every other node
            self._cluster.user_deleted(user_id)

    async def token(self, user_id: int, ttl: int) -> str:
        """A login token for an existing user."""
        await self.get(user_id)
        return self._auth.mint(user_id, ttl)
