"""A grown database in minutes: millions of stored messages written straight into a migrated
imhub SQLite file, as the server would have left them, for the history-growth bench.

    python -m bench.history generate --messages 10000000 --conversations 100000 --out DIR

What it writes, so that a server started on the file continues it:

- users ``u1``..``uN`` (the names ``bench.common.start_server`` gives, N at least 20,000);
- one-to-one chats (``chat`` rows with the smaller id in ``from_user_id``, ``last_seq`` = the
  number of messages, each side's read position at or a little below it) and about 1 % groups
  (a ``team`` row, the create event at seq 1, one member row per member that joined at it);
- messages with seqs 1..k per conversation, oldest first, client ids ``h<conv>-<seq>`` (apart
  from every id the benches send, so no bench message is taken for a retry of one of these);
- the conversations the benches use are among the longest: pairs (2k-1 → 2k) for k = 1..100
  (``bench.p2p``), a group of users 1..1000, and user ``LOGIN_USER``'s chats with the 50 users
  after it (``bench.history`` times a login with a backlog there).

Rows go in with ``executemany`` in large transactions, journal off, conversation by
conversation, so both unique indexes of the message tables grow at a few places at a time
(each sender's client ids increase with the conversation). No ANALYZE: a server's own
database has none either, and the query plans must be good without it.
"""

from __future__ import annotations

import os
import random
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any

PAIRS = 100  # bench.p2p's pairs: users 2k-1 -> 2k
GROUP_MEMBERS = 1000  # a group of users 1..1000
LOGIN_USER = 1001  # the user whose login with a backlog bench.history times
LOGIN_PEERS = 50  # ... over chats with users LOGIN_USER+1 .. LOGIN_USER+50
MIN_USERS = 20_000  # bench.idle logs in 19,900 users
GROUP_SHARE = 0.01  # of the other conversations, groups
CHAT_MSG, CREATE, BODY_TIPS = 3, 16, 7
DAY_MS = 86_400_000
BODIES = [
    "ok",
    "see you at 3",
    "did you get the file I sent this morning?",
    "yes, thanks! I will look at it tonight and come back to you",
    "https://example.com/some/long/path/to/a/shared/document?id=42",
    "haha",
    "can we move the meeting to tomorrow? something came up here, sorry about that",
    "👍",
]


@dataclass(frozen=True)
class Plan:
    """Who talks in which conversation, and how many messages each holds."""

    users: int
    chats: list[tuple[int, int]]  # (smaller, larger) user id; chat_id = index + 1
    groups: list[list[int]]  # members, the first the admin; team_id = index + 1
    chat_sizes: list[int]
    group_sizes: list[int]


def plan(messages: int, conversations: int, seed: int = 1) -> Plan:
    """The benches' conversations first and longest (each 50 times the average, the group
    twice that, all of them at most a tenth of the messages), then random pairs and groups
    whose sizes follow a long-tailed law, scaled to ``messages`` in all."""
    rng = random.Random(seed)
    users = max(MIN_USERS, conversations, LOGIN_USER + LOGIN_PEERS)
    chats = [(2 * k - 1, 2 * k) for k in range(1, PAIRS + 1)]
    chats += [(LOGIN_USER, LOGIN_USER + j) for j in range(1, LOGIN_PEERS + 1)]
    groups = [list(range(1, GROUP_MEMBERS + 1))]
    fixed = len(chats) + len(groups)
    if conversations < fixed:
        raise SystemExit(f"--conversations must be at least {fixed} (the benches' own)")
    seen = set(chats)
    n_groups = int((conversations - fixed) * GROUP_SHARE)
    while len(chats) < conversations - n_groups - 1:
        a, b = rng.randint(1, users), rng.randint(1, users)
        p = (min(a, b), max(a, b))
        if a != b and p not in seen and LOGIN_USER not in p:
            seen.add(p)
            chats.append(p)
    while len(groups) < n_groups + 1:
        members = rng.sample(range(1, users + 1), rng.randint(3, 50))
        if LOGIN_USER not in members:  # their conversations are the 50 chats only
            groups.append(members)
    avg = messages / conversations
    # The benches' own conversations hold at most a tenth of the messages between them.
    long_chat = max(1, int(min(50 * avg, 0.1 * messages / (PAIRS + LOGIN_PEERS + 2))))
    long_group = 2 * long_chat
    fixed_msgs = (PAIRS + LOGIN_PEERS) * long_chat + long_group
    n_rest = conversations - fixed
    rest = [rng.paretovariate(2.0) for _ in range(n_rest)]
    scale = max(0, messages - fixed_msgs) / sum(rest) if rest else 0
    sizes = [max(1, min(long_chat, int(w * scale))) for w in rest]
    short = max(0, messages - fixed_msgs - sum(sizes))  # what rounding and the cap left out
    for i in range(n_rest):
        sizes[i] += short // n_rest + (i < short % n_rest)
    n_chat_rest = len(chats) - PAIRS - LOGIN_PEERS
    chat_sizes = [long_chat] * (PAIRS + LOGIN_PEERS) + sizes[:n_chat_rest]
    group_sizes = [max(1, long_group)] + [max(1, s) for s in sizes[n_chat_rest:]]
    return Plan(users, chats, groups, chat_sizes, group_sizes)


