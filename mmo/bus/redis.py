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
store's do.

Key layout, encodings and failure behaviour: C{docs/bus.md}.
"""

from __future__ import annotations

import random

import txredisapi
from twisted.application.internet import ClientService, backoffPolicy
from twisted.internet import defer, protocol, task
from twisted.logger import Logger
from zope.interface import implementer

from mmo.bus import PUT_MANY_CHUNK, BusError, IBus
from mmo.bus.memory import deliver, pack, unpack
from mmo.redis import (
    RedisConnectError,
    RedisEndpoint,
    connect_redis,
    key_prefix,
    read_password,
    redis_address,
)

__all__ = ["BusError", "RedisBus"]


# -- encoding ------------------------------------------------------------------------
#
# Everything the bus stores or publishes is raw msgpack (L{pack}).  Both
# connections are made to keep bulk replies as bytes (no charset, no number
# conversion), so binary values come back intact.


def _ms(seconds: float) -> int:
    """Seconds as whole milliseconds, at least 1 (Redis refuses 0)."""
    return max(1, int(round(seconds * 1000)))


# -- Lua scripts -----------------------------------------------------------------------

# Redis's own clock decides expiry, so clocks of the processes may differ.
_NOW = """
if redis.replicate_commands then pcall(redis.replicate_commands) end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

#: KEYS: entries (hash), expiries (zset); ARGV: name, value, ttl ms.
ANNOUNCE = (
    _NOW
    + """
local ttl = tonumber(ARGV[3])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], now + ttl, ARGV[1])
-- A directory nobody announces to any more goes away by itself.
for _, key in ipairs(KEYS) do
  if redis.call('PTTL', key) < ttl then redis.call('PEXPIRE', key, ttl) end
end
return 1
"""
)

#: KEYS: entries, expiries; ARGV: name.
WITHDRAW = """
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return 1
"""

#: KEYS: entries, expiries.  Drops expired entries, returns the live values.
SERVICES = (
    _NOW
    + """
local dead = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now)
for _, name in ipairs(dead) do
  redis.call('ZREM', KEYS[2], name)
  redis.call('HDEL', KEYS[1], name)
end
local live = redis.call('ZRANGEBYSCORE', KEYS[2], '(' .. now, '+inf')
local values = {}
for _, name in ipairs(live) do
  local value = redis.call('HGET', KEYS[1], name)
  if value then values[#values + 1] = value end
end
return values
"""
)

#: KEYS: counter; ARGV: window ms.  INCR, and start the window on the first hit.
HIT = """
local n = redis.call('INCR', KEYS[1])
if redis.call('PTTL', KEYS[1]) < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return n
"""

# KEYS: the keys; ARGV[1]: the expiry in ms (0 for none), then one value per key.
PUT_MANY = """
local px = tonumber(ARGV[1])
for i, key in ipairs(KEYS) do
  if px > 0 then
    redis.call('SET', key, ARGV[i + 1], 'PX', px)
  else
    redis.call('SET', key, ARGV[i + 1])
  end
end
return #KEYS
"""

#: KEYS: the lease (a string "TOKEN HOLDER", expiring), its last token
#: (never expiring); ARGV: holder, ttl ms.  The token if ARGV[1] holds the
#: lease now (renewed, or taken with the next token), else nil.  A new token
#: is the last one plus one, or Redis's clock in milliseconds when that is
#: higher: a Redis that lost its data (it keeps none on disk) still numbers
#: new holdings above every token the store has seen.
LEASE = """
local held = redis.call('GET', KEYS[1])
if held then
  local space = string.find(held, ' ', 1, true)
  if string.sub(held, space + 1) ~= ARGV[1] then return false end
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return tonumber(string.sub(held, 1, space - 1))
end
if redis.replicate_commands then redis.replicate_commands() end
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local token = math.max((tonumber(redis.call('GET', KEYS[2])) or 0) + 1, now)
redis.call('SET', KEYS[2], token)
redis.call('SET', KEYS[1], token .. ' ' .. ARGV[1], 'PX', ARGV[2])
return token
"""

#: KEYS: the lease; ARGV: holder.  1 if it held the lease (now ended), else 0.
RELEASE_LEASE = """
local held = redis.call('GET', KEYS[1])
if held and string.sub(held, string.find(held, ' ', 1, true) + 1) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
"""


