"""One typed configuration, read from a TOML file, ``IMHUB_*`` variables and flags.

Precedence: flags > variables > file > defaults. Every value, whatever its source, is checked
against its field's type and range here, so a typo in a file or a variable stops the process
with a message that names it instead of surfacing later as a strange behaviour.

With no token secret or API key configured, both are generated on first start and kept in
``<data dir>/secrets.json``, so ``imhub token`` run beside a server mints tokens it accepts.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import os
import secrets
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin, get_type_hints
from urllib.parse import parse_qs, urlsplit

import msgspec

SECRETS_FILE = "secrets.json"
CONFIG_VAR = "IMHUB_CONFIG"  # the variable naming the TOML file (flag: --config)

Port = Annotated[int, msgspec.Meta(ge=0, le=65535)]
Positive = Annotated[int, msgspec.Meta(ge=1)]
Seconds = Annotated[float, msgspec.Meta(gt=0)]
NonNegative = Annotated[float, msgspec.Meta(ge=0)]
# At most 8 MiB: a message must be stored alike on every database, and MySQL/MariaDB refuse a
# statement over their max_allowed_packet (16 MiB by default), which a body near it, with its
# row and escapes, would pass.
MAX_FRAME_LIMIT = 8 * 1024 * 1024
# Bytes the server adds to a message's JSON when it writes it: its ids, seq, sendTime, a
# group event's names, the frame's header.
FRAME_OVERHEAD = 4096
FrameSize = Annotated[int, msgspec.Meta(ge=1, le=MAX_FRAME_LIMIT)]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]
LogFormat = Literal["text", "json"]
# When a write is acknowledged: after its commit is on disk (fsync), or once the commit has
# reached the operating system (os: survives the process, not the machine). docs/security.md.
Durability = Literal["fsync", "os"]


@dataclass(frozen=True)
class Config:
    host: str = "127.0.0.1"
    port: Port = 9000
    data_dir: Path = Path("data")
    database_url: str = ""  # empty: SQLite in data_dir
    token_secret: str = ""  # empty: generated and kept in data_dir
    api_key: str = ""  # empty: generated and kept in data_dir
    max_frame: FrameSize = 64 * 1024
    login_timeout: Seconds = 5.0
    idle_timeout: Seconds = 90.0
    max_outbound: Positive = 1024 * 1024  # bytes kept for one connection before it is dropped
    batch_max: Positive = 512  # messages committed in one transaction at most
    durability: Durability = "fsync"  # "os": answered before the commit is on disk
    recall_window: NonNegative = 120.0  # seconds during which a sender may recall a message
    max_inflight: Positive = 1000  # unanswered sends per connection before it is read no further
    log_level: LogLevel = "INFO"
    log_format: LogFormat = "text"  # "json": one JSON object per line
    access_log: bool = False  # a line per HTTP request
    shutdown_grace: NonNegative = 10.0  # seconds a SIGTERM may take before connections are cut
    cluster: str = ""  # redis://host:port/db: this process is a node of a cluster
    workers: Positive = 1  # processes sharing the port (more than 1 needs cluster)
    # Limits (docs/security.md, "Limits"); a rate of 0 is no limit. Per process.
    max_connections: Positive = 100_000  # open connections in all
    max_connections_per_address: Positive = 256  # open connections from one address
    max_connections_per_user: Positive = 32  # logged-in connections of one user
    connect_rate: NonNegative = 20.0  # new connections per second from one address
    connect_burst: Positive = 200
    msg_rate: NonNegative = 1000.0  # messages per second on one connection
    msg_burst: Positive = 10_000
    user_msg_rate: NonNegative = 2000.0  # messages per second of one user, all connections
    user_msg_burst: Positive = 10_000
    address_msg_rate: NonNegative = 2000.0  # messages per second from one address, all users
    address_msg_burst: Positive = 10_000
    api_rate: NonNegative = 500.0  # HTTP API requests per second per API key
    api_burst: Positive = 5000
    http_rate: NonNegative = 50.0  # HTTP requests per second per address without the API key
    http_burst: Positive = 500
    max_group: Positive = 20_000  # members of one group
    limit_exempt: str = "127.0.0.1 ::1"  # addresses the per-address limits do not apply to
    tls_cert: str = ""  # PEM certificate chain: TLS on the same port (with tls_key)
    tls_key: str = ""  # PEM private key of tls_cert
    tls_only: bool = False  # refuse plain connections (needs tls_cert and tls_key)

    @property
    def outbound_limit(self) -> int:
        """Bytes one connection may hold (unread output, messages held in a sync):
        ``max_outbound``, but never less than two of the largest frames the server writes (a
        message of ``max_frame`` bytes, its server fields and frame header). A backlog or a
        page waits until half the limit is free before it writes, so one message of any size
        the server accepts always fits, and never makes its reader a slow consumer."""
        return max(self.max_outbound, 2 * (self.max_frame + FRAME_OVERHEAD))

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite+aiosqlite:///{self.data_dir / 'imhub.db'}"


FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(Config))
SECRET_FIELDS = frozenset({"token_secret", "api_key"})
# The variable each option reads: IMHUB_ and the option's name in capitals.
ENV_VARS: dict[str, str] = {name: "IMHUB_" + name.upper() for name in FIELDS}
_TYPES: dict[str, Any] = get_type_hints(Config, include_extras=True)


class ConfigError(ValueError):
    """A configuration that cannot be used; the message names the source and the key."""


@dataclass(frozen=True)
class Loaded:
    """The effective configuration and where each value came from (for ``config show``)."""

    config: Config
    sources: dict[str, str]


def load(
    flags: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    file: Path | None = None,
) -> Loaded:
    """Merge defaults < ``file`` < ``env`` (``IMHUB_*``; unknown ones are ignored, other tools
    share the prefix) < ``flags`` (``None`` values were not given). Raises ``ConfigError``."""
    values: dict[str, Any] = {}
    sources = dict.fromkeys(FIELDS, "default")
    if file is not None:
        for key, value in read_file(file).items():
            values[key] = check(key, value, f"{file}: {key}", strict=True)
            sources[key] = f"file {file}"
    for key, var in ENV_VARS.items():
        if env is not None and var in env:
            values[key] = check(key, env[var], f"{var}={env[var]!r}", strict=False)
            sources[key] = f"env {var}"
    for key, value in (flags or {}).items():
        if value is not None:
            if key not in ENV_VARS:
                raise ConfigError(f"unknown option {key!r}")
            values[key] = check(key, value, f"--{key.replace('_', '-')}", strict=False)
            sources[key] = "flag"
    config = Config(**values)
    problem = cluster_problem(config.cluster) if config.cluster else None
    if problem is not None:
        raise ConfigError(f"cluster {masked_url(config.cluster)!r}: {problem}")
    if bool(config.tls_cert) != bool(config.tls_key):
        raise ConfigError("tls_cert and tls_key go together: give both or neither")
    if config.tls_only and not config.tls_cert:
        raise ConfigError("tls_only needs tls_cert and tls_key")
    return Loaded(config, sources)


def read_file(path: Path) -> dict[str, Any]:
    """A TOML file of top-level ``key = value`` lines, one per option (no tables)."""
    try:
        with path.open("rb") as f:
            data = tomllib.load(f)
    except OSError as exc:
        raise ConfigError(f"cannot read the configuration file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not valid TOML: not UTF-8 text") from None
    for key in data:
        if key not in ENV_VARS:
            near = difflib.get_close_matches(key, FIELDS, n=1)
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            raise ConfigError(f"{path}: unknown key {key!r}{hint}")
    return data


def check(key: str, value: Any, where: str, strict: bool) -> Any:
    """``value`` as field ``key`` holds it; ``strict`` (a typed file) refuses text for numbers
    and booleans, which variables and flags give as text."""
    kind = _TYPES[key]
    if key == "log_level" and isinstance(value, str):
        value = value.upper()
    try:
        out = msgspec.convert(value, str if kind is Path else kind, strict=strict)
    except msgspec.ValidationError as exc:
        text = str(exc)
        if get_origin(kind) is Literal:
            text = "expected one of " + ", ".join(map(repr, get_args(kind)))
        raise ConfigError(f"{where}: {text[0].lower()}{text[1:]}") from None
    if isinstance(out, float) and not math.isfinite(out):  # TOML has no way to show it again
        raise ConfigError(f"{where}: expected a finite number")
    return Path(out) if kind is Path else out


def shown(loaded: Loaded) -> str:
    """The effective configuration as TOML, secrets masked, each line with its source."""
    lines = []
    cfg = loaded.config
    for key in FIELDS:
        value = getattr(cfg, key)
        note = loaded.sources[key]
        if key in SECRET_FIELDS:
            if value:
                value = "********"
            else:
                note += f", generated and kept in {cfg.data_dir / SECRETS_FILE}"
        elif key in ("database_url", "cluster"):
            value = masked_url(value)
            if not value and key == "database_url":
                note += f", SQLite: {cfg.db_url}"
        text = json.dumps(str(value) if isinstance(value, Path) else value)
        lines.append(f"{key} = {text}  # {note}")
    return "\n".join(lines)


def cluster_problem(url: str) -> str | None:
    """What is wrong with a ``--cluster`` URL (``redis://[user:password@]host[:port][/db]``,
    ``rediss://`` for TLS, ``unix:///path/to/socket[?db=N]``), or None."""
    if url != url.strip():
        return "spaces around the URL"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        return f"not a URL ({exc})"
    if parts.scheme not in ("redis", "rediss", "unix"):
        return "expected redis://host:port/db, rediss://... (TLS) or unix:///path"
    if parts.scheme == "unix":
        if not parts.path:
            return "a unix:// URL needs the socket's path"
        db = parse_qs(parts.query).get("db", ["0"])[-1]
    else:
        if not parts.hostname:
            return "no host"
        if port == 0:
            return "port 0"
        db = parts.path.strip("/") or "0"
    if not db.isdigit() or int(db) >= 2**31:
        return f"{db!r} is not a database number (0, 1, 2, ...)"
    return None


def masked_url(url: str) -> str:
    """``scheme://user:password@host`` → ``scheme://user:***@host``."""
    scheme, sep, rest = url.partition("://")
    creds, at, host = rest.rpartition("@")
    if not sep or not at or ":" not in creds:
        return url
    return f"{scheme}://{creds.split(':', 1)[0]}:***@{host}"


def with_secrets(config: Config) -> Config:
    """Fill an empty token secret or API key from the data folder, creating them on first use.
    The folder is made when anything lives in it (those, or the default SQLite file), however
    the secrets were given."""
    if config.data_dir.exists() and not config.data_dir.is_dir():
        raise ConfigError(f"data_dir {config.data_dir}: not a folder")
    if not config.database_url:
        try:
            config.data_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"data_dir {config.data_dir}: {exc.strerror}") from None
    if config.token_secret and config.api_key:
        return config
    path = config.data_dir / SECRETS_FILE
    stored: dict[str, str] = {}
    if path.exists():
        stored = json.loads(path.read_text())
    changed = False
    for key in ("token_secret", "api_key"):
        if not stored.get(key):
            stored[key] = secrets.token_urlsafe(32)
            changed = True
    if changed:
        try:
            config.data_dir.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                json.dump(stored, f)
            os.replace(tmp, path)
        except OSError as exc:
            raise ConfigError(f"data_dir {config.data_dir}: {exc.strerror}") from None
    return replace(
        config,
        token_secret=config.token_secret or stored["token_secret"],
        api_key=config.api_key or stored["api_key"],
    )
