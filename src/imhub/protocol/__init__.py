"""The sans-I/O protocol core: message model, framing, codecs and first-byte sniffing.

Nothing in this package touches sockets, asyncio or storage; every function takes bytes or
values and returns bytes or values, so it is tested without a network.
"""
