"""TLS on the one port: the server's context, and the handshake on a connection whose first
byte said "TLS" (a handshake record), after which the listener sniffs again inside.

The bytes the listener read to decide are fed to the TLS layer by hand: ``loop.start_tls``
cannot take them (it would wait for a ClientHello that was already read), so the connection
gets the loop's own TLS protocol directly, the one ``start_tls`` uses (uvloop's, or asyncio's
on another loop). Its handshake timeout bounds the handshake; a failed or timed-out handshake
closes the connection with a debug line at most, never a traceback."""

from __future__ import annotations

import asyncio
import asyncio.sslproto
import ssl
from collections.abc import Callable
from typing import Any

import uvloop
import uvloop.loop

from imhub.config import Config, ConfigError

# A fatal TLS alert record (handshake_failure), the answer to a ClientHello on a server without
# TLS: the client reports a failed handshake instead of garbage or a bare end of stream.
NO_TLS_ALERT = bytes((0x15, 0x03, 0x01, 0x00, 0x02, 0x02, 0x28))


def server_context(config: Config) -> ssl.SSLContext | None:
    """The context of ``tls_cert`` and ``tls_key``, or None without them. TLS 1.2 at least,
    the ssl module's server defaults (its ciphers, no compression), no renegotiation.
    Raises ``ConfigError`` naming the file at fault."""
    if not config.tls_cert and not config.tls_key:
        return None
    for key in ("tls_cert", "tls_key"):
        path = getattr(config, key)
        if not path:
            raise ConfigError(f"{key}: tls_cert and tls_key go together (give both or neither)")
        try:
            with open(path, "rb") as f:
                f.read(1)
        except OSError as exc:
            raise ConfigError(f"{key} {path}: cannot read it: {exc.strerror}") from None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    # A TLS 1.2 client may ask for renegotiations, each a handshake's CPU: refused.
    context.options |= ssl.OP_NO_RENEGOTIATION
    try:
        context.load_cert_chain(config.tls_cert, config.tls_key)
    except ssl.SSLError as exc:
        reason = exc.reason or str(exc)
        if reason == "KEY_VALUES_MISMATCH":
            text = "the key does not belong to the certificate"
        else:
            text = f"not a PEM certificate and its unencrypted private key ({reason})"
        raise ConfigError(f"tls_cert {config.tls_cert}, tls_key {config.tls_key}: {text}") from None
    return context


def start_tls(
    transport: asyncio.Transport,
    first: bytes,
    app_protocol: asyncio.BaseProtocol,
    context: ssl.SSLContext,
    timeout: float,
    failed: Callable[[], None],
) -> None:
    """Make ``transport`` a server-side TLS connection whose plaintext goes to
    ``app_protocol`` (its ``connection_made`` comes after the handshake); ``first`` is what
    was read from it already. ``failed`` runs when the connection ends before its handshake
    completes: ``app_protocol`` then never hears of it (no ``connection_lost``)."""
    loop = asyncio.get_running_loop()
    handshake: asyncio.Future[None] = loop.create_future()

    def done(fut: asyncio.Future[None]) -> None:
        if fut.cancelled() or fut.exception() is not None:
            failed()

    handshake.add_done_callback(done)
    factory: Any = asyncio.sslproto.SSLProtocol
    if isinstance(loop, uvloop.Loop):
        factory = uvloop.loop.SSLProtocol  # type: ignore[attr-defined]
    # The handshake, and the exchange of close_notify at the end, within the login timeout.
    tls = factory(
        loop,
        app_protocol,
        context,
        handshake,
        server_side=True,
        ssl_handshake_timeout=timeout,
        ssl_shutdown_timeout=timeout,
    )
    transport.set_protocol(tls)
    tls.connection_made(transport)
    view = memoryview(first)
    while view and not transport.is_closing():
        buffer = tls.get_buffer(len(view))
        n = min(len(buffer), len(view))
        buffer[:n] = view[:n]
        tls.buffer_updated(n)
        view = view[n:]
