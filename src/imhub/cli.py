"""The ``imhub`` command: serve, migrate, user add, token, config show. All read the same
configuration: flags > ``IMHUB_*`` variables > the TOML file (``--config``) > defaults."""

from __future__ import annotations

import asyncio
import functools
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from imhub import logs
from imhub.config import (
    CONFIG_VAR,
    ENV_VARS,
    FIELDS,
    SECRET_FIELDS,
    Config,
    ConfigError,
    Loaded,
    load,
    masked_url,
    shown,
    with_secrets,
)
from imhub.storage.database import durability_problem, url_problem

_DEFAULTS = Config()
_HELP = {
    "host": "Address to listen on.",
    "port": "Port for TCP frames, WebSocket (/ws) and HTTP (0: any free port).",
    "data_dir": "Folder for the SQLite database and the generated secrets.",
    "database_url": "SQLAlchemy URL; default: SQLite in the data folder.",
    "token_secret": "Secret that signs login tokens; default: generated in the data folder.",
    "api_key": "Key for the HTTP API; default: generated in the data folder.",
    "max_frame": "Largest accepted message, in bytes.",
    "login_timeout": "Seconds a new connection has to log in.",
    "idle_timeout": "Seconds of silence after which a connection is closed.",
    "max_outbound": "Bytes kept for one connection (unread output, messages held in a sync).",
    "batch_max": "Most writes committed in one transaction.",
    "durability": "fsync: answer after the commit is on disk; os: once the OS has it "
    "(survives a kill of imhub, not of the machine).",
    "recall_window": "Seconds during which a sender may recall a message.",
    "max_inflight": "Unanswered sends per connection before it is read no further.",
    "log_level": "DEBUG, INFO, WARNING or ERROR.",
    "log_format": "text, or json (one object per line).",
    "access_log": "Log a line per HTTP request.",
    "shutdown_grace": "Seconds a SIGTERM may take to finish the work read before it exits.",
    "cluster": "Redis URL (redis://host:port/0): run as one node of a cluster.",
    "workers": "Processes sharing the port (SO_REUSEPORT); more than 1 needs --cluster.",
    "max_connections": "Open connections in all.",
    "max_connections_per_address": "Open connections from one address (IPv6: one /64).",
    "max_connections_per_user": "Logged-in connections of one user.",
    "connect_rate": "New connections per second from one address (0: no limit).",
    "connect_burst": "New connections from one address at once, above the rate.",
    "msg_rate": "Messages per second on one connection (0: no limit).",
    "msg_burst": "Messages at once on one connection, above the rate.",
    "user_msg_rate": "Messages per second of one user, all connections (0: no limit).",
    "user_msg_burst": "Messages at once of one user, above the rate.",
    "address_msg_rate": "Messages per second from one address, all users (0: no limit).",
    "address_msg_burst": "Messages at once from one address, above the rate.",
    "http_rate": "HTTP requests per second per address without the API key (0: no limit).",
    "http_burst": "HTTP requests at once per address without the API key, above the rate.",
    "api_rate": "HTTP API requests per second per API key (0: no limit).",
    "api_burst": "HTTP API requests at once per API key, above the rate.",
    "max_group": "Members of one group.",
    "limit_exempt": "Addresses the per-address limits skip (a proxy), space-separated.",
    "tls_cert": "PEM certificate (chain) file: TLS on the same port; needs --tls-key.",
    "tls_key": "PEM private key file of --tls-cert.",
    "tls_only": "Refuse plain connections: TLS (tcps://, https://, wss://) only.",
}


