"""The cluster bus: how the nodes of one server tell each other what was committed.

Services depend on the ``Bus`` protocol (``bus.py``); ``LocalBus`` is the default (one process,
nothing to tell), ``redisbus.RedisBus`` the Redis implementation, the only code that imports
redis. The database stays the source of truth: the bus carries news, never the only copy.
"""
