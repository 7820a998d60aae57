"""The imhub command: migrate, user add, token, and serve with generated secrets."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.helpers import TcpClient


def imhub(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "imhub", *args], env=env, capture_output=True, text=True, timeout=60
    )


def clean_env(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMHUB_")}
    env["IMHUB_DATA_DIR"] = str(data_dir)
    return env


async def test_token_from_the_cli_is_accepted_by_a_server_beside_it(tmp_path: Path) -> None:
    env = clean_env(tmp_path / "data")
    assert imhub("migrate", env=env).returncode == 0
    added = imhub("user", "add", "alice", "--mobile", "555", env=env)
    assert added.returncode == 0, added.stderr
    user_id = int(added.stdout)
    secrets = (tmp_path / "data" / "secrets.json").stat()
    assert secrets.st_mode & 0o077 == 0  # the generated secrets are readable by the owner only

    server = subprocess.Popen(
        [sys.executable, "-m", "imhub", "serve", "--port", "0"],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline().rsplit(":", 1)[1])
        token = imhub("token", str(user_id), env=env).stdout.strip()
        client = await TcpClient.connect(port)
        assert (await client.login(token))["userId"] == user_id
        await client.close()
    finally:
        server.terminate()
        server.wait(10)


def test_serve_refuses_a_database_that_is_not_migrated(tmp_path: Path) -> None:
    result = imhub("serve", "--port", "0", env=clean_env(tmp_path / "empty"))
    assert result.returncode != 0
    assert "imhub migrate" in result.stderr


def test_flags_and_variables_are_documented_in_help(tmp_path: Path) -> None:
    result = imhub("serve", "--help", env=clean_env(tmp_path))
    for name in ("--port", "IMHUB_PORT", "--idle-timeout", "IMHUB_DATABASE_URL", "IMHUB_API_KEY"):
        assert name in result.stdout


def test_a_busy_port_is_a_clear_error(tmp_path: Path) -> None:
    import socket

    env = clean_env(tmp_path / "data")
    assert imhub("migrate", env=env).returncode == 0
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = imhub("serve", "--port", str(port), env=env)
    assert result.returncode != 0
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_cli_refuses_what_the_http_api_refuses(tmp_path: Path) -> None:
    env = clean_env(tmp_path / "data")
    assert imhub("migrate", env=env).returncode == 0
    for args in (
        ("user", "add", "x" * 21),
        ("user", "add", ""),
        ("user", "add", "ann", "--mobile", "5" * 21),
        ("token", "0"),
        ("token", "5", "--ttl", "0"),
        ("token", "999999"),  # no such user
        ("user", "add", "a\udc80b"),  # an argument that was not UTF-8
    ):
        done = imhub(*args, env=env)
        assert done.returncode == 2 and "Invalid value" in done.stderr, (args, done.stderr)
    assert imhub("user", "add", "x" * 20, env=env).returncode == 0
