"""``imhub chat``: an interactive terminal chat on top of the client library.

Incoming messages print above the prompt; the prompt shows the connection state and the open
conversation. Type text to send it to the open conversation, or a command (``/help``).
"""

from __future__ import annotations

import asyncio
import shlex
import ssl
from dataclasses import dataclass, field

from prompt_toolkit import PromptSession
from prompt_toolkit.patch_stdout import patch_stdout

from imhub.client import (
    ClientClosed,
    ClientError,
    Conversations,
    GroupChanged,
    ImClient,
    Message,
    Notice,
    Read,
    Recalled,
    State,
    StateChanged,
)
from imhub.client.events import Event
from imhub.protocol.messages import ClientType, MsgType

HELP = """commands:
  /chats                       your conversations, with unread counts
  /open user ID | group ID     open a one-to-one chat with a user, or a group
  /group NAME ID[,ID...]       create a group with these members and open it
  /history [N]                 the last N messages of the open conversation (default 20)
  /recall SEQ                  take back your message number SEQ
  /help                        this list
  /quit                        log out and leave
anything else is sent to the open conversation"""


@dataclass
class Open:
    chat_id: int | None = None
    team_id: int | None = None
    peer: int | None = None  # the other user of a one-to-one chat
    label: str = ""


@dataclass
class ChatUi:
    client: ImClient
    open: Open = field(default_factory=Open)
    unread: dict[str, int] = field(default_factory=dict)

    def prompt(self) -> str:
        state = self.client.state.value
        where = self.open.label or "no chat open (/help)"
        return f"[{state}] {where}> "

    def show(self, event: Event) -> None:
        """Print what happened, above the prompt."""
        if isinstance(event, Message):
            where = f"group {event.team_id}" if event.team_id else f"chat {event.chat_id}"
            who = (
                "me" if event.from_user_id == self.client.user_id else f"user {event.from_user_id}"
            )
            print(f"[{where}] #{event.seq} {who}: {event.body}")
            if not event.shown_as_chat:
                key = where
                self.unread[key] = self.unread.get(key, 0) + 1
        elif isinstance(event, Recalled):
            where = f"group {event.team_id}" if event.team_id else f"chat {event.chat_id}"
            print(f"[{where}] user {event.from_user_id} recalled #{event.ref_seq}")
        elif isinstance(event, GroupChanged):
            print(f"[group {event.team_id}] {event.body}")
        elif isinstance(event, Notice):
            print(f"[notice #{event.notice_id} from {event.from_user_id}] {event.body}")
        elif isinstance(event, Read) and event.reader != self.client.user_id:
            print(f"[chat {event.chat_id}] user {event.reader} read up to #{event.seq}")
        elif isinstance(event, Conversations):
            self.unread = {
                (f"group {c['teamId']}" if "teamId" in c else f"chat {c['chatId']}"): c["unread"]
                for c in event.convs
                if c.get("unread")
            }
        elif isinstance(event, StateChanged) and event.state is not State.ONLINE:
            print(f"-- {event.state.value}{': ' + event.reason if event.reason else ''} --")
        elif isinstance(event, StateChanged):
            print("-- online --")

    async def command(self, line: str) -> bool:
        """Run one line; False to leave."""
        if not line.startswith("/"):
            await self.send(line)
            return True
        args = shlex.split(line[1:])
        name, rest = (args[0], args[1:]) if args else ("help", [])
        if name in ("quit", "exit"):
            await self.client.logout()
            return False
        if name == "chats":
            convs = await self.client.conversations()
            for c in convs:
                if "teamId" in c:
                    print(f"  group {c['teamId']} {c.get('teamName', '')}: {c['unread']} unread")
                else:
                    print(f"  chat {c['chatId']} with user {c['peerUserId']}: {c['unread']} unread")
            if not convs:
                print("  no conversations yet")
        elif name == "open" and len(rest) == 2 and rest[1].isdigit():
            await self.open_conv(rest[0], int(rest[1]))
        elif name == "group" and len(rest) == 2:
            members = [int(x) for x in rest[1].split(",") if x.strip()]
            answer = await self.client.group(
                MsgType.TEAM_CREATE, teamName=rest[0], memberIds=members
            )
            if answer.team_id:
                await self.open_conv("group", answer.team_id)
            elif answer.chat_id:
                await self.open_conv("user", answer.to_user_id or 0)
        elif name == "history":
            await self.history(int(rest[0]) if rest else 20)
        elif name == "recall" and rest and rest[0].isdigit():
            await self.client.recall(
                int(rest[0]), chat_id=self.open.chat_id, team_id=self.open.team_id
            )
            print(f"recalled #{rest[0]}")
        else:
            print(HELP)
        return True

    async def open_conv(self, kind: str, ident: int) -> None:
        if self.open.chat_id or self.open.team_id:
            await self.client.quit(chat_id=self.open.chat_id, team_id=self.open.team_id)
        if kind == "user":  # as the seed's createTeamChat: one other member gives the pair
            answer = await self.client.group(
                MsgType.TEAM_CREATE, teamName="chat", memberIds=[ident]
            )
            label = f"chat {answer.chat_id} with user {ident}"
            self.open = Open(chat_id=answer.chat_id, peer=ident, label=label)
        elif kind == "group":
            self.open = Open(team_id=ident, label=f"group {ident}")
        else:
            print(HELP)
            return
        await self.client.enter(chat_id=self.open.chat_id, team_id=self.open.team_id)
        key = f"group {ident}" if kind == "group" else f"chat {self.open.chat_id}"
        self.unread.pop(key, None)
        print(f"opened {self.open.label}")

    async def send(self, text: str) -> None:
        if not text.strip():
            return
        if self.open.team_id:
            sent = await self.client.send_chat(team=self.open.team_id, body=text)
        elif self.open.peer:
            sent = await self.client.send_chat(to_user=self.open.peer, body=text)
        else:
            print("open a conversation first: /open user ID, or /open group ID")
            return
        print(f"  sent #{sent.seq}")

    async def history(self, n: int) -> None:
        if not (self.open.chat_id or self.open.team_id):
            print("open a conversation first")
            return
        messages, _ = await self.client.history(
            chat_id=self.open.chat_id, team_id=self.open.team_id, limit=n
        )
        for m in messages:
            body = "(recalled)" if m.recalled else m.body
            print(f"  #{m.seq} {self.who(m.from_user_id)}: {body}")

    def who(self, user_id: int) -> str:
        return "me" if user_id == self.client.user_id else f"user {user_id}"


async def run_chat(server: str, token: str, ssl_context: ssl.SSLContext | None = None) -> None:
    client = ImClient(server, token, client_type=ClientType.PC, ssl_context=ssl_context)
    ui = ChatUi(client)
    client.add_listener(ui.show)
    session: PromptSession[str] = PromptSession()
    with patch_stdout(raw=True):
        print(f"connecting to {server} ...")
        try:
            await client.start()
        except ClientClosed as exc:
            print(f"cannot connect: {exc}")
            return
        print(f"logged in as user {client.user_id}. /help lists the commands.")
        while True:
            try:
                line = await session.prompt_async(ui.prompt, refresh_interval=0.5)
            except (EOFError, KeyboardInterrupt):
                await client.close()
                return
            try:
                if not await ui.command(line.strip()):
                    return
            except ClientError as exc:
                print(f"refused: {exc.reason} ({exc.code})")
            except (ValueError, TimeoutError) as exc:
                print(f"error: {exc}")


def main(server: str, token: str, ssl_context: ssl.SSLContext | None = None) -> None:
    import uvloop

    uvloop.run(run_chat(server, token, ssl_context))
    asyncio.set_event_loop_policy(None)
