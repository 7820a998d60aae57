"""Every membership of a group member, not only the last: table ``team_membership``

``chat.join_seq`` and ``chat.leave_seq`` (0003) keep a member's last membership only. A cluster
node that fills a connection's gap from storage (its news lost with a Redis outage) needs each
one: a member removed and added again meanwhile sees what was stored while they were a member,
and not what was stored between. One row per membership; existing member rows become one
each (their last, all that was kept).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "team_membership",
        sa.Column(
            "membership_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("team_id", sa.BigInteger(), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("join_seq", sa.BigInteger(), nullable=False),
        sa.Column("leave_seq", sa.BigInteger(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("membership_id"),
        sa.UniqueConstraint("team_id", "user_id", "join_seq", name="uq_team_membership"),
    )
    op.execute(
        "INSERT INTO team_membership (team_id, user_id, join_seq, leave_seq)"
        " SELECT team_id, to_user_id, join_seq, leave_seq FROM chat WHERE event_type = 1"
    )


def downgrade() -> None:
    op.drop_table("team_membership")
