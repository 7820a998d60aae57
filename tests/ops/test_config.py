"""One configuration from a TOML file, ``IMHUB_*`` variables and flags: precedence, refusals
that name the culprit, and ``imhub config show`` without secrets."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from imhub.config import Config, ConfigError, load


def toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "imhub.toml"
    path.write_text(text)
    return path


def test_flags_beat_variables_beat_the_file_beats_the_defaults(tmp_path: Path) -> None:
    file = toml(
        tmp_path, 'port = 1001\nhost = "10.0.0.1"\nidle_timeout = 30\nlog_format = "json"\n'
    )
    env = {"IMHUB_PORT": "1002", "IMHUB_HOST": "10.0.0.2", "IMHUB_OTHER": "ignored"}
    loaded = load({"port": 1003, "batch_max": None}, env, file)
    cfg = loaded.config
    assert (cfg.port, cfg.host, cfg.idle_timeout, cfg.log_format) == (
        1003,
        "10.0.0.2",
        30.0,
        "json",
    )
    assert cfg.batch_max == Config().batch_max  # a flag not given (None) changes nothing
    assert loaded.sources["port"] == "flag"
    assert loaded.sources["host"] == "env IMHUB_HOST"
    assert loaded.sources["idle_timeout"] == f"file {file}"
    assert loaded.sources["batch_max"] == "default"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("prot = 9000\n", "unknown key 'prot' (did you mean 'port'?)"),
        ('port = "9000"\n', "port: expected `int`, got `str`"),
        ("port = 70000\n", "port: expected `int` <= 65535"),
        ("access_log = 1\n", "access_log: expected `bool`, got `int`"),
        ('log_format = "xml"\n', "log_format: expected one of 'text', 'json'"),
        ("login_timeout = 0\n", "login_timeout: expected `float` > 0"),
        ("[server]\nport = 1\n", "unknown key 'server'"),
        ("port = \n", "not valid TOML"),
        ("idle_timeout = inf\n", "idle_timeout: expected a finite number"),
        # What every database stores alike (MariaDB refuses statements past 16 MiB).
        ("max_frame = 1000000000\n", "max_frame: expected `int` <= 8388608"),
    ],
)
def test_a_bad_file_is_refused_naming_the_key(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError) as exc:
        load(None, {}, toml(tmp_path, text))
    assert message in str(exc.value) and str(tmp_path) in str(exc.value)


def test_variables_are_text_parsed_and_checked() -> None:
    cfg = load(None, {"IMHUB_ACCESS_LOG": "true", "IMHUB_LOG_LEVEL": "debug"}, None).config
    assert cfg.access_log is True and cfg.log_level == "DEBUG"
    with pytest.raises(ConfigError, match=r"IMHUB_MAX_FRAME='big': expected `int`"):
        load(None, {"IMHUB_MAX_FRAME": "big"}, None)
    with pytest.raises(ConfigError, match=r"--port: expected `int` >= 0"):
        load({"port": -1}, {}, None)


def test_a_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the configuration file"):
        load(None, {}, tmp_path / "nowhere.toml")


def imhub(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "imhub", *args], env=env, capture_output=True, text=True, timeout=60
    )


def test_config_show_prints_the_effective_values_with_secrets_masked(tmp_path: Path) -> None:
    file = toml(
        tmp_path,
        'api_key = "file-key-1234"\nport = 7001\n'
        'database_url = "postgresql+asyncpg://imhub:hunter2@db/imhub"\n',
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMHUB_")}
    env |= {"IMHUB_CONFIG": str(file), "IMHUB_TOKEN_SECRET": "env-secret-5678"}
    out = imhub("config", "show", "--port", "7002", env=env)
    assert out.returncode == 0, out.stderr
    lines = dict(line.split(" = ", 1) for line in out.stdout.splitlines())
    assert lines["port"] == "7002  # flag"
    assert lines["api_key"] == f'"********"  # file {file}'
    assert lines["token_secret"] == '"********"  # env IMHUB_TOKEN_SECRET'
    assert lines["database_url"].startswith('"postgresql+asyncpg://imhub:***@db/imhub"')
    assert "file-key-1234" not in out.stdout and "env-secret-5678" not in out.stdout
    assert "hunter2" not in out.stdout


def test_serve_refuses_a_bad_configuration_before_starting(tmp_path: Path) -> None:
    file = toml(tmp_path, "idle_timout = 5\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMHUB_")}
    out = imhub("serve", "--config", str(file), "--data-dir", str(tmp_path), env=env)
    assert out.returncode == 2
    assert "unknown key 'idle_timout' (did you mean 'idle_timeout'?)" in out.stderr
    assert not (tmp_path / "secrets.json").exists()  # refused before anything was done


def test_a_file_that_is_not_utf8_is_refused(tmp_path: Path) -> None:
    """Found by an outside tester, as were the cases below: each ended in a traceback."""
    path = tmp_path / "bad.toml"
    path.write_bytes(b"\xff\xfeport = 1\n")
    with pytest.raises(ConfigError, match="not UTF-8 text"):
        load(None, {}, path)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--database-url", "::nonsense::"], "database_url: not a database URL"),
        (["--database-url", "nosuchdb://x/y"], "database_url: no database dialect 'nosuchdb'"),
        (["--database-url", "mysql+nosuchdriver://u:pw@h/db"], "database_url: no database"),
        (["--database-url", "sqlite+aiosqlite:////no/such/folder/x.db"], "does not exist"),
        (["--data-dir", "{file}"], "not a folder"),
        (["--database-url", "sqlite+aiosqlite:///{dir}"], "is a folder, not a SQLite file"),
        (["--database-url", "sqlite+aiosqlite:///{file}x"], "is not a SQLite database"),
        (["--database-url", "sqlite+pysqlite:///{dir}/x.db"], "is not an asyncio driver"),
        (["--database-url", "postgresql://u:pw@[::1/x"], "not a database URL"),
    ],
)
def test_a_database_or_folder_that_cannot_be_used_is_refused_by_name(
    tmp_path: Path, options: list[str], message: str
) -> None:
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    (tmp_path / "a-filex").write_text("not a database")
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMHUB_")}
    env["IMHUB_DATA_DIR"] = str(tmp_path / "data")
    args = [o.replace("{file}", str(a_file)).replace("{dir}", str(tmp_path)) for o in options]
    out = imhub("migrate", *args, env=env)
    assert out.returncode == 2, out.stderr
    assert message in out.stderr and "Traceback" not in out.stderr
    assert "pw" not in out.stderr  # a password is never shown


def test_durability_is_read_from_each_source_and_a_bad_level_refused(tmp_path: Path) -> None:
    assert Config().durability == "fsync"
    file = toml(tmp_path, 'durability = "os"\n')
    assert load(None, {}, file).config.durability == "os"
    assert load(None, {"IMHUB_DURABILITY": "os"}, None).config.durability == "os"
    assert load({"durability": "fsync"}, {"IMHUB_DURABILITY": "os"}, None).config.durability == (
        "fsync"
    )
    with pytest.raises(ConfigError, match=r"IMHUB_DURABILITY='disk': expected one of 'fsync'"):
        load(None, {"IMHUB_DURABILITY": "disk"}, None)


def test_serve_refuses_durability_os_on_mysql_before_connecting(tmp_path: Path) -> None:
    """MySQL/MariaDB flush at commit as the server says (server-wide): ``os`` would change
    nothing there, so it is refused with what to do instead; no database server is needed to
    be told (nothing listens at that address)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMHUB_")}
    env["IMHUB_DATA_DIR"] = str(tmp_path)
    url = "mysql+asyncmy://im:pw@127.0.0.1:1/im"
    out = imhub("serve", "--durability", "os", "--database-url", url, env=env)
    assert out.returncode == 2, out.stderr
    assert "set innodb_flush_log_at_trx_commit = 2 on the server" in out.stderr
    assert "Traceback" not in out.stderr