# -- the subscriber connection -----------------------------------------------------------


class _Subscriber(txredisapi.SubscriberProtocol):
    """
    The subscriber side: hands messages and its own loss to the bus.

    @ivar reads: How many times bytes came in (the ping tells a busy link
        from a dead one by it).
    """

    reads = 0

    def dataReceived(self, data, *args):
        self.reads += 1
        return super().dataReceived(data, *args)

    def messageReceived(self, pattern, channel, message):
        self.factory.bus.message_received(channel, message)

    def connectionLost(self, why):
        # The bus forgets this link first, so that the replies failed below
        # are not mistaken for trouble on a live link.
        self.factory.bus.subscriber_lost(self, why)
        super().connectionLost(why)


class _SubscriberFactory(protocol.Factory):
    """
    Builds L{_Subscriber}s that keep bytes as bytes (no charset, no numbers)
    and authenticate like the command connection.  Also the factory
    txredisapi's C{connectionMade} reports to (C{stopTrying},
    C{connectionError}, C{isLazy}).
    """

    # Not lazy: txredisapi would log a refused AUTH a second time.
    isLazy = False
    noisy = False

    def __init__(self, bus, endpoint: RedisEndpoint, password, username):
        self.bus = bus
        self.endpoint = endpoint
        self.password = password
        self.username = username

    def buildProtocol(self, addr):
        p = _Subscriber(
            charset=None,
            password=self.password,
            username=self.username,
            convertNumbers=False,
        )
        p.factory = self
        p.callLater = self.bus.reactor.callLater
        p.whenConnected().addCallback(self.bus.subscriber_authenticated)
        return p

    def stopTrying(self):
        # txredisapi gives up after a refused AUTH; we go on retrying with
        # backoff, so that fixing the password on the server is enough.
        pass

    def connectionError(self, why):
        self.endpoint.record(why)
        self.bus.log.error("Redis subscriber connection: {why}", why=why)


class RedisSubscription:
    """A subscription to a channel of a L{RedisBus}; L{cancel} ends it."""

    def __init__(self, bus: RedisBus, channel: str, callback):
        self.bus = bus
        self.channel = channel
        self.callback = callback
        self.active = True

    def cancel(self) -> defer.Deferred:
        """Stop receiving messages; idempotent.  Deferred[None]."""
        if not self.active:
            return defer.succeed(None)
        self.active = False
        return self.bus.unsubscribe(self)


