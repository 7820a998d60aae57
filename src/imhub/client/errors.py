"""What the client's public calls raise: ``ClientError`` and its subclasses, nothing else
(plus ``TimeoutError`` after ``request_timeout`` and ``ValueError`` for a malformed call)."""

from __future__ import annotations


class ClientError(Exception):
    """The server refused a request: ``code`` and ``reason`` as in docs/protocol.md."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason


class ClientClosed(ClientError):
    """The client was closed (or gave up) before the request could complete."""

    def __init__(self, reason: str) -> None:
        super().__init__(0, reason)


class StateFileError(ClientError):
    """The state file cannot be used: it is not an imhub state file, or another client holds
    it (one file per client: two would hand over and resend each other's messages)."""

    def __init__(self, reason: str) -> None:
        super().__init__(0, reason)


class ConnectionLost(ClientError):
    """The connection dropped before the answer came: the request may or may not have been
    applied. The client reconnects by itself; ask again once it is online."""

    def __init__(self, reason: str) -> None:
        super().__init__(0, reason)
