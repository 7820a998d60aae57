"""person_msg: drop two indexes no query uses

Every index is one more B-tree page written per stored message. ``from_user_id`` alone is
the prefix of the unique (from_user_id, msg_id_client) index; nothing looks messages up by
``to_user_id`` alone (a user's chats are found through ``chat``, messages by (chat_id, seq)).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("person_msg", schema=None) as batch_op:
        batch_op.drop_index("ix_person_msg_to_user_id")
        batch_op.drop_index("ix_person_msg_from_user_id")


def downgrade() -> None:
    with op.batch_alter_table("person_msg", schema=None) as batch_op:
        batch_op.create_index("ix_person_msg_from_user_id", ["from_user_id"], unique=False)
        batch_op.create_index("ix_person_msg_to_user_id", ["to_user_id"], unique=False)
