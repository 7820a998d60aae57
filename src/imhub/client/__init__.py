"""The imhub client library: ``ImClient`` (or the process-wide ``shared()`` one) and the events
it hands to the application. See docs/client.md."""

from imhub.client.client import ClientClosed, ClientError, ImClient, shared
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

__all__ = [
    "ClientClosed",
    "ClientError",
    "Conversations",
    "Event",
    "GroupChanged",
    "ImClient",
    "Message",
    "Notice",
    "Read",
    "Recalled",
    "SendFailed",
    "Sent",
    "State",
    "StateChanged",
    "shared",
]
