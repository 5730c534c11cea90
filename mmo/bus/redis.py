"""
The Redis bus: L{IBus} across the processes (and machines) of a deployment.

Two connections, as Synapse's C{synapse/replication/tcp/redis.py} does:

  - one for commands (publish, directory, keys), made by
    L{mmo.redis.connect_redis} without a pool, so that the commands of a
    process reach Redis in the order they were issued (two publications on
    one channel arrive in order);
  - one for subscriptions: a txredisapi C{SubscriberProtocol} kept up by a
    L{ClientService} on a L{mmo.redis.RedisEndpoint}, which subscribes every
    channel again after a reconnection and sends a C{PING} every
    C{ping_interval} seconds, dropping (and so re-making) the link when the
    answer is late.

Where Redis is, its password and TLS trust come from L{mmo.redis}, as the
store's do.  L{RedisBus} is made of one mixin per concern:
L{mmo.bus.redis_commands} (the command connection's calls and the keys),
L{mmo.bus.redis_subscriber} (the subscriber connection, publish and
subscribe), L{mmo.bus.redis_directory}, L{mmo.bus.redis_keys} (counts,
claims, values) and L{mmo.bus.redis_leases}; this module connects and
disconnects them.

Key layout, encodings and failure behaviour: C{docs/bus.md}.
"""

from __future__ import annotations

from twisted.internet import defer
from twisted.logger import Logger
from zope.interface import implementer

from mmo.bus import BusError, IBus
from mmo.bus.redis_commands import RedisCommands
from mmo.bus.redis_directory import RedisDirectory
from mmo.bus.redis_keys import RedisKeys
from mmo.bus.redis_leases import RedisLeases
from mmo.bus.redis_subscriber import RedisPubSub
from mmo.redis import (
    RedisConnectError,
    RedisEndpoint,
    connect_redis,
    key_prefix,
    read_password,
    redis_address,
)

__all__ = ["BusError", "RedisBus"]


@implementer(IBus)
class RedisBus(RedisCommands, RedisPubSub, RedisDirectory, RedisKeys, RedisLeases):
    """
    L{IBus} on the Redis server of the config's C{[redis]} section.

    @ivar prefix: Every key and channel begins with C{PREFIX:bus:}; C{PREFIX}
        is C{[redis] prefix} or the deployment name.
    @ivar timeout: Seconds to connect (C{[redis] connect_timeout}); also the
        longest a command or a ping may wait for its answer.
    @ivar ping_interval: Seconds between pings on the subscriber connection
        (default: C{[bus] heartbeat_interval}).
    """

    log = Logger()

    def __init__(self, config, reactor=None, ping_interval: float | None = None):
        if reactor is None:
            from twisted.internet import reactor
        self.config = config
        self.reactor = reactor
        self.timeout = config.redis.connect_timeout
        self.ping_interval = (
            ping_interval if ping_interval is not None else config.bus.heartbeat_interval
        )
        self.where = redis_address(config)
        self.prefix: str | None = None
        self._conn = None
        self._endpoint = None
        self._stopping = False
        self._init_subscriptions()

    def __repr__(self) -> str:
        return f"<RedisBus {self.where}>"

    # -- lifecycle -----------------------------------------------------------------------

    @defer.inlineCallbacks
    def start(self):
        """
        Connect both connections and subscribe.

        @raise BusError: Redis could not be reached, or refused us, within
            C{[redis] connect_timeout} seconds; the message names where and why.
        """
        self.prefix = key_prefix(self.config)
        self._stopping = False
        try:
            password = read_password(self.config)
            endpoint = self._endpoint = RedisEndpoint(self.config, self.reactor)
        except RedisConnectError as e:
            raise BusError(str(e)) from None
        username = (self.config.redis.username or None) if password else None
        ready = self._connect_subscriber(endpoint, password, username)
        command = defer.maybeDeferred(
            connect_redis,
            self.config,
            reactor=self.reactor,
            pool=False,
            charset=None,
            convert_numbers=False,
        )

        def connected(connection):
            if self._stopping:
                # Arrived after start() gave up: nobody is going to use it.
                return connection.disconnect()
            self._conn = connection

        def timed_out(f):
            f.trap(defer.TimeoutError, defer.CancelledError)
            reason = endpoint.last_failure or "no answer"
            raise BusError(
                f"cannot connect to Redis at {self.where}: {reason} "
                f"(gave up after {self.timeout:g} s)"
            )

        command.addCallback(connected)
        ready.addTimeout(self.timeout, self.reactor)
        ready.addErrback(timed_out)
        try:
            yield defer.gatherResults([command, ready], consumeErrors=True)
        except defer.FirstError as e:
            reason = e.subFailure.value
            yield self.stop()
            # connect_redis gives up by itself within the same timeout.
            yield defer.DeferredList([command], consumeErrors=True)
            if isinstance(reason, BusError):
                raise reason
            raise BusError(str(reason) or type(reason).__name__)
        self._start_pinging()
        self.log.info("bus connected to Redis at {where}", where=self.where)

    @defer.inlineCallbacks
    def stop(self):
        """Close both connections; subscriptions end, waiting callers get L{BusError}."""
        self._stopping = True
        pending = self._stop_subscriber()
        if self._endpoint is not None:
            pending.append(self._endpoint.disconnect())
        self._endpoint = None
        if self._conn is not None:
            pending.append(defer.maybeDeferred(self._conn.disconnect))
            self._conn = None
        results = yield defer.DeferredList(pending, consumeErrors=True)
        for ok, result in results:
            if not ok:
                self.log.failure("while closing the bus's Redis connections", result)
        self._forget_link()
