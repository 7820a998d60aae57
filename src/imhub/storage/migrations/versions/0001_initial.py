"""the seed's six tables with sequences and read positions, notices

Revision ID: 0001
Revises: (none)
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table(
        "chat",
        sa.Column(
            "chat_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("event_type", sa.Integer(), nullable=False),
        sa.Column("from_user_id", sa.BigInteger(), nullable=False),
        sa.Column("to_user_id", sa.BigInteger(), nullable=False),
        sa.Column("team_id", sa.BigInteger(), nullable=False),
        sa.Column("from_unread_num", sa.Integer(), nullable=False),
        sa.Column("to_unread_num", sa.Integer(), nullable=False),
        sa.Column("last_seq", sa.BigInteger(), nullable=False),
        sa.Column("from_read_seq", sa.BigInteger(), nullable=False),
        sa.Column("to_read_seq", sa.BigInteger(), nullable=False),
        sa.Column("version", sa.Integer(), server_default="0", nullable=False),
        sa.Column("create_time", sa.DateTime(), server_default=sa.func.now(), nullable=True),
        sa.Column("update_time", sa.DateTime(), server_default=sa.func.now(), nullable=True),
        sa.Column("delete_flag", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.PrimaryKeyConstraint("chat_id"),
        sa.UniqueConstraint("from_user_id", "to_user_id", "team_id", name="uq_chat_pair"),
    )
    with op.batch_alter_table("chat", schema=None) as batch_op:
        batch_op.create_index("ix_chat_team_id", ["team_id"], unique=False)
        batch_op.create_index("ix_chat_to_user_id", ["to_user_id"], unique=False)

    op.create_table(
        "notice",
        sa.Column(
            "notice_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("from_user_id", sa.BigInteger(), nullable=False),
        sa.Column("body_type", sa.Integer(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("send_time", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("notice_id"),
    )
    op.create_table(
        "notice_target",
        sa.Column(
            "notice_target_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("notice_id", sa.BigInteger(), nullable=False),
        sa.Column("to_user_id", sa.BigInteger(), nullable=False),
        sa.Column("delivered", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("notice_target_id"),
    )
    with op.batch_alter_table("notice_target", schema=None) as batch_op:
        batch_op.create_index("ix_notice_target_pending", ["to_user_id", "delivered"], unique=False)

    op.create_table(
        "person_msg",
        sa.Column(
            "person_msg_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("chat_id", sa.BigInteger(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("msg_type", sa.Integer(), nullable=False),
        sa.Column("ref_seq", sa.BigInteger(), nullable=False),
        sa.Column("from_user_id", sa.BigInteger(), nullable=False),
        sa.Column("to_user_id", sa.BigInteger(), nullable=False),
        sa.Column("client_type", sa.Integer(), nullable=False),
        sa.Column("body_type", sa.Integer(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("voice_time", sa.Integer(), nullable=False),
        sa.Column("cancel_flag", sa.Boolean(), nullable=False),
        sa.Column("read_flag", sa.Boolean(), nullable=False),
        sa.Column("msg_id_client", sa.String(length=50), nullable=False),
        sa.Column("send_time", sa.BigInteger(), nullable=False),
        sa.Column("version", sa.Integer(), server_default="0", nullable=False),
        sa.Column("create_time", sa.DateTime(), server_default=sa.func.now(), nullable=True),
        sa.Column("update_time", sa.DateTime(), server_default=sa.func.now(), nullable=True),
        sa.Column("delete_flag", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.PrimaryKeyConstraint("person_msg_id"),
        sa.UniqueConstraint("chat_id", "seq", name="uq_person_msg_seq"),
        sa.UniqueConstraint("from_user_id", "msg_id_client", name="uq_person_msg_client_id"),
    )
    with op.batch_alter_table("person_msg", schema=None) as batch_op:
        batch_op.create_index("ix_person_msg_from_user_id", ["from_user_id"], unique=False)
        batch_op.create_index("ix_person_msg_to_user_id", ["to_user_id"], unique=False)

    op.create_table(
        "team",
        sa.Column(
            "team_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("team_name", sa.String(length=50), nullable=False),
        sa.Column("team_admin", sa.BigInteger(), nullable=False),
        sa.Column("team_admin_name", sa.String(length=20), nullable=False),
        sa.Column("last_seq", sa.BigInteger(), nullable=False),
        sa.Column("version", sa.Integer(), server_default="0", nullable=False),
        sa.Column("create_time", sa.DateTime(), server_default=sa.func.now(), nullable=True),
        sa.Column("update_time", sa.DateTime(), server_default=sa.func.now(), nullable=True),
        sa.Column("delete_flag", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.PrimaryKeyConstraint("team_id"),
    )
    op.create_table(
        "team_member_msg",
        sa.Column(
            "team_member_msg_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("chat_id", sa.BigInteger(), nullable=False),
        sa.Column("team_id", sa.BigInteger(), nullable=False),
        sa.Column("team_msg_id", sa.BigInteger(), nullable=False),
        sa.Column("from_user_id", sa.BigInteger(), nullable=False),
        sa.Column("to_user_id", sa.BigInteger(), nullable=False),
        sa.Column("read_flag", sa.Boolean(), nullable=False),
        sa.Column("read_time", sa.DateTime(), server_default=sa.func.now(), nullable=True),
        sa.Column("version", sa.Integer(), server_default="0", nullable=False),
        sa.Column("create_time", sa.DateTime(), server_default=sa.func.now(), nullable=True),
        sa.Column("update_time", sa.DateTime(), server_default=sa.func.now(), nullable=True),
        sa.Column("delete_flag", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.PrimaryKeyConstraint("team_member_msg_id"),
    )
    with op.batch_alter_table("team_member_msg", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_team_member_msg_team_id"), ["team_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_team_member_msg_to_user_id"), ["to_user_id"], unique=False
        )

    op.create_table(
        "team_msg",
        sa.Column(
            "team_msg_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("team_id", sa.BigInteger(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("ref_seq", sa.BigInteger(), nullable=False),
        sa.Column("from_user_id", sa.BigInteger(), nullable=False),
        sa.Column("client_type", sa.Integer(), nullable=False),
        sa.Column("msg_type", sa.Integer(), nullable=False),
        sa.Column("body_type", sa.Integer(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("voice_time", sa.Integer(), nullable=False),
        sa.Column("cancel_flag", sa.Boolean(), nullable=False),
        sa.Column("read_flag", sa.Boolean(), nullable=False),
        sa.Column("read_num", sa.Integer(), nullable=False),
        sa.Column("msg_id_client", sa.String(length=50), nullable=False),
        sa.Column("send_time", sa.BigInteger(), nullable=False),
        sa.Column("version", sa.Integer(), server_default="0", nullable=False),
        sa.Column("create_time", sa.DateTime(), server_default=sa.func.now(), nullable=True),
        sa.Column("update_time", sa.DateTime(), server_default=sa.func.now(), nullable=True),
        sa.Column("delete_flag", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.PrimaryKeyConstraint("team_msg_id"),
        sa.UniqueConstraint("from_user_id", "msg_id_client", name="uq_team_msg_client_id"),
        sa.UniqueConstraint("team_id", "seq", name="uq_team_msg_seq"),
    )
    op.create_table(
        "users",
        sa.Column(
            "user_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("username", sa.String(length=20), nullable=False),
        sa.Column("mobile", sa.String(length=20), nullable=False),
        sa.Column("head_img", sa.String(length=125), nullable=False),
        sa.Column("version", sa.Integer(), server_default="0", nullable=False),
        sa.Column("create_time", sa.DateTime(), server_default=sa.func.now(), nullable=True),
        sa.Column("update_time", sa.DateTime(), server_default=sa.func.now(), nullable=True),
        sa.Column("delete_flag", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.PrimaryKeyConstraint("user_id"),
    )


def downgrade() -> None:

    op.drop_table("users")
    op.drop_table("team_msg")
    with op.batch_alter_table("team_member_msg", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_team_member_msg_to_user_id"))
        batch_op.drop_index(batch_op.f("ix_team_member_msg_team_id"))

    op.drop_table("team_member_msg")
    op.drop_table("team")
    with op.batch_alter_table("person_msg", schema=None) as batch_op:
        batch_op.drop_index("ix_person_msg_to_user_id")
        batch_op.drop_index("ix_person_msg_from_user_id")

    op.drop_table("person_msg")
    with op.batch_alter_table("notice_target", schema=None) as batch_op:
        batch_op.drop_index("ix_notice_target_pending")

    op.drop_table("notice_target")
    op.drop_table("notice")
    with op.batch_alter_table("chat", schema=None) as batch_op:
        batch_op.drop_index("ix_chat_to_user_id")
        batch_op.drop_index("ix_chat_team_id")

    op.drop_table("chat")
