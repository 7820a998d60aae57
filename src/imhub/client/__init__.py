"""The imhub client library: ``ImClient`` (or the process-wide ``shared()`` one) and the events
it hands to the application. See docs/client.md."""

from imhub.client.client import ImClient, shared
from imhub.client.errors import ClientClosed, ClientError, ConnectionLost, StateFileError
from imhub.client.events import (
    Conversations,
    Event,
    GroupChanged,
    Message,
    Notice,
    Read,
    Recalled,
    SendFailed,
    Sent,
    State,
    StateChanged,
)
from imhub.protocol.messages import MsgType

__all__ = [
    "ClientClosed",
    "ClientError",
    "ConnectionLost",
    "Conversations",
    "Event",
    "GroupChanged",
    "ImClient",
    "Message",
    "MsgType",
    "Notice",
    "Read",
    "Recalled",
    "SendFailed",
    "Sent",
    "State",
    "StateChanged",
    "StateFileError",
    "shared",
]
