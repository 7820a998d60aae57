"""The composition root: builds every part from one ``Config`` and wires them together."""

from __future__ import annotations

import asyncio
import logging
import signal
import time

from imhub.config import Config
from imhub.gateway.server import Gateway
from imhub.http.api import HttpApi
from imhub.protocol.messages import MsgType
from imhub.service.auth import TokenAuthority
from imhub.service.chat import ChatService
from imhub.service.dispatch import Dispatcher
from imhub.service.login import LoginService
from imhub.service.notices import NoticeService
from imhub.service.sessions import SessionRegistry
from imhub.storage.database import create_engine
from imhub.storage.migrate import pending_migrations
from imhub.storage.writer import BatchWriter

log = logging.getLogger("imhub")


def clock_ms() -> int:
    return time.time_ns() // 1_000_000


class App:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.engine = create_engine(config.db_url)
        self.writer = BatchWriter(self.engine, config.batch_max)
        self.registry = SessionRegistry()
        self.auth = TokenAuthority(config.token_secret)
        self.login = LoginService(self.engine, self.writer, self.registry, self.auth)
        self.chat = ChatService(self.engine, self.writer, self.registry, clock_ms)
        self.notices = NoticeService(self.writer, self.registry, clock_ms)
        dispatcher = Dispatcher(
            {
                MsgType.HEARTBEAT: self.login.heartbeat,
                MsgType.LOGIN: self.login.login,
                MsgType.LOGOUT: self.login.logout,
                MsgType.CHAT: self.chat.chat,
                MsgType.CHAT_ENTER: self.chat.chat_enter,
                MsgType.CHAT_QUIT: self.chat.chat_quit,
                MsgType.NOTICE: self.notices.from_client,
                MsgType.UNREAD: self.login.unread_request,
            }
        )
        self.gateway: Gateway
        api = HttpApi(
            config.api_key, self.engine, self.auth, self.notices, lambda: self.gateway.stats()
        )
        self.gateway = Gateway(config, dispatcher, self.login.closed, api.handle)

    async def start(self) -> None:
        if await pending_migrations(self.engine):
            await self.engine.dispose()
            raise SystemExit("the database is not migrated: run `imhub migrate` first")
        self.writer.start()
        await self.gateway.start()

    async def stop(self) -> None:
        await self.gateway.stop()
        await self.writer.close()
        await self.engine.dispose()


async def serve(config: Config) -> None:
    """Run until SIGINT or SIGTERM, then stop gracefully."""
    app = App(config)
    await app.start()
    log.info(
        "imhub listening on %s:%d (TCP frames, WebSocket /ws, HTTP)", config.host, app.gateway.port
    )
    print(f"imhub listening on {config.host}:{app.gateway.port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        log.info("stopping")
        await app.stop()
