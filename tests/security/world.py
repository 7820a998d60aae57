"""What the authorization tests act on: three users, conversations mallory may and may not
see, each holding a message whose text is a secret, and a snapshot of every stored row to
prove that a refused request changed nothing."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tests.helpers import Client, ServerProcess

# Every table that holds what a request could change (users, conversations, positions,
# messages, memberships, notices).
TABLES = (
    "users",
    "chat",
    "team",
    "person_msg",
    "team_msg",
    "team_member_msg",
    "notice",
    "notice_target",
)
SECRET = "secret"  # every body mallory must never see contains it
UNKNOWN = 10**12  # an id nothing has


@dataclass
class World:
    alice: int
    bob: int
    mallory: int
    chat: int  # alice and bob's chat: not mallory's
    chat_seq: int  # alice's message in it
    team: int  # alice's group with bob: mallory is not a member
    team_seq: int
    shared: int  # alice's group with bob and mallory: mallory is a member, not the owner
    shared_seq: int  # alice's message in it
    their_chat: int  # alice and mallory's chat
    their_chat_seq: int  # alice's message in it
    former: int  # alice's group mallory was removed from
    former_seq: int  # mallory's own message in it, from before
    online: list[Client]  # alice and bob, online: they must hear nothing of mallory


async def build(server: ServerProcess) -> World:
    alice, a = await server.online("alice", "tcp")
    bob, b = await server.online("bob", "ws")
    mallory = await server.add_user("mallory")
    carol = await server.add_user("carol")  # a group of two would be a chat
    chat = await a.chat(bob, "s1", f"{SECRET} for bob")
    their = await a.chat(mallory, "s2", f"{SECRET} for mallory")
    teams = []
    for name, members in (("private", [bob, carol]), ("shared", [bob, mallory])):
        await a.send({"msgType": 16, "teamName": name, "memberIds": members})
        team = (await a.answer(16))["teamId"]
        said = await a.chat_team(team, f"t-{name}", f"{SECRET} in {name}")
        teams.append((team, said["seq"]))
    # mallory says something in a group, and is removed from it
    await a.send({"msgType": 16, "teamName": "former", "memberIds": [bob, mallory]})
    former = (await a.answer(16))["teamId"]
    m = await server.connect("tcp")
    await m.login(server.token(mallory))
    await m.send({"msgType": 3, "teamId": former, "msgIdClient": "f1", "body": "mine"})
    mine = await m.next_of(lambda f: f["msgType"] == 4)
    await m.close()
    await a.send({"msgType": 18, "teamId": former, "memberIds": [mallory]})
    await a.next_of(lambda f: f["msgType"] == 18 and "code" in f)
    # bob hears all of it; drain it so that what comes later is mallory's doing only
    while not await _quiet(b):
        continue
    return World(
        alice=alice,
        bob=bob,
        mallory=mallory,
        chat=chat["chatId"],
        chat_seq=chat["seq"],
        team=teams[0][0],
        team_seq=teams[0][1],
        shared=teams[1][0],
        shared_seq=teams[1][1],
        their_chat=their["chatId"],
        their_chat_seq=their["seq"],
        former=former,
        former_seq=mine["seq"],
        online=[a, b],
    )


async def _quiet(client: Client) -> bool:
    try:
        return await client.silent(0.3)
    except AssertionError:
        return False


def snapshot(server: ServerProcess) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table above, in a stable order."""
    return {t: sorted(server.sql(f"select * from {t}"), key=repr) for t in TABLES}