def test_serve_says_its_durability_as_the_database_has_it(tmp_path: Path) -> None:
    """The line at start reads the setting back from a connection of the server's own pool
    (``fsync`` on every backend: tests/storage/test_durability.py)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMHUB_")}
    env |= {"IMHUB_DATA_DIR": str(tmp_path), "IMHUB_PORT": "0", "IMHUB_DURABILITY": "os"}
    assert imhub("migrate", env=env).returncode == 0
    proc = subprocess.Popen(
        [sys.executable, "-m", "imhub", "serve"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        lines = []
        for line in proc.stdout:  # the durability line comes before the listening one
            lines.append(line)
            if line.startswith("imhub listening on"):
                break
        expected = "durability os: SQLite synchronous=NORMAL (a commit does not wait for the disk)"
        assert any(expected in line for line in lines), lines
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://x/", "expected redis://host:port/db"),
        ("not a url", "expected redis://host:port/db"),
        ("redis://127.0.0.1:notaport/0", "not a URL"),
        ("redis://u:pw@h:x/0", "not a URL"),
        ("redis://h/abc", "'abc' is not a database number"),
        ("redis://h/99999999999999999999", "is not a database number"),
        (" redis://h/0", "spaces around the URL"),
        ("redis://h/0?socket_timeout=abc", "socket_timeout"),
        ("redis://:6379/0", "no host"),
        ("unix://", "needs the socket's path"),
    ],
)
def test_a_bad_cluster_url_is_refused_by_name(tmp_path: Path, url: str, message: str) -> None:
    """Found by an outside tester: each ended in redis-py's traceback at start (or, for a
    database number that is not one, started on database 0 without a word)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMHUB_")}
    env["IMHUB_DATA_DIR"] = str(tmp_path)
    pg = "postgresql+asyncpg://im@127.0.0.1:1/im"
    for command in ("serve", "config show"):
        out = imhub(*command.split(), "--cluster", url, "--database-url", pg, env=env)
        assert out.returncode == 2, out.stderr
        assert message in out.stderr and "Traceback" not in out.stderr
        assert "pw" not in out.stderr
    for good in ("redis://h:6379/2", "rediss://u:pw@h/0", "unix:///run/redis.sock?db=1"):
        assert load({"cluster": good}, {}, None).config.cluster == good


