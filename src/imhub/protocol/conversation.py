"""A conversation as one int: a one-to-one chat is its ``chatId``, a group is ``-teamId``.

Server and client both key their per-conversation state (sequence numbers, read positions,
cursors) this way; on the wire a conversation is always addressed by ``chatId`` or ``teamId``.
"""

from __future__ import annotations


def conv_key(chat_id: int | None, team_id: int | None) -> int:
    return -team_id if team_id else (chat_id or 0)


def conv_ids(conv: int) -> tuple[int, int]:
    """(chat_id, team_id) of a conversation key; the other one is 0."""
    return (0, -conv) if conv < 0 else (conv, 0)
