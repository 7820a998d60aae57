"""The seed's six tables, with the columns imhub adds, and the notice tables.

What is added, and why, is a table in docs/architecture.md (section Storage).
"""

from __future__ import annotations

import datetime as dt
from typing import cast

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
    func,
)
from sqlalchemy.dialects.mysql import MEDIUMTEXT
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# SQLite only auto-increments an INTEGER PRIMARY KEY, so BIGINT becomes INTEGER there.
BigId = BigInteger().with_variant(Integer(), "sqlite")
# A body up to the frame limit: MySQL's TEXT holds 64 KiB of bytes, not of characters
# (migration 0004; text columns there are utf8mb4 with the utf8mb4_nopad_bin collation).
Body = Text().with_variant(MEDIUMTEXT(), "mysql", "mariadb")


class Base(DeclarativeBase):
    pass


class Audited:
    """The seed's bookkeeping columns, common to every table."""

    version: Mapped[int] = mapped_column(Integer, nullable=False, default=0, server_default="0")
    create_time: Mapped[dt.datetime | None] = mapped_column(DateTime, server_default=func.now())
    update_time: Mapped[dt.datetime | None] = mapped_column(
        DateTime, server_default=func.now(), onupdate=func.now()
    )
    delete_flag: Mapped[bool] = mapped_column(
        Boolean, nullable=False, default=False, server_default=false()
    )


class User(Audited, Base):
    __tablename__ = "users"
    user_id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(String(20), nullable=False)
    mobile: Mapped[str] = mapped_column(String(20), nullable=False)
    head_img: Mapped[str] = mapped_column(String(125), nullable=False, default="")


class Chat(Audited, Base):
    """A conversation row. One-to-one (``event_type`` 0): one row per pair, the smaller user id
    in ``from_user_id``, with the pair's sequence and each side's read position. Group
    (``event_type`` 1): one row per member (``to_user_id``) with that member's read position;
    ``delete_flag`` marks a member who left or was removed."""

    __tablename__ = "chat"
    chat_id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    event_type: Mapped[int] = mapped_column(Integer, nullable=False)  # 0 person, 1 team
    from_user_id: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    to_user_id: Mapped[int] = mapped_column(BigInteger, nullable=False)
    team_id: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    from_unread_num: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    to_unread_num: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    last_seq: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    from_read_seq: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    to_read_seq: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    # Group member rows: the seq of the event that made them a member (create or add), and of
    # the one that ended it (remove, leave, dissolve), 0 while a member. A former member still
    # receives everything up to and including that event, and nothing after it.
    join_seq: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0, server_default="0")
    leave_seq: Mapped[int] = mapped_column(
        BigInteger, nullable=False, default=0, server_default="0"
    )
    __table_args__ = (
        UniqueConstraint("from_user_id", "to_user_id", "team_id", name="uq_chat_pair"),
        Index("ix_chat_to_user_id", "to_user_id"),
        Index("ix_chat_team_id", "team_id"),
    )


class Team(Audited, Base):
    __tablename__ = "team"
    team_id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    team_name: Mapped[str] = mapped_column(String(50), nullable=False)
    team_admin: Mapped[int] = mapped_column(BigInteger, nullable=False)
    team_admin_name: Mapped[str] = mapped_column(String(20), nullable=False)
    last_seq: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)


class PersonMsg(Audited, Base):
    __tablename__ = "person_msg"
    person_msg_id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    chat_id: Mapped[int] = mapped_column(BigInteger, nullable=False)
    seq: Mapped[int] = mapped_column(BigInteger, nullable=False)
    msg_type: Mapped[int] = mapped_column(Integer, nullable=False, default=3)
    ref_seq: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    from_user_id: Mapped[int] = mapped_column(BigInteger, nullable=False)
    to_user_id: Mapped[int] = mapped_column(BigInteger, nullable=False)
    client_type: Mapped[int] = mapped_column(Integer, nullable=False)
    body_type: Mapped[int] = mapped_column(Integer, nullable=False)
    body: Mapped[str] = mapped_column(Body, nullable=False)
    voice_time: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    cancel_flag: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    read_flag: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    msg_id_client: Mapped[str] = mapped_column(String(50), nullable=False)
    send_time: Mapped[int] = mapped_column(BigInteger, nullable=False)
    __table_args__ = (
        # A client's ids name its chat messages only (msg_type 3): the server's own events
        # (recalls, group changes) keep their ids apart, whatever string a client picks.
        UniqueConstraint(
            "from_user_id", "msg_id_client", "msg_type", name="uq_person_msg_client_id"
        ),
        UniqueConstraint("chat_id", "seq", name="uq_person_msg_seq"),
    )


