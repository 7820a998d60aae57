"""An imhub application: a bot that answers every message sent to it, in the same chat.

    python examples/echo_bot.py --server tcp://127.0.0.1:9000 --token "$(imhub token 3)"

It shows the whole client API an application needs: the shared client, start with retry,
events in order and exactly once, sends that survive reconnects, and a clean logout.
"""

from __future__ import annotations

import argparse
import asyncio
import logging

from imhub.client import (
    ClientError,
    GroupChanged,
    Message,
    Notice,
    Recalled,
    State,
    StateChanged,
    shared,
)


async def main(server: str, token: str, state_file: str | None) -> None:
    client = shared(server, token, state_file=state_file, heartbeat_interval=20)
    await client.start()  # retries with backoff until the server answers
    print(f"echo bot online as user {client.user_id}", flush=True)
    try:
        async for event in client.events():
            if isinstance(event, Message) and event.from_user_id != client.user_id:
                reply = f"echo: {event.body}"
                try:
                    if event.team_id:
                        sent = await client.send_chat(team=event.team_id, body=reply)
                    else:
                        sent = await client.send_chat(to_user=event.from_user_id, body=reply)
                    print(f"answered #{event.seq} with #{sent.seq}", flush=True)
                except ClientError as exc:  # refused, e.g. removed from the group
                    print(f"could not answer: {exc}", flush=True)
            elif isinstance(event, Recalled):
                print(f"#{event.ref_seq} was recalled", flush=True)
            elif isinstance(event, GroupChanged):
                print(f"group {event.team_id}: {event.body}", flush=True)
            elif isinstance(event, Notice):
                print(f"notice: {event.body}", flush=True)
            elif isinstance(event, StateChanged) and event.state is not State.ONLINE:
                print(f"connection {event.state.value}", flush=True)
    finally:
        await client.logout()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", default="tcp://127.0.0.1:9000")
    parser.add_argument("--token", required=True)
    parser.add_argument("--state-file", help="keep cursors and unsent messages across restarts")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    try:
        asyncio.run(main(args.server, args.token, args.state_file))
    except KeyboardInterrupt:
        pass
