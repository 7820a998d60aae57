"""The gateway: sockets, the one-port listener, TCP frames, WebSocket, timeouts, back-pressure.

After decoding, both transports hand messages to the same ``Dispatcher``.
"""
