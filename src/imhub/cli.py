"""The ``imhub`` command: serve, migrate, user add, token. All read the same configuration."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from imhub.config import ENV_VARS, Config, with_secrets

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
    "recall_window": "Seconds during which a sender may recall a message.",
    "max_inflight": "Unanswered sends per connection before it is read no further.",
    "log_level": "DEBUG, INFO, WARNING or ERROR.",
}


def config_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Add one flag per ``Config`` field (also read from its ``IMHUB_*`` variable)."""
    for f in reversed(dataclasses.fields(Config)):
        default = getattr(_DEFAULTS, f.name)
        kind: Any = {int: int, float: float}.get(type(default), str)
        func = click.option(
            "--" + f.name.replace("_", "-"),
            f.name,
            envvar=ENV_VARS[f.name],
            type=kind,
            default=str(default) if isinstance(default, Path) else default,
            show_default=bool(default) and f.name not in ("token_secret", "api_key"),
            show_envvar=True,
            help=_HELP[f.name],
        )(func)

    @functools.wraps(func)
    def wrapper(**kwargs: Any) -> Any:
        fields = {f.name for f in dataclasses.fields(Config)}
        values = {k: kwargs.pop(k) for k in list(kwargs) if k in fields}
        values["data_dir"] = Path(values["data_dir"])
        config = with_secrets(Config(**values))
        logging.getLogger("alembic").setLevel(logging.WARNING)
        logging.basicConfig(
            level=config.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
        return func(config, **kwargs)

    return wrapper


@click.group()
def main() -> None:
    """imhub: instant messaging and push over TCP and WebSocket on one port."""


@main.command()
@config_options
def serve(config: Config) -> None:
    """Start the server (run `imhub migrate` first)."""
    import uvloop

    from imhub.app import serve as run

    uvloop.run(run(config))


@main.command()
@config_options
def migrate(config: Config) -> None:
    """Create or upgrade the database tables."""
    from imhub.storage.migrate import upgrade

    upgrade(config.db_url)
    click.echo(f"database at the newest migration: {config.db_url}")


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

    click.echo(report(config, *asyncio.run(demo_users(config))))


@main.command()
@click.option(
    "--server",
    default="tcp://127.0.0.1:9000",
    show_default=True,
    help="tcp://HOST:PORT, or ws://HOST:PORT/ws.",
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
    server: str, token: str | None, user_id: int | None, data_dir: str, token_secret: str
) -> None:
    """An interactive terminal chat."""
    from imhub.chat import main as run_chat
    from imhub.service.auth import TokenAuthority

    if token is None:
        if user_id is None:
            raise click.UsageError("give --token, or --user with the local server's secret")
        config = with_secrets(Config(data_dir=Path(data_dir), token_secret=token_secret))
        token = TokenAuthority(config.token_secret).mint(user_id)
    run_chat(server, token)