def test_config_show_refuses_what_serve_refuses(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMHUB_")}
    env["IMHUB_DATA_DIR"] = str(tmp_path)
    mysql = "mysql+asyncmy://im:pw@127.0.0.1:1/im"
    for args, message in (
        (["--durability", "os", "--database-url", mysql], "innodb_flush_log_at_trx_commit"),
        (["--workers", "2"], "need a database that several processes share"),
    ):
        out = imhub("config", "show", *args, env=env)
        assert out.returncode == 2 and message in out.stderr, out.stderr


def test_the_data_folder_is_made_however_the_secrets_are_given(tmp_path: Path) -> None:
    """Found by an outside tester: with the token secret and API key in variables, a missing
    data folder was refused ("the SQLite file's folder does not exist"); without, made."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMHUB_")}
    env |= {"IMHUB_TOKEN_SECRET": "s" * 32, "IMHUB_API_KEY": "k" * 32}
    data = tmp_path / "new" / "data"
    out = imhub("migrate", "--data-dir", str(data), env=env)
    assert out.returncode == 0, out.stderr
    assert (data / "imhub.db").exists() and not (data / "secrets.json").exists()


def test_commands_on_a_database_not_made_yet_say_so(tmp_path: Path) -> None:
    """Found by an outside tester: `imhub token` on a new data folder printed SQLAlchemy's
    traceback ("no such table") and left an empty database file behind."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMHUB_")}
    data = tmp_path / "data"
    for args in (["token", "1"], ["user", "add", "ann"], ["demo"]):
        out = imhub(*args, "--data-dir", str(data), env=env)
        assert out.returncode == 1, out.stderr
        assert "run `imhub migrate` first" in out.stderr and "Traceback" not in out.stderr
        assert not (data / "imhub.db").exists()
    sqlite_url = f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}"
    (tmp_path / "empty.db").write_bytes(b"")  # there, but not migrated
    out = imhub("token", "1", "--database-url", sqlite_url, "--data-dir", str(data), env=env)
    assert out.returncode == 1 and "the database is not migrated" in out.stderr, out.stderr
