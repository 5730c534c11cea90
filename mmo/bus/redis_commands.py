"""
The command connection of L{mmo.bus.redis.RedisBus}: L{RedisCommands}, the
mixin whose C{_call} every other part of the bus runs its commands with,
and its keys.

Everything the bus stores or publishes is raw msgpack
(L{mmo.bus.memory.pack}).  Both connections are made to keep bulk replies
as bytes (no charset, no number conversion), so binary values come back
intact.
"""

from __future__ import annotations

import txredisapi
from twisted.internet import defer

from mmo.bus import BusError


def milliseconds(seconds: float) -> int:
    """Seconds as whole milliseconds, at least 1 (Redis refuses 0)."""
    return max(1, int(round(seconds * 1000)))


#: Redis's own clock decides expiry, so clocks of the processes may differ:
#: the start of a script that needs the time, in C{now} (milliseconds).
NOW = """
if redis.replicate_commands then pcall(redis.replicate_commands) end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""


class RedisCommands:
    """
    The keys and the commands of L{mmo.bus.redis.RedisBus}, on its command
    connection (C{_conn}), C{prefix}, C{timeout}, C{reactor} and C{where}.
    """

    def _key(self, *parts: str) -> str:
        return ":".join((self.prefix, "bus") + parts)

    def _redis_channel(self, channel: str) -> str:
        return self._key("ch", channel)

    def _call(self, what: str, method: str, *args, **kwargs) -> defer.Deferred:
        """
        The txredisapi command C{method}; its failures become L{BusError}s
        that say C{what} was asked, a late answer too.
        """
        if self._conn is None:
            return defer.fail(BusError(f"{what}: the bus is not started"))
        d = defer.maybeDeferred(getattr(self._conn, method), *args, **kwargs)
        d.addTimeout(self.timeout, self.reactor)

        def failed(f):
            if f.check(defer.TimeoutError):
                raise BusError(
                    f"{what}: Redis at {self.where} did not answer within {self.timeout:g}s"
                )
            if f.check(txredisapi.RedisError):
                raise BusError(f"{what}: Redis at {self.where}: {f.getErrorMessage()}")
            return f

        return d.addErrback(failed)
