"""One typed configuration, read once from flags and ``IMHUB_*`` variables and shared by all.

With no token secret or API key configured, both are generated on first start and kept in
``<data dir>/secrets.json``, so ``imhub token`` run beside a server mints tokens it accepts.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass, replace
from pathlib import Path

SECRETS_FILE = "secrets.json"


@dataclass(frozen=True)
class Config:
    host: str = "127.0.0.1"
    port: int = 9000
    data_dir: Path = Path("data")
    database_url: str = ""  # empty: SQLite in data_dir
    token_secret: str = ""  # empty: generated and kept in data_dir
    api_key: str = ""  # empty: generated and kept in data_dir
    max_frame: int = 64 * 1024
    login_timeout: float = 5.0
    idle_timeout: float = 90.0
    max_outbound: int = 1024 * 1024  # bytes kept for one connection before it is dropped
    batch_max: int = 512  # messages committed in one transaction at most
    recall_window: float = 120.0  # seconds during which a sender may recall a message
    max_inflight: int = 1000  # unanswered sends per connection before it is read no further
    log_level: str = "INFO"

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite+aiosqlite:///{self.data_dir / 'imhub.db'}"


# The variable each option reads, with its parser; flags of the same name override them.
ENV_VARS: dict[str, str] = {
    "host": "IMHUB_HOST",
    "port": "IMHUB_PORT",
    "data_dir": "IMHUB_DATA_DIR",
    "database_url": "IMHUB_DATABASE_URL",
    "token_secret": "IMHUB_TOKEN_SECRET",
    "api_key": "IMHUB_API_KEY",
    "max_frame": "IMHUB_MAX_FRAME",
    "login_timeout": "IMHUB_LOGIN_TIMEOUT",
    "idle_timeout": "IMHUB_IDLE_TIMEOUT",
    "max_outbound": "IMHUB_MAX_OUTBOUND",
    "batch_max": "IMHUB_BATCH_MAX",
    "recall_window": "IMHUB_RECALL_WINDOW",
    "max_inflight": "IMHUB_MAX_INFLIGHT",
    "log_level": "IMHUB_LOG_LEVEL",
}


def with_secrets(config: Config) -> Config:
    """Fill an empty token secret or API key from the data folder, creating them on first use."""
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
        config.data_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(stored, f)
        os.replace(tmp, path)
    return replace(
        config,
        token_secret=config.token_secret or stored["token_secret"],
        api_key=config.api_key or stored["api_key"],
    )
