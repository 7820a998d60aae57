"""Events apart from clients' ids; where each group member joined and left

A sender's ``msg_id_client`` was unique over all its rows, so a chat message whose id equalled
one the server had made for a recall or a group event collided with it (issue 9). The unique
keys now include ``msg_type``: a client's ids name only its chat messages. Their order keeps
(from_user_id, msg_id_client) as the prefix the retry lookup searches.

``chat.join_seq`` and ``chat.leave_seq`` keep, on a group member's row, the seq of the event
that made them a member and of the one that ended it (0 while a member).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_KEYS = (("person_msg", "uq_person_msg_client_id"), ("team_msg", "uq_team_msg_client_id"))


def upgrade() -> None:
    for table, name in _KEYS:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_constraint(name, type_="unique")
            batch_op.create_unique_constraint(name, ["from_user_id", "msg_id_client", "msg_type"])
    with op.batch_alter_table("chat", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("join_seq", sa.BigInteger(), server_default="0", nullable=False)
        )
        batch_op.add_column(
            sa.Column("leave_seq", sa.BigInteger(), server_default="0", nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("chat", schema=None) as batch_op:
        batch_op.drop_column("leave_seq")
        batch_op.drop_column("join_seq")
    for table, name in _KEYS:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_constraint(name, type_="unique")
            batch_op.create_unique_constraint(name, ["from_user_id", "msg_id_client"])
