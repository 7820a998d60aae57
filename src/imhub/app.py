"""The composition root: builds every part from one ``Config`` and wires them together."""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import time

from sqlalchemy.exc import SQLAlchemyError

from imhub.cluster.bus import Bus, LocalBus
from imhub.config import Config
from imhub.gateway.server import Gateway
from imhub.http.api import HttpApi
from imhub.http.docs import ApiDocs
from imhub.http.inbox import InboxRoutes
from imhub.http.messaging import MessagingRoutes
from imhub.http.ops import SHUTTING_DOWN, Ops
from imhub.http.routes import Router
from imhub.http.teams import TeamRoutes
from imhub.http.users import UserRoutes
from imhub.http.web import web_routes
from imhub.logs import name_node
from imhub.metrics import Metrics
from imhub.protocol.messages import MsgType
from imhub.service.audit import audited
from imhub.service.auth import TokenAuthority
from imhub.service.chat import ChatService
from imhub.service.conversations import Membership
from imhub.service.crossnode import CrossNode
from imhub.service.delivery import Delivery
from imhub.service.dispatch import Dispatcher, Handler
from imhub.service.gapfill import GapFiller
from imhub.service.history import HistoryService
from imhub.service.inbox import InboxService
from imhub.service.limits import Limits
from imhub.service.login import LoginService
from imhub.service.notices import NoticeService
from imhub.service.presence import PresenceService
from imhub.service.reads import ReadService
from imhub.service.sessions import SessionRegistry
from imhub.service.system import SystemMessageService
from imhub.service.teams import TeamService
from imhub.service.users import UserService
from imhub.storage.caches import StorageCaches
from imhub.storage.chats import EnsurePairs, Pairs
from imhub.storage.conversations import Sequences
from imhub.storage.database import (
    Checkpointer,
    ExclusiveLock,
    LockedError,
    commit_setting,
    create_engine,
    ping,
)
from imhub.storage.locks import RowLocks
from imhub.storage.messages import Recall, StoreMessages
from imhub.storage.migrate import pending_migrations
from imhub.storage.notices import ClaimOnLogin
from imhub.storage.reads import MoveReads
from imhub.storage.staged import Transaction
from imhub.storage.system import StoreSystemMessages
from imhub.storage.teams import ApplyTeamOps, Teams
from imhub.storage.users import DeleteUsers, KnownUsers
from imhub.storage.writer import BATCH_DEADLINE, BatchWriter

log = logging.getLogger("imhub")

READY_TIMEOUT = 1.0  # seconds the database has to answer a readiness probe


def clock_ms() -> int:
    return time.time_ns() // 1_000_000