class TeamMsg(Audited, Base):
    __tablename__ = "team_msg"
    team_msg_id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    team_id: Mapped[int] = mapped_column(BigInteger, nullable=False)
    seq: Mapped[int] = mapped_column(BigInteger, nullable=False)
    ref_seq: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    from_user_id: Mapped[int] = mapped_column(BigInteger, nullable=False)
    client_type: Mapped[int] = mapped_column(Integer, nullable=False)
    msg_type: Mapped[int] = mapped_column(Integer, nullable=False)
    body_type: Mapped[int] = mapped_column(Integer, nullable=False)
    body: Mapped[str] = mapped_column(Body, nullable=False)
    voice_time: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    cancel_flag: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    read_flag: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    read_num: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    msg_id_client: Mapped[str] = mapped_column(String(50), nullable=False)
    send_time: Mapped[int] = mapped_column(BigInteger, nullable=False)
    __table_args__ = (
        # A client's ids name its chat messages only (msg_type 3): the server's own events
        # (recalls, group changes) keep their ids apart, whatever string a client picks.
        UniqueConstraint("from_user_id", "msg_id_client", "msg_type", name="uq_team_msg_client_id"),
        UniqueConstraint("team_id", "seq", name="uq_team_msg_seq"),
    )


class TeamMemberMsg(Audited, Base):
    """The seed's row per member per group message. imhub does not write it: read state is a
    position per member (``chat.to_read_seq``); see docs/architecture.md."""

    __tablename__ = "team_member_msg"
    team_member_msg_id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    chat_id: Mapped[int] = mapped_column(BigInteger, nullable=False)
    team_id: Mapped[int] = mapped_column(BigInteger, nullable=False, index=True)
    team_msg_id: Mapped[int] = mapped_column(BigInteger, nullable=False)
    from_user_id: Mapped[int] = mapped_column(BigInteger, nullable=False)
    to_user_id: Mapped[int] = mapped_column(BigInteger, nullable=False, index=True)
    read_flag: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    read_time: Mapped[dt.datetime | None] = mapped_column(DateTime, server_default=func.now())


class Notice(Base):
    """A notice from a business backend or the system, stored once for all its targets."""

    __tablename__ = "notice"
    notice_id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    from_user_id: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    body_type: Mapped[int] = mapped_column(Integer, nullable=False)
    body: Mapped[str] = mapped_column(Body, nullable=False)
    send_time: Mapped[int] = mapped_column(BigInteger, nullable=False)


class NoticeTarget(Base):
    """One target user of a notice; ``delivered`` flips once, when it is written to them."""

    __tablename__ = "notice_target"
    notice_target_id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    notice_id: Mapped[int] = mapped_column(BigInteger, nullable=False)
    to_user_id: Mapped[int] = mapped_column(BigInteger, nullable=False)
    delivered: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    __table_args__ = (Index("ix_notice_target_pending", "to_user_id", "delivered"),)


class TeamMembership(Base):
    """Every membership a user has had of a group: from the event that began it (create, add)
    to the one that ended it (remove, leave, dissolve; 0 while it lasts). The member row in
    ``chat`` keeps the last one only; a cluster node filling a connection's gap from storage
    needs them all (a member removed and added again while news was lost)."""

    __tablename__ = "team_membership"
    membership_id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    team_id: Mapped[int] = mapped_column(BigInteger, nullable=False)
    user_id: Mapped[int] = mapped_column(BigInteger, nullable=False)
    join_seq: Mapped[int] = mapped_column(BigInteger, nullable=False)
    leave_seq: Mapped[int] = mapped_column(
        BigInteger, nullable=False, default=0, server_default="0"
    )
    __table_args__ = (
        UniqueConstraint("team_id", "user_id", "join_seq", name="uq_team_membership"),
    )


# Typed handles on the tables, for the Core statements of the repositories.
users_table = cast(Table, User.__table__)
chat_table = cast(Table, Chat.__table__)
team_table = cast(Table, Team.__table__)
team_msg_table = cast(Table, TeamMsg.__table__)
person_msg_table = cast(Table, PersonMsg.__table__)
notice_table = cast(Table, Notice.__table__)
notice_target_table = cast(Table, NoticeTarget.__table__)
membership_table = cast(Table, TeamMembership.__table__)