def _person_rows(
    chat_id: int, a: int, b: int, k: int, rng: random.Random, t0: int
) -> Iterator[tuple[Any, ...]]:
    step = DAY_MS * 30 // max(k, 1)
    for seq in range(1, k + 1):
        frm, to = (a, b) if rng.random() < 0.5 else (b, a)
        body = BODIES[(seq * 7 + chat_id) % len(BODIES)]
        yield (chat_id, seq, frm, to, body, f"h{chat_id}-{seq}", t0 + seq * step)


def _team_rows(
    team_id: int, members: list[int], k: int, rng: random.Random, t0: int
) -> Iterator[tuple[Any, ...]]:
    step = DAY_MS * 30 // max(k, 1)
    admin = members[0]
    yield (team_id, 1, CREATE, admin, BODY_TIPS, f"u{admin} created g{team_id}",
           f"team-{CREATE}-{team_id}-1", t0)  # fmt: skip
    for seq in range(2, k + 1):
        body = BODIES[(seq * 7 + team_id) % len(BODIES)]
        frm = rng.choice(members)
        yield (team_id, seq, CHAT_MSG, frm, 0, body, f"h-{team_id}-{seq}", t0 + seq * step)


_PERSON = (
    "insert into person_msg (chat_id, seq, msg_type, ref_seq, from_user_id, to_user_id,"
    " client_type, body_type, body, voice_time, cancel_flag, read_flag, msg_id_client,"
    " send_time, version, delete_flag) values (?, ?, 3, 0, ?, ?, 2, 0, ?, 0, 0, 0, ?, ?, 0, 0)"
)
_TEAM = (
    "insert into team_msg (team_id, seq, ref_seq, msg_type, from_user_id, client_type,"
    " body_type, body, voice_time, cancel_flag, read_flag, read_num, msg_id_client, send_time,"
    " version, delete_flag) values (?, ?, 0, ?, ?, 2, ?, ?, 0, 0, 0, 0, ?, ?, 0, 0)"
)
_CHAT = (
    "insert into chat (chat_id, event_type, from_user_id, to_user_id, team_id, from_unread_num,"
    " to_unread_num, last_seq, from_read_seq, to_read_seq, join_seq, leave_seq, version,"
    " delete_flag) values (?, ?, ?, ?, ?, 0, 0, ?, ?, ?, ?, 0, 0, 0)"
)

# Every member row's membership (all a generated group has: nobody left), as migration 0005
# made them for the databases before it.
MEMBERSHIPS = (
    "insert into team_membership (team_id, user_id, join_seq, leave_seq)"
    " select team_id, to_user_id, join_seq, leave_seq from chat where event_type = 1"
)