class App:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.metrics = metrics = Metrics()
        self.engine = engine = create_engine(config.db_url, config.durability)
        self.checkpointer = Checkpointer(engine)
        self.lock = ExclusiveLock(engine)
        # State the writer keeps between batches (caches of what only it changes), kept only
        # from transactions that committed.
        tx = Transaction()
        metrics.write_queue = lambda: writer.queued
        self.registry = registry = SessionRegistry()
        self.limits = Limits(config, time.monotonic)
        self.auth = TokenAuthority(config.token_secret)

        # SQLite is one process's database (``storage.database.ExclusiveLock``); on the
        # others several servers may write, and the writer's caches are checked against the
        # database in each transaction (docs/architecture.md, "Several writers").
        shared = engine.dialect.name != "sqlite"
        sequences = Sequences(tx, shared=shared)
        pairs, teams = Pairs(tx), Teams(tx, sequences=sequences)
        known_users = KnownUsers(tx, shared=shared)
        self.writer = writer = BatchWriter(
            engine,
            tx,
            config.batch_max,
            self.checkpointer.between_batches,
            self._batch_done,
            # Shared: every batch locks its rows in one order first (docs/architecture.md).
            lock_rows=RowLocks(sequences, pairs) if shared else None,
            deadline=BATCH_DEADLINE if shared else None,
        )
        self.caches = StorageCaches(known_users, teams)
        membership = Membership(engine, teams)
        delivery = Delivery(registry)
        self.bus: Bus = LocalBus()
        self.cluster: CrossNode | None = None
        directory = None
        if config.cluster:
            from imhub.cluster.redisbus import RedisBus  # redis is imported by nodes only

            bus = RedisBus(config.cluster)
            name_node(bus.node_id.decode())
            self.bus, directory = bus, bus.presence
            self.cluster = cluster = CrossNode(
                bus,
                registry,
                writer,
                MoveReads(sequences),
                GapFiller(
                    engine,
                    lambda row, users: cluster.read_at_once(row, users),
                    config.max_frame,
                ),
                self.caches.forget_user,
                self._caches_stale,
                bus.presence,
            )
            delivery.fanout = cluster
            cluster.delivery = delivery
            metrics.cluster = bus, cluster.filler
        presence = PresenceService(registry, directory)

        self.login = LoginService(
            engine,
            writer,
            registry,
            self.auth,
            ClaimOnLogin(known_users, tx),
            max_frame=config.max_frame,
            cluster=self.cluster,
            limits=self.limits,
        )
        self.chat = ChatService(
            writer,
            membership,
            delivery,
            StoreMessages(pairs, teams, sequences, registry.viewers, known_users),
            Recall(teams, sequences),
            clock_ms,
            int(config.recall_window * 1000),
            config.max_inflight,
            metrics.send_answer_seconds,
        )
        if self.cluster is not None:
            self.cluster.receipt = self.chat.receipt
        self.reads = ReadService(
            engine, writer, membership, delivery, self.chat, MoveReads(sequences), registry
        )
        self.history = HistoryService(engine, membership, max_frame=config.max_frame)
        self.teams = TeamService(
            engine,
            writer,
            membership,
            delivery,
            ApplyTeamOps(teams, sequences, config.max_group),
            EnsurePairs(pairs),
            clock_ms,
        )
        self.notices = NoticeService(writer, registry, clock_ms, membership, self.cluster, presence)
        self.users = UserService(
            engine, writer, registry, self.auth, DeleteUsers(known_users), self.cluster
        )
        self.system = SystemMessageService(
            writer,
            delivery,
            StoreSystemMessages(teams, sequences, registry.viewers),
            self.chat,
            clock_ms,
        )
        handlers: dict[MsgType, Handler] = {
            MsgType.HEARTBEAT: self.login.heartbeat,
            MsgType.LOGIN: audited(self.login.login, metrics),
            MsgType.LOGOUT: self.login.logout,
            MsgType.CHAT: self.chat.chat,
            MsgType.CHAT_ENTER: self.reads.chat_enter,
            MsgType.CHAT_QUIT: self.reads.chat_quit,
            MsgType.NOTICE: self.notices.from_client,
            MsgType.UNREAD: self.reads.unread,
            MsgType.RECALL: self.chat.recall,
            MsgType.SYNC: self.history.sync,
            MsgType.READ: self.reads.read,
            MsgType.RECEIPTS: self.reads.receipts,
            MsgType.HISTORY: self.history.history,
            MsgType.CONVS: self.reads.convs,
        }
        for op in range(MsgType.TEAM_CREATE, MsgType.TEAM_INFO + 1):
            handlers[MsgType(op)] = self.teams.handle
        api = HttpApi(
            UserRoutes(self.users, presence),
            InboxRoutes(InboxService(engine, self.history, config.outbound_limit)),
            MessagingRoutes(self.notices, self.system),
            TeamRoutes(self.teams, membership),
        )
        docs = ApiDocs(lambda: self.router.routes)
        ops = Ops(lambda: self.gateway.stats(), self.problem, metrics, self.degraded)
        self.router = Router(
            [*web_routes(), *ops.routes(), *api.routes(), *docs.routes()],
            config.api_key,
            self.limits,
            config.max_frame,
        )
        self.gateway = Gateway(
            config,
            Dispatcher(handlers),
            self.login.closed,
            self.router.handle,
            metrics,
            self.limits,
        )

    def _batch_done(self, writes: int, seconds: float) -> None:
        self.metrics.batch_size.observe(writes)
        self.metrics.commit_seconds.observe(seconds)

    def _caches_stale(self) -> None:
        """News from other nodes may have been missed (a Redis outage): forget what this node
        cached from the database (correctness never depended on it: ``storage.caches``)."""
        log.debug("cluster: caches forgotten after the outage")  # said once per node's resync
        self.caches.forget_all()

    async def problem(self) -> str | None:
        """Why the server should get no traffic now (``/readyz``), or None. A node cut off
        from Redis still serves its own users: it is ready, and says so in ``degraded``."""
        if self.gateway.draining:
            return SHUTTING_DOWN
        return await ping(self.engine, READY_TIMEOUT)

    def degraded(self) -> str | None:
        if self.config.cluster and not self.bus.up:
            return "cluster bus (Redis) unavailable: serving local users only"
        return None

    async def start(self) -> None:
        try:
            pending = await pending_migrations(self.engine)
            setting, on_disk = await commit_setting(self.engine)
        except SQLAlchemyError as exc:
            await self.engine.dispose()
            raise SystemExit(
                f"cannot open the database: {getattr(exc, 'orig', None) or exc}"
            ) from None
        if pending:
            await self.engine.dispose()
            raise SystemExit("the database is not migrated: run `imhub migrate` first")
        # What the database really does, read back. A database server set otherwise than
        # `fsync` asks (PostgreSQL's synchronous_commit or fsync off, MySQL/MariaDB's
        # server-wide flush) breaks that level's promise: said as a warning.
        if self.config.durability == "fsync" and not on_disk:
            log.warning(
                "durability fsync asked, but %s: a commit does not wait for the disk, so a "
                "crash of the database server or of the machine can lose acknowledged "
                "messages; set the database to flush at commit (docs/security.md, Crash "
                "safety)",
                setting,
            )
        else:
            log.info(
                "durability %s: %s (a commit %s the disk)",
                self.config.durability,
                setting,
                "waits for" if on_disk else "does not wait for",
            )
        try:
            self.lock.acquire()
        except LockedError as exc:
            await self.engine.dispose()
            raise SystemExit(str(exc)) from None
        self.writer.start()
        self.checkpointer.start()
        if self.cluster is not None:
            await self.bus.start(self.cluster.on_news, self.cluster.resumed, self.cluster.catch_up)
        try:
            await self.gateway.start()
        except OSError as exc:
            await self.checkpointer.stop()
            await self.writer.close()
            await self.engine.dispose()
            self.lock.release()
            where = f"{self.config.host}:{self.config.port}"
            raise SystemExit(
                f"cannot listen on {where}: {exc.strerror or exc}"
                " (another server there? choose another with --port or IMHUB_PORT)"
            ) from None

    async def stop(self) -> None:
        """Graceful: see ``Gateway.shutdown``; then what the writer has queued is stored."""
        await self.gateway.shutdown(self.config.shutdown_grace)
        await self.bus.close()
        await self.checkpointer.stop()
        await self.writer.close()
        await self.engine.dispose()
        self.lock.release()


async def serve(config: Config, reuse_port: bool = False) -> None:
    """Run until SIGINT or SIGTERM, then stop gracefully (a second one cuts the grace
    period short)."""
    app = App(config)
    app.gateway.reuse_port = reuse_port
    await app.start()
    # Everything made so far (modules, the engine, the app) lives as long as the process: move
    # it out of the collector's sight, or every full collection walks it again (~20 ms here).
    gc.collect()
    gc.freeze()
    log.info(
        "imhub listening on %s:%d (TCP frames, WebSocket /ws, HTTP)", config.host, app.gateway.port
    )
    print(f"imhub listening on {config.host}:{app.gateway.port}", flush=True)
    stop = asyncio.Event()

    def signalled() -> None:
        if stop.is_set():
            app.gateway.hurry()
        stop.set()

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, signalled)
    try:
        await stop.wait()
    finally:
        await app.stop()
        log.info("stopped")