def _option(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The flag of one ``Config`` field. It has no default of its own (absent: None), so that
    ``config.load`` applies the precedence; its help shows the variable and the default."""
    default = getattr(_DEFAULTS, name)
    flag = "--" + name.replace("_", "-")
    shown_default = "" if name in SECRET_FIELDS or default == "" else f"; default: {default}"
    help_text = f"{_HELP[name]} [env: {ENV_VARS[name]}{shown_default}]"
    if isinstance(default, bool):
        return click.option(f"{flag}/--no-{flag[2:]}", name, default=None, help=help_text)
    kind: Any = {int: int, float: float}.get(type(default), str)
    return click.option(flag, name, type=kind, default=None, help=help_text)


def loaded_config(values: dict[str, Any], config_file: str | None) -> Loaded:
    """The configuration from these flags, the environment and the file; usage errors
    name the bad value."""
    path = config_file or os.environ.get(CONFIG_VAR)
    try:
        return load(values, os.environ, Path(path) if path else None)
    except ConfigError as exc:
        raise click.UsageError(f"configuration: {exc}") from None


def config_flags(func: Callable[..., Any]) -> Callable[..., Any]:
    """Add ``--config`` (as ``config_file``) and one flag per ``Config`` field."""
    for name in reversed(FIELDS):
        func = _option(name)(func)
    return click.option(
        "--config",
        "config_file",
        type=click.Path(dir_okay=False),
        default=None,
        help=f"A TOML file of options (key = value). [env: {CONFIG_VAR}]",
    )(func)


def config_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """The configuration flags; the command gets the ``Config`` they make, logging set up."""

    @config_flags
    @functools.wraps(func)
    def wrapper(**kwargs: Any) -> Any:
        values = {k: kwargs.pop(k) for k in FIELDS}
        config = loaded_config(values, kwargs.pop("config_file")).config
        logs.configure(config.log_level, config.log_format)
        try:
            config = with_secrets(config)
        except ConfigError as exc:
            raise click.UsageError(f"configuration: {exc}") from None
        problem = url_problem(config.db_url)
        if problem is not None:
            raise click.UsageError(f"configuration: database_url: {problem}")
        return func(config, **kwargs)

    return wrapper


@click.group()
def main() -> None:
    """imhub: instant messaging and push over TCP and WebSocket on one port."""


@main.command()
@click.option("--reuse-port", is_flag=True, hidden=True, help="A worker of --workers.")
@config_options
def serve(config: Config, reuse_port: bool) -> None:
    """Start the server (run `imhub migrate` first)."""
    import sys

    import uvloop

    from imhub.gateway.tls import server_context

    try:  # unreadable or mismatched files stop the server here, not at the first client
        server_context(config)
    except ConfigError as exc:
        raise click.UsageError(f"configuration: {exc}") from None
    problem = serve_problem(config)
    if problem is not None:
        raise click.UsageError(f"configuration: {problem}")
    if config.workers > 1:
        from imhub.workers import Workers

        argv = sys.argv[sys.argv.index("serve") + 1 :] if "serve" in sys.argv else []
        raise SystemExit(asyncio.run(Workers(config, argv).run()))

    from imhub.app import serve as run

    uvloop.run(run(config, reuse_port=reuse_port))


@main.command()
@config_options
def migrate(config: Config) -> None:
    """Create or upgrade the database tables."""
    from sqlalchemy.exc import SQLAlchemyError

    from imhub.storage.migrate import upgrade

    try:
        upgrade(config.db_url)
    except SQLAlchemyError as exc:
        raise click.ClickException(
            f"cannot open the database: {getattr(exc, 'orig', None) or exc}"
        ) from None
    click.echo(f"database at the newest migration: {masked_url(config.db_url)}")


def serve_problem(config: Config) -> str | None:
    """What makes ``config`` unfit to serve with, though each value is valid on its own."""
    problem = durability_problem(config.db_url, config.durability)
    if problem is not None:
        return problem
    if (config.workers > 1 or config.cluster) and config.db_url.startswith("sqlite"):
        return (
            "cluster and workers > 1 need a database that several processes share "
            "(PostgreSQL or MariaDB: --database-url); SQLite is one process's database"
        )
    if config.workers > 1 and not config.cluster:
        return "workers > 1 needs --cluster redis://...: the workers are nodes of one cluster"
    if config.cluster:
        from redis.asyncio.connection import parse_url

        try:  # the options after "?" as the Redis client reads them
            parse_url(config.cluster)
        except ValueError as exc:
            return f"cluster {masked_url(config.cluster)!r}: {exc}"
    return None


@main.group("config")
def config_group() -> None:
    """Inspect the configuration."""


@config_group.command("show")
@config_flags
def config_show(config_file: str | None, **values: Any) -> None:
    """Print the effective configuration as TOML, each value with where it came from; the
    token secret and the API key are masked."""
    loaded = loaded_config(values, config_file)
    problem = serve_problem(loaded.config)
    if problem is not None:
        raise click.UsageError(f"configuration: {problem}")
    click.echo(shown(loaded))


def database_ready(config: Config) -> None:
    """Stop the command, by name, when the database cannot be used as ``serve`` would refuse
    it: a SQLite file that is not there (connecting would leave an empty one behind), a
    database that cannot be opened, or one not migrated."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import SQLAlchemyError

    from imhub.storage.database import create_engine
    from imhub.storage.migrate import pending_migrations

    url = make_url(config.db_url)
    if url.get_backend_name() == "sqlite" and not Path(url.database or "").exists():
        raise click.ClickException(f"no database at {url.database}: run `imhub migrate` first")

    async def pending() -> bool:
        engine = create_engine(config.db_url)
        try:
            return await pending_migrations(engine)
        finally:
            await engine.dispose()

    try:
        if asyncio.run(pending()):
            raise click.ClickException("the database is not migrated: run `imhub migrate` first")
    except (SQLAlchemyError, OSError) as exc:
        reason = getattr(exc, "orig", None) or exc
        raise click.ClickException(f"cannot open the database: {reason}") from None


@main.group()
def user() -> None:
    """Manage users."""


@user.command("add")
@click.argument("name")
@click.option("--mobile", default="", help="Phone number.")
@click.option("--head-img", default="", help="Avatar URL.")
@config_options
def user_add(config: Config, name: str, mobile: str, head_img: str) -> None:
    """Create a user and print its id."""
    import msgspec

    from imhub.http.api import UserRequest
    from imhub.storage.database import create_engine
    from imhub.storage.users import add_user

    try:  # the same rules as POST /api/v1/users
        for text in (name, mobile, head_img):
            text.encode()  # an argument that was not UTF-8 holds surrogates: refused
        msgspec.convert({"username": name, "mobile": mobile, "headImg": head_img}, UserRequest)
    except UnicodeEncodeError:
        raise click.BadParameter("the arguments must be UTF-8 text") from None
    except msgspec.ValidationError as exc:
        raise click.BadParameter(str(exc)) from None
    database_ready(config)

    async def run() -> int:
        engine = create_engine(config.db_url)
        try:
            return await add_user(engine, name, mobile, head_img)
        finally:
            await engine.dispose()

    click.echo(asyncio.run(run()))


@main.command()
@click.argument("user_id", type=click.IntRange(1, 2**53 - 1))
@click.option(
    "--ttl",
    type=click.IntRange(1, 2**31 - 1),
    default=7 * 24 * 3600,
    show_default=True,
    help="Lifetime in seconds.",
)
@config_options
def token(config: Config, user_id: int, ttl: int) -> None:
    """Print a login token for USER_ID, signed with the server's secret."""
    from imhub.service.auth import TokenAuthority
    from imhub.storage.database import create_engine
    from imhub.storage.users import get_user

    database_ready(config)

    async def exists() -> bool:
        engine = create_engine(config.db_url)
        try:
            return await get_user(engine, user_id) is not None
        finally:
            await engine.dispose()

    if not asyncio.run(exists()):  # as POST /api/v1/tokens: no token for nobody
        raise click.BadParameter(f"user {user_id} does not exist", param_hint="USER_ID")
    click.echo(TokenAuthority(config.token_secret).mint(user_id, ttl))


@main.command()
@config_options
def demo(config: Config) -> None:
    """Create two demo users if the database has none; print a browser link for the first two."""
    from imhub.demo import demo_users, report

    database_ready(config)
    click.echo(report(config, *asyncio.run(demo_users(config))))


@main.command()
@click.option(
    "--server",
    default="tcp://127.0.0.1:9000",
    show_default=True,
    help="tcp://HOST:PORT, ws://HOST:PORT/ws, or over TLS tcps:// or wss://HOST:PORT/ws.",
)
@click.option(
    "--ca",
    "ca_file",
    envvar="IMHUB_CA",
    type=click.Path(exists=True, dir_okay=False),
    help="PEM file of the CA (or certificate) to trust for tcps:// and wss:// "
    "(default: the system's CAs).",
)
@click.option("--token", envvar="IMHUB_TOKEN", help="A login token.")
@click.option(
    "--user",
    "user_id",
    type=int,
    help="Log in as this user with a token minted from the "
    "local server's secret (run beside the server).",
)
@click.option(
    "--data-dir",
    envvar="IMHUB_DATA_DIR",
    default="data",
    show_default=True,
    help="The local server's data folder (for --user).",
)
@click.option("--token-secret", envvar="IMHUB_TOKEN_SECRET", default="", help="For --user.")
def chat(
    server: str,
    ca_file: str | None,
    token: str | None,
    user_id: int | None,
    data_dir: str,
    token_secret: str,
) -> None:
    """An interactive terminal chat."""
    from imhub.chat import main as run_chat
    from imhub.service.auth import TokenAuthority

    if token is None:
        if user_id is None:
            raise click.UsageError("give --token, or --user with the local server's secret")
        config = with_secrets(Config(data_dir=Path(data_dir), token_secret=token_secret))
        token = TokenAuthority(config.token_secret).mint(user_id)
    context = None
    if ca_file is not None:
        import ssl

        context = ssl.create_default_context(cafile=ca_file)
    run_chat(server, token, context)
