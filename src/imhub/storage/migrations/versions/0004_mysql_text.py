"""MySQL/MariaDB: utf8mb4 with a binary, no-pad collation everywhere; bodies in MEDIUMTEXT

On MySQL and MariaDB a table takes the database's default character set, and the usual
collations compare case-insensitively and ignore trailing spaces (PAD SPACE): "abc", "ABC" and
"abc " would be one ``msg_id_client`` under the unique key, and a different message would be
answered as a retry of the first (and lost). Every text column now compares byte for byte, as
on SQLite and PostgreSQL (``utf8mb4_nopad_bin``), and holds 4-byte characters (emoji).

MySQL's TEXT holds 64 KiB *bytes*, less than a frame of 64 KiB of text in a multi-byte script:
bodies are MEDIUMTEXT there. SQLite and PostgreSQL are unchanged.

Revision ID: 0004
Revises: 0003
Create Date: 2027-01-20
"""

from __future__ import annotations

from alembic import op
from sqlalchemy.dialects.mysql import MEDIUMTEXT

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

TABLES = (
    "users", "chat", "team", "person_msg", "team_msg", "team_member_msg", "notice",
    "notice_target",
)  # fmt: skip
BODIES = ("person_msg", "team_msg", "notice")
CHARSET, COLLATION = "utf8mb4", "utf8mb4_nopad_bin"


def _mysql() -> bool:
    return op.get_bind().dialect.name in ("mysql", "mariadb")


def upgrade() -> None:
    if not _mysql():
        return
    for table in TABLES:
        op.execute(f"ALTER TABLE {table} CONVERT TO CHARACTER SET {CHARSET} COLLATE {COLLATION}")
    for table in BODIES:
        op.alter_column(table, "body", type_=MEDIUMTEXT(), existing_nullable=False)


def downgrade() -> None:
    pass  # the columns stay as they are: shrinking them could cut stored bodies