@implementer(IBus)
class RedisBus:
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

    #: Reconnection delays of the subscriber connection.
    retry_policy = staticmethod(
        backoffPolicy(
            initialDelay=0.1, maxDelay=5.0, factor=2.0, jitter=lambda: random.random() / 10
        )
    )

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
        self._service: ClientService | None = None
        self._endpoint = None
        self._ping_loop: task.LoopingCall | None = None
        self._stopping = False
        #: The subscriber connection once authenticated, until lost.
        self._link: _Subscriber | None = None
        #: Whether every channel has been subscribed on the current link.
        self._link_ready = False
        self._ever_up = False
        self._calls: set = set()
        self._channels: dict[str, list[RedisSubscription]] = {}
        #: Channels subscribed on the current link, and ones being subscribed.
        self._active: set[str] = set()
        self._inflight: set[str] = set()
        #: subscribe() callers waiting for their channel to become active.
        self._waiters: dict[str, list[defer.Deferred]] = {}
        #: Deferreds fired the next time the link is up with every channel.
        self._ready_waiters: list[defer.Deferred] = []

    def __repr__(self) -> str:
        return f"<RedisBus {self.where}>"

    # -- keys ------------------------------------------------------------------------

    def _key(self, *parts: str) -> str:
        return ":".join((self.prefix, "bus") + parts)

    def _redis_channel(self, channel: str) -> str:
        return self._key("ch", channel)

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
        self._service = ClientService(
            endpoint,
            _SubscriberFactory(self, endpoint, password, username),
            retryPolicy=self.retry_policy,
            clock=self.reactor,
        )
        ready = defer.Deferred()
        self._ready_waiters.append(ready)
        self._service.startService()
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
        self._ping_loop = task.LoopingCall(self._ping)
        self._ping_loop.clock = self.reactor
        self._ping_loop.start(self.ping_interval, now=False)
        self.log.info("bus connected to Redis at {where}", where=self.where)

    @defer.inlineCallbacks
    def stop(self):
        """Close both connections; subscriptions end, waiting callers get L{BusError}."""
        self._stopping = True
        if self._ping_loop is not None and self._ping_loop.running:
            self._ping_loop.stop()
        self._ping_loop = None
        for call in self._calls:
            if call.active():
                call.cancel()
        self._calls.clear()
        stopped = BusError("the bus was stopped")
        waiters = [d for ds in self._waiters.values() for d in ds] + self._ready_waiters
        self._waiters = {}
        self._ready_waiters = []
        for d in waiters:
            if not d.called:
                d.errback(stopped)
        pending = []
        if self._service is not None:
            pending.append(self._service.stopService())
            self._service = None
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
        self._link = None
        self._active.clear()
        self._inflight.clear()

    # -- the subscriber link ---------------------------------------------------------------

    def subscriber_authenticated(self, proto: _Subscriber) -> None:
        # Called from within connectionMade, before ClientService knows of
        # the connection: act on the next reactor turn (as txredisapi does).
        call = self.reactor.callLater(0, self._link_up, proto)
        self._calls.add(call)

    def _link_up(self, proto: _Subscriber) -> None:
        self._calls = {c for c in self._calls if c.active()}
        if self._stopping or not proto.connected:
            return
        self._link = proto
        self._link_ready = False
        self._active.clear()
        self._inflight.clear()
        for channel in list(self._channels):
            self._subscribe_on(proto, channel)
        self._check_ready()

    def _check_ready(self) -> None:
        """Fire the L{subscriber_ready} waiters once every channel is subscribed."""
        if self._link is None or self._inflight:
            return
        if not self._link_ready:
            self._link_ready = True
            if self._ever_up:
                self.log.info(
                    "bus subscriber link to {where} is back; {count} channels resubscribed",
                    where=self.where,
                    count=len(self._active),
                )
            self._ever_up = True
        waiters, self._ready_waiters = self._ready_waiters, []
        for d in waiters:
            d.callback(None)

    def _subscribe_on(self, proto: _Subscriber, channel: str) -> defer.Deferred:
        """SUBSCRIBE one channel (one reply per command keeps replies in step)."""
        self._inflight.add(channel)
        d = defer.maybeDeferred(proto.subscribe, self._redis_channel(channel))

        def ok(_):
            if proto is not self._link:
                return False
            self._inflight.discard(channel)
            if channel in self._channels:
                self._active.add(channel)
            else:
                # Every subscriber cancelled while this was on its way.
                self._send_unsubscribe(proto, channel)
            for waiter in self._waiters.pop(channel, []):
                waiter.callback(None)
            self._check_ready()
            return True

        def failed(f):
            if proto is self._link:
                self._inflight.discard(channel)
                self.log.warn(
                    "could not subscribe to {channel} on {where}: {reason}; reconnecting",
                    channel=channel,
                    where=self.where,
                    reason=f.getErrorMessage(),
                )
                self._drop(proto)
            return False

        return d.addCallbacks(ok, failed)

    def _send_unsubscribe(self, proto: _Subscriber, channel: str) -> defer.Deferred:
        d = defer.maybeDeferred(proto.unsubscribe, self._redis_channel(channel))
        d.addTimeout(self.timeout, self.reactor)

        def failed(f):
            # A link that does not answer is dropped; the next one will not
            # subscribe the channel again.
            if proto is self._link:
                self._drop(proto)

        return d.addCallbacks(lambda _: None, failed)

    def _drop(self, proto: _Subscriber) -> None:
        if proto.transport is not None and proto.connected:
            proto.transport.abortConnection()

    def subscriber_lost(self, proto: _Subscriber, why) -> None:
        if proto is not self._link:
            return
        self._link = None
        self._active.clear()
        self._inflight.clear()
        if not self._stopping:
            self.log.warn(
                "bus subscriber link to {where} lost ({reason}); reconnecting",
                where=self.where,
                reason=why.getErrorMessage(),
            )

    def _ping(self) -> None:
        proto = self._link
        if proto is None:
            return
        reads = proto.reads
        d = defer.maybeDeferred(proto.ping)
        d.addTimeout(self.timeout, self.reactor)

        def failed(f):
            if proto.reads != reads:
                # Messages kept coming: the link is alive, its PONG queued
                # behind them.  Dropping it would lose what is under way.
                self.log.warn(
                    "bus subscriber link to {where} is {timeout}s behind (busy); keeping it",
                    where=self.where,
                    timeout=self.timeout,
                )
                return
            if proto is self._link:
                self.log.warn(
                    "no answer to PING from {where} within {timeout}s; reconnecting",
                    where=self.where,
                    timeout=self.timeout,
                )
                self._drop(proto)

        d.addErrback(failed)

    def message_received(self, channel, data) -> None:
        if isinstance(channel, bytes):
            channel = channel.decode("utf-8", "replace")
        head = self._redis_channel("")
        if not channel.startswith(head):
            return
        for subscription in list(self._channels.get(channel[len(head) :], ())):
            if subscription.active:
                deliver(self.log, subscription, data)

    @property
    def subscriber_connected(self) -> bool:
        """Whether the subscriber link is up with every channel subscribed."""
        return self._link is not None and self._link_ready and not self._inflight

    def subscriber_ready(self) -> defer.Deferred:
        """
        Deferred[None] that fires when the subscriber link is up and every
        channel subscribed on it: now, or after the reconnection under way.
        """
        if self.subscriber_connected:
            return defer.succeed(None)
        d = defer.Deferred()
        self._ready_waiters.append(d)
        return d

    # -- commands --------------------------------------------------------------------------

    def _call(self, what: str, method: str, *args, **kwargs) -> defer.Deferred:
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

    # -- publish / subscribe ------------------------------------------------------------------

    def publish(self, channel: str, message) -> defer.Deferred:
        try:
            data = pack(message)
        except Exception:
            return defer.fail()
        d = self._call(f"publish on {channel!r}", "publish", self._redis_channel(channel), data)
        return d.addCallback(lambda _: None)

    def subscribe(self, channel: str, callback) -> defer.Deferred:
        if self._service is None:
            return defer.fail(BusError(f"subscribe to {channel!r}: the bus is not started"))
        subscription = RedisSubscription(self, channel, callback)
        self._channels.setdefault(channel, []).append(subscription)
        if channel in self._active:
            return defer.succeed(subscription)
        waiter = defer.Deferred()
        self._waiters.setdefault(channel, []).append(waiter)
        if self._link is not None and channel not in self._inflight:
            self._subscribe_on(self._link, channel)
        # else: being subscribed, or the (re)connection will subscribe it

        def timed_out(f):
            f.trap(defer.TimeoutError)
            waiters = self._waiters.get(channel, [])
            if waiter in waiters:
                waiters.remove(waiter)
            subscription.cancel()
            raise BusError(
                f"subscribe to {channel!r}: not subscribed on Redis at {self.where} "
                f"within {self.timeout:g}s"
            )

        waiter.addTimeout(self.timeout, self.reactor)
        waiter.addErrback(timed_out)
        return waiter.addCallback(lambda _: subscription)

    def unsubscribe(self, subscription: RedisSubscription) -> defer.Deferred:
        channel = subscription.channel
        subscribers = self._channels.get(channel, [])
        if subscription in subscribers:
            subscribers.remove(subscription)
        if subscribers:
            return defer.succeed(None)
        self._channels.pop(channel, None)
        if channel in self._active and self._link is not None:
            self._active.discard(channel)
            return self._send_unsubscribe(self._link, channel)
        return defer.succeed(None)

    # -- directory -----------------------------------------------------------------------------

    def _directory_keys(self) -> list[str]:
        return [self._key("dir"), self._key("dir", "exp")]

    def announce(self, name: str, info: dict, ttl: float) -> defer.Deferred:
        try:
            value = pack([name, info])
        except Exception:
            return defer.fail()
        d = self._call(
            f"announce {name!r}", "eval", ANNOUNCE, self._directory_keys(), [name, value, _ms(ttl)]
        )
        return d.addCallback(lambda _: None)

    def withdraw(self, name: str) -> defer.Deferred:
        d = self._call(f"withdraw {name!r}", "eval", WITHDRAW, self._directory_keys(), [name])
        return d.addCallback(lambda _: None)

    def services(self, kind: str | None = None) -> defer.Deferred:
        d = self._call("read the directory", "eval", SERVICES, self._directory_keys(), [])

        def collect(values):
            result = {}
            for raw in values or ():
                entry = unpack(raw)
                if not (isinstance(entry, list) and len(entry) == 2):
                    continue
                name, info = entry
                if kind is None or (isinstance(info, dict) and info.get("kind") == kind):
                    result[name] = info
            return result

        return d.addCallback(collect)

    # -- expiring keys ---------------------------------------------------------------------------

    def hit(self, key: str, window: float) -> defer.Deferred:
        d = self._call(f"count {key!r}", "eval", HIT, [self._key("n", key)], [_ms(window)])
        return d.addCallback(int)

    def count(self, key: str) -> defer.Deferred:
        d = self._call(f"read count {key!r}", "get", self._key("n", key))
        return d.addCallback(lambda value: 0 if value is None else int(value))

    def clear(self, key: str) -> defer.Deferred:
        keys = [self._key(kind, key) for kind in ("n", "c", "v")]
        d = self._call(f"clear {key!r}", "delete", keys)
        return d.addCallback(lambda _: None)

    def claim(self, key: str, ttl: float) -> defer.Deferred:
        d = self._call(
            f"claim {key!r}",
            "set",
            self._key("c", key),
            b"1",
            pexpire=_ms(ttl),
            only_if_not_exists=True,
        )
        return d.addCallback(lambda reply: reply is not None)

    def put(self, key: str, value, ttl: float | None = None) -> defer.Deferred:
        try:
            data = pack(value)
        except Exception:
            return defer.fail()
        pexpire = None if ttl is None else _ms(ttl)
        d = self._call(f"put {key!r}", "set", self._key("v", key), data, pexpire=pexpire)
        return d.addCallback(lambda _: None)

    def put_many(self, items, ttl: float | None = None) -> defer.Deferred:
        try:
            packed = [(self._key("v", key), pack(value)) for key, value in items]
        except Exception:
            return defer.fail()
        expiry = 0 if ttl is None else _ms(ttl)
        chunks = [packed[i : i + PUT_MANY_CHUNK] for i in range(0, len(packed), PUT_MANY_CHUNK)]
        d = defer.gatherResults(
            [
                self._call(
                    f"put {len(chunk)} keys",
                    "eval",
                    PUT_MANY,
                    [key for key, _ in chunk],
                    [expiry] + [data for _, data in chunk],
                )
                for chunk in chunks
            ],
            consumeErrors=True,
        )
        # The first failure, unwrapped, as put() fails.
        d.addErrback(lambda f: f.value.subFailure if f.check(defer.FirstError) else f)
        return d.addCallback(lambda _: None)

    def get(self, key: str) -> defer.Deferred:
        d = self._call(f"get {key!r}", "get", self._key("v", key))
        return d.addCallback(lambda raw: None if raw is None else unpack(raw))

    # -- leases --------------------------------------------------------------------------------

    def _lease_keys(self, key: str) -> list[str]:
        return [self._key("lease", key), self._key("lease-token", key)]

    def lease(self, key: str, holder: str, ttl: float) -> defer.Deferred:
        d = self._call(f"lease {key!r}", "eval", LEASE, self._lease_keys(key), [holder, _ms(ttl)])
        return d.addCallback(lambda token: None if token is None else int(token))

    def release_lease(self, key: str, holder: str) -> defer.Deferred:
        d = self._call(
            f"release lease {key!r}", "eval", RELEASE_LEASE, self._lease_keys(key)[:1], [holder]
        )
        return d.addCallback(lambda released: bool(int(released)))

    def lease_holder(self, key: str) -> defer.Deferred:
        d = self._call(f"read lease {key!r}", "get", self._key("lease", key))

        def parse(raw):
            if raw is None:
                return None
            token, _, holder = raw.decode("utf-8", "replace").partition(" ")
            return holder, int(token)

        return d.addCallback(parse)