def migrate(data_dir: Path) -> Path:
    """An empty, migrated database (``imhub migrate``, as the server's own start-up)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    env = {"IMHUB_DATA_DIR": str(data_dir), "IMHUB_LOG_LEVEL": "WARNING"}
    subprocess.run(
        [sys.executable, "-m", "imhub", "migrate"],
        env={**os.environ, **env},
        check=True,
        capture_output=True,
    )
    return data_dir / "imhub.db"


def person_messages(p: Plan, seed: int, t0: int) -> Iterator[tuple[Any, ...]]:
    """Every one-to-one message, chat by chat: (chat_id, seq, from, to, body, client id,
    send time)."""
    rng = random.Random(seed + 1)
    for i, ((a, b), k) in enumerate(zip(p.chats, p.chat_sizes, strict=True)):
        yield from _person_rows(i + 1, a, b, k, rng, t0)


def team_messages(p: Plan, seed: int, t0: int) -> Iterator[tuple[Any, ...]]:
    """Every group message, group by group: (team_id, seq, msg_type, from, body_type, body,
    client id, send time)."""
    rng = random.Random(seed + 2)
    for i, (members, k) in enumerate(zip(p.groups, p.group_sizes, strict=True)):
        yield from _team_rows(i + 1, members, k, rng, t0)


def chat_rows(p: Plan, seed: int) -> list[tuple[int, ...]]:
    """The ``chat`` rows (the columns ``_CHAT`` names): pairs, then group members."""
    rng = random.Random(seed + 3)
    rows: list[tuple[int, ...]] = []
    for i, ((a, b), k) in enumerate(zip(p.chats, p.chat_sizes, strict=True)):
        unread = 0 if i < PAIRS + LOGIN_PEERS else rng.choice((0, 0, 0, 1, 2, 5))
        rows.append((i + 1, 0, a, b, 0, k, k, max(0, k - unread), 0))
    chat_id = len(p.chats)
    for i, (members, k) in enumerate(zip(p.groups, p.group_sizes, strict=True)):
        for u in members:
            chat_id += 1
            read = k if i == 0 else max(0, k - rng.choice((0, 0, 1, 3)))
            rows.append((chat_id, 1, 0, u, i + 1, 0, 0, read, 1))
    return rows


def team_rows(p: Plan) -> list[tuple[Any, ...]]:
    """The ``team`` rows: id, name, admin, admin's name, last seq."""
    return [
        (i + 1, f"g{i + 1}", members[0], f"u{members[0]}", k)
        for i, (members, k) in enumerate(zip(p.groups, p.group_sizes, strict=True))
    ]


def chunks(rows: Iterator[tuple[Any, ...]], size: int) -> Iterator[list[tuple[Any, ...]]]:
    while part := list(islice(rows, size)):
        yield part


def generate(out: Path, messages: int, conversations: int, seed: int = 1) -> dict[str, Any]:
    """Write the database ``out/imhub.db`` (replacing one there); what was written, and how
    long it took."""
    started = time.perf_counter()
    path = out / "imhub.db"
    for old in (path, out / "imhub.db-wal", out / "imhub.db-shm"):
        old.unlink(missing_ok=True)
    migrate(out)
    p = plan(messages, conversations, seed)
    t0 = int(time.time() * 1000) - 31 * DAY_MS
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("pragma journal_mode=off")
    db.execute("pragma synchronous=off")
    db.execute("pragma cache_size=-1000000")  # 1 GB: the indexes' growing edges stay in memory
    db.execute("begin")
    db.executemany(
        "insert into users (user_id, username, mobile, head_img, version, delete_flag)"
        " values (?, ?, '', '', 0, 0)",
        ((u, f"u{u}") for u in range(1, p.users + 1)),
    )
    for sql, rows in ((_PERSON, person_messages(p, seed, t0)), (_TEAM, team_messages(p, seed, t0))):
        for part in chunks(rows, 500_000):
            db.executemany(sql, part)
            db.execute("commit")
            db.execute("begin")
    db.executemany(_CHAT, chat_rows(p, seed))
    db.execute(MEMBERSHIPS)
    db.executemany(
        "insert into team (team_id, team_name, team_admin, team_admin_name, last_seq, version,"
        " delete_flag) values (?, ?, ?, ?, ?, 0, 0)",
        team_rows(p),
    )
    db.execute("commit")
    db.execute("pragma journal_mode=wal")  # as the server leaves it
    db.close()
    return _stats(p, time.perf_counter() - started, path.stat().st_size)


def _stats(p: Plan, seconds: float, size: int) -> dict[str, Any]:
    stored = sum(p.chat_sizes) + sum(p.group_sizes)
    return {
        "messages": stored,
        "conversations": len(p.chats) + len(p.groups),
        "chats": len(p.chats),
        "groups": len(p.groups),
        "users": p.users,
        "longest_chat": max(p.chat_sizes),
        "bench_pair_messages": p.chat_sizes[0],
        "bench_group_messages": p.group_sizes[0],
        "seconds": round(seconds, 1),
        "rows_per_s": round(stored / seconds),
        "db_mib": round(size / 2**20),
    }
