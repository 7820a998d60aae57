"""Fixtures for client tests: applications built on ImClient, recording what they receive."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from imhub.client import ImClient, Message, State, StateChanged
from imhub.client.events import Event
from tests.helpers import TIMEOUT


class App:
    """An application using the client: records events; waits on what it received."""

    def __init__(self, client: ImClient) -> None:
        self.client = client
        self.events: list[Event] = []
        self.changed = asyncio.Event()
        client.add_listener(self._on)

    def _on(self, event: Event) -> None:
        self.events.append(event)
        self.changed.set()

    @property
    def messages(self) -> list[Message]:
        return [e for e in self.events if isinstance(e, Message)]

    @property
    def states(self) -> list[State]:
        return [e.state for e in self.events if isinstance(e, StateChanged)]

    async def until(self, condition: Callable[[], bool], timeout: float = TIMEOUT * 4) -> None:
        """Wait until ``condition()`` holds, re-checking whenever an event arrives."""
        async with asyncio.timeout(timeout):
            while not condition():
                self.changed.clear()
                await self.changed.wait()


@pytest.fixture
async def make_app() -> AsyncIterator[Callable[..., App]]:
    apps: list[App] = []

    def make(url: str, token: str, **options: Any) -> App:
        options.setdefault("backoff_base", 0.05)
        options.setdefault("backoff_cap", 0.5)
        options.setdefault("request_timeout", 5.0)
        app = App(ImClient(url, token, **options))
        apps.append(app)
        return app

    yield make
    for app in apps:
        await app.client.close()
