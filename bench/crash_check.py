"""The crash test's verdict: the senders' and receivers' records against a fresh read of the
database, and the database's own integrity check.

- every acknowledged message is stored exactly once (by sender and ``msgIdClient``), at the
  ``seq`` and ``msgIdServer`` its answer gave; nothing is stored that nobody was answered for;
- every recipient got it (after the reconnections' syncs), once, as the message it is;
- every conversation's sequence is 1 … ``last_seq`` with no gap and no repeat;
- recalls: each acknowledged one is stored at its ``seq`` and its message is marked; every
  recall event and every mark come in pairs (an undecided recall is either whole or absent);
- groups: name and members as the owner's acknowledged (or decided) operations left them, and
  each acknowledged operation stored as that event at the ``seq`` its answer gave;
- SQLite ``PRAGMA integrity_check`` and ``foreign_key_check``; PostgreSQL ``amcheck``:
  ``bt_index_parent_check`` (with every heap tuple looked up in each B-tree) and
  ``verify_heapam`` on every table.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field

from bench.crash_load import Conv, Records
from tests.databases import Database

CHAT, RECALL = 3, 10


@dataclass
class Verdict:
    acknowledged: int = 0
    stored: int = 0
    lost: int = 0
    duplicated: int = 0
    unanswered_stored: int = 0
    gaps: int = 0
    undelivered: int = 0
    misdelivered: int = 0
    problems: list[str] = field(default_factory=list)
    integrity: str = ""

    def ok(self) -> bool:
        return not self.problems and self.integrity == "ok"

    def fail(self, what: str) -> None:
        if len(self.problems) < 50:
            self.problems.append(what)


def check(db: Database, records: Records) -> Verdict:
    v = Verdict(acknowledged=len(records.sent))
    for problem in records.violations + records.refused:
        v.fail(problem)
    rows: dict[tuple[int, str], list[tuple[Conv, int, int]]] = defaultdict(list)
    seqs: dict[Conv, list[int]] = defaultdict(list)
    by_seq: dict[tuple[Conv, int], tuple[int, int, int, bool]] = {}  # type, ref, from, cancel
    tables = (("person_msg", "chat", "person_msg_id"), ("team_msg", "team", "team_msg_id"))
    for table, kind, ident in tables:
        for conv_id, seq, msg_type, ref, sender, mid, msg_id, cancel in db.sql(
            f"SELECT {kind}_id, seq, msg_type, ref_seq, from_user_id, msg_id_client, {ident},"
            f" cancel_flag FROM {table}"
        ):
            conv = (kind, int(conv_id))
            seqs[conv].append(int(seq))
            by_seq[(conv, int(seq))] = (int(msg_type), int(ref), int(sender), bool(cancel))
            if msg_type == CHAT:
                rows[(int(sender), str(mid))].append((conv, int(seq), int(msg_id)))
    v.stored = sum(len(r) for r in rows.values())

    for key, answer in records.sent.items():
        copies = rows.get(key, [])
        if not copies:
            v.lost += 1
            v.fail(f"acknowledged {key} {answer} is not stored")
        elif len(copies) > 1:
            v.duplicated += len(copies) - 1
            v.fail(f"acknowledged {key} is stored {len(copies)} times: {copies}")
        elif copies[0] != answer:
            v.fail(f"{key} was answered as {answer} but stored as {copies[0]}")
    for key, copies in rows.items():
        if key not in records.sent:
            v.unanswered_stored += len(copies)
            v.fail(f"{key} is stored ({copies}) but its sender was never answered")

    _check_sequences(db, seqs, v)
    _check_delivery(records, v)
    _check_recalls(records, by_seq, v)
    _check_groups(db, records, by_seq, v)
    v.integrity = integrity(db)
    return v


def _check_sequences(db: Database, seqs: dict[Conv, list[int]], v: Verdict) -> None:
    last: dict[Conv, int] = {}
    for chat_id, n in db.sql("SELECT chat_id, last_seq FROM chat WHERE event_type = 0"):
        last[("chat", int(chat_id))] = int(n)
    for team_id, n in db.sql("SELECT team_id, last_seq FROM team"):
        last[("team", int(team_id))] = int(n)
    for conv in set(last) | set(seqs):
        have, top = sorted(seqs.get(conv, [])), last.get(conv, 0)
        if have != list(range(1, top + 1)):
            v.gaps += 1
            missing = sorted(set(range(1, top + 1)) - set(have))
            repeats = [s for s, n in Counter(have).items() if n > 1]
            beyond = [s for s in have if s > top]
            v.fail(
                f"{conv}: last_seq {top}, missing {missing[:10]}, repeated {repeats[:10]},"
                f" beyond {beyond[:10]}"
            )


def _check_delivery(records: Records, v: Verdict) -> None:
    for user, convs in records.received.items():
        for conv, got in convs.items():
            repeats = [s for s, n in Counter(s for s, _, _ in got).items() if n > 1]
            if repeats:
                v.fail(f"user {user} got {conv} seqs {repeats[:10]} more than once")
            for seq, sender, mid in got:
                answer = records.sent.get((sender, mid))
                if answer is not None and answer[:2] != (conv, seq):
                    v.misdelivered += 1
                    v.fail(f"user {user} got {sender}/{mid} as {conv} {seq}, stored as {answer}")
    for key, (conv, seq, _) in records.sent.items():
        for user in records.recipients[key]:
            if not any(s == seq for s, _, _ in records.received[user].get(conv, ())):
                v.undelivered += 1
                v.fail(f"user {user} never got {key} ({conv} {seq})")


def missing_deliveries(records: Records) -> int:
    """How many (recipient, message) pairs have not arrived yet (the test waits for 0)."""
    got = {
        (user, conv, seq)
        for user, convs in records.received.items()
        for conv, items in convs.items()
        for seq, _, _ in items
    }
    return sum(
        (user, conv, seq) not in got
        for key, (conv, seq, _) in records.sent.items()
        for user in records.recipients[key]
    )


def _check_recalls(
    records: Records, by_seq: dict[tuple[Conv, int], tuple[int, int, int, bool]], v: Verdict
) -> None:
    for conv, ref, own in records.recalls:
        event = by_seq.get((conv, own))
        if event is None or event[:2] != (RECALL, ref):
            v.fail(f"acknowledged recall of {conv} {ref} is not stored at {own}: {event}")
        if not by_seq.get((conv, ref), (0, 0, 0, False))[3]:
            v.fail(f"acknowledged recall of {conv} {ref}: the message is not marked recalled")
    events = Counter((conv, row[1]) for (conv, _), row in by_seq.items() if row[0] == RECALL)
    marked = {(conv, seq) for (conv, seq), row in by_seq.items() if row[3]}
    for key, n in events.items():
        if n > 1 or key not in marked:
            v.fail(f"recall of {key}: {n} recall events, marked: {key in marked}")
    for key in marked - set(events):
        v.fail(f"{key} is marked recalled with no recall event")


def _check_groups(
    db: Database,
    records: Records,
    by_seq: dict[tuple[Conv, int], tuple[int, int, int, bool]],
    v: Verdict,
) -> None:
    made = {int(t) for (t,) in db.sql("SELECT team_id FROM team")}
    if made != {g.team_id for g in records.groups}:
        v.fail(f"groups {sorted(made - {g.team_id for g in records.groups})} nobody made")
    for group in records.groups:
        conv: Conv = ("team", group.team_id)
        for seq, op in group.ops:
            if by_seq.get((conv, seq), (0,))[0] != op:
                v.fail(f"group {group.team_id}: operation {op} acknowledged as {seq} is not there")
        ((name, gone),) = db.sql(
            "SELECT team_name, delete_flag FROM team WHERE team_id = ?", group.team_id
        )
        if bool(gone) != group.dismissed:
            v.fail(f"group {group.team_id}: dissolved {bool(gone)}, by its owner {group.dismissed}")
        members = {
            int(u)
            for (u,) in db.sql(
                "SELECT to_user_id FROM chat WHERE team_id = ? AND event_type = 1"
                " AND delete_flag = ?",
                group.team_id,
                False,
            )
        }
        if (members, name) != (group.members(), group.name):
            v.fail(
                f"group {group.team_id} is {sorted(members)} {name!r}, the owner's operations"
                f" made it {sorted(group.members())} {group.name!r}"
            )


def integrity(db: Database) -> str:
    """'ok', or what the database's own check found."""
    if db.backend == "sqlite":
        found = [str(r[0]) for r in db.sql("PRAGMA integrity_check")]
        keys = db.sql("PRAGMA foreign_key_check")
        if found != ["ok"] or keys:
            return f"integrity_check: {found[:5]}; foreign_key_check: {keys[:5]}"
        return "ok"
    if db.backend == "postgresql":
        db.sql("CREATE EXTENSION IF NOT EXISTS amcheck")
        problems: list[str] = []
        indexes = db.sql(
            "SELECT c.oid, c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
            " JOIN pg_am a ON a.oid = c.relam JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE a.amname = 'btree' AND n.nspname = 'public'"
        )
        for oid, name in indexes:
            try:  # raises on the first corruption it finds
                db.sql("SELECT bt_index_parent_check(?, true)", oid)
            except Exception as e:
                problems.append(f"{name}: {e}")
        heap = db.sql(
            "SELECT c.relname, v.msg FROM pg_class c"
            " JOIN pg_namespace n ON n.oid = c.relnamespace"
            " CROSS JOIN LATERAL verify_heapam(c.oid) v"
            " WHERE c.relkind = 'r' AND n.nspname = 'public'"
        )
        problems += [f"{name}: {msg}" for name, msg in heap]
        return "ok" if not problems else "; ".join(problems[:5])
    return f"no integrity check for {db.backend}"
