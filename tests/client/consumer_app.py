"""A receiving application for tests/client/test_app_killed.py, run as a process the test kills.

For every message it does its work: it prints one line ``got <body>`` and flushes it, which is
the application having finished with that message. ``online`` is printed once ``start()`` has
returned. Two ways to consume:

- ``--mode events`` (the default): ``async for event in client.events()``; a message is done
  with once the loop asks for the next event;
- ``--mode listener``: a callback registered before ``start()``; a message is done with once
  the callback has returned. The application then just waits.

With ``--paced`` it reads one line from stdin before each message (a permit from the test), so
the test decides how far it gets before the kill, whatever the machine's speed.

    python -m tests.client.consumer_app --server tcp://127.0.0.1:9000 --token T --state-file F
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from imhub.client import Event, ImClient, Message

PACED = False


def work(event: Event) -> None:
    if isinstance(event, Message):
        if PACED:
            sys.stdin.readline()  # blocks the whole application, as slow work would
        print(f"got {event.body}", flush=True)


async def main(server: str, token: str, state_file: str, mode: str) -> None:
    client = ImClient(server, token, state_file=state_file)
    if mode == "listener":
        client.add_listener(work)
    await client.start()
    print("online", flush=True)
    if mode == "listener":
        await asyncio.Event().wait()  # the listener does everything; killed from outside
    async for event in client.events():
        work(event)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--server", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--state-file", required=True)
    parser.add_argument("--mode", choices=("events", "listener"), default="events")
    parser.add_argument("--paced", action="store_true")
    args = parser.parse_args()
    PACED = args.paced
    asyncio.run(main(args.server, args.token, args.state_file, args.mode))
