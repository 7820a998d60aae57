"""Faults in a real database: triggers that make the write path's statements fail.

A trigger that raises fails the statement that fired it, inside whatever transaction it belongs
to, exactly as a constraint, a full disk or a driver error would: the fault tests of the writer
(in-process) and of the server (over sockets) use them to fail writes at random (``rate``
percent of the rows written) or whenever a message's body is ``poison``. The same triggers
exist on SQLite (``RAISE(ABORT)``), PostgreSQL (PL/pgSQL ``RAISE EXCEPTION``) and MariaDB
(``SIGNAL SQLSTATE '45000'``).
"""

from __future__ import annotations

from tests.databases import Database

# Statements of the write path that a fault can hit: new messages, new pair and member rows,
# sequence and read-position saves, membership changes, groups, recalls.
_TARGETS = (
    ("insert", "person_msg"),
    ("insert", "team_msg"),
    ("insert", "chat"),
    ("update", "chat"),
    ("insert", "team"),
    ("update", "team"),
    ("update", "person_msg"),
    ("update", "team_msg"),
)


def _poisoned(verb: str, table: str) -> bool:
    return verb == "insert" and table.endswith("_msg")


def install_faults(db: Database) -> None:
    """Add the fault triggers to ``db`` (faults off)."""
    db.sql("create table fault (rate integer not null, poison varchar(100))")
    db.sql("insert into fault values (0, null)")
    for verb, table in _TARGETS:
        for statement in _trigger(db.backend, verb, table):
            db.sql(statement)


def _trigger(backend: str, verb: str, table: str) -> list[str]:
    name = f"fault_{verb}_{table}"
    if backend == "sqlite":
        poison = " or new.body = (select poison from fault)" if _poisoned(verb, table) else ""
        return [
            f"create trigger {name} before {verb} on {table} "
            f"when abs(random()) % 100 < (select rate from fault){poison} "
            "begin select raise(abort, 'injected fault'); end"
        ]
    if backend == "postgresql":
        poison = " or new.body = (select poison from fault)" if _poisoned(verb, table) else ""
        return [
            f"create function {name}() returns trigger language plpgsql as $$ begin "
            f"if random() * 100 < (select rate from fault){poison} then "
            "raise exception 'injected fault'; end if; return new; end $$",
            f"create trigger {name} before {verb} on {table} for each row "
            f"execute function {name}()",
        ]
    if backend == "mariadb":
        poison = " or new.body = (select poison from fault)" if _poisoned(verb, table) else ""
        return [
            f"create trigger {name} before {verb} on {table} for each row begin "
            f"if rand() * 100 < (select rate from fault){poison} then "
            "signal sqlstate '45000' set message_text = 'injected fault'; end if; end"
        ]
    raise ValueError(backend)


def set_faults(db: Database, rate: int = 0, poison: str | None = None) -> None:
    """Fail ``rate`` percent of rows written, and every message whose body is ``poison``."""
    db.sql("update fault set rate = ?, poison = ?", rate, poison)
