"""imhub: an instant-messaging and push server (TCP and WebSocket on one port)."""

__version__ = "0.1.0"
