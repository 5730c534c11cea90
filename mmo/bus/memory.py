"""
The in-process bus: L{IBus} for a deployment of one process (the standalone
server), with nothing to install or run beside it.

Everything lives in dicts of this object; expiry follows the injected
reactor's clock (C{reactor.seconds()}), checked when an entry is read and in
an occasional sweep, so no timer is left running.  Values go through msgpack
on the way in and out, exactly as with Redis: a caller never shares a mutable
object with another caller, and a value msgpack cannot encode fails here as
it would in a cluster (L{TypeError} from L{pack}).
"""

from __future__ import annotations

import inspect
from collections import deque
from typing import Any

import msgpack
from twisted.internet import defer
from twisted.logger import Logger
from zope.interface import implementer

from mmo.bus import IBus
from mmo.metrics.registry import BUS_DELIVERED, BUS_PUBLISHED
from mmo.wire.codec import encode

#: Seconds between sweeps of expired entries (they are also dropped on read).
SWEEP_INTERVAL = 60.0


def pack(value: Any) -> bytes:
    """
    C{value} as msgpack: the one encoding of every message, directory entry
    and value on the bus, in both backends.

    @raise TypeError: C{value} holds something msgpack cannot encode.
    """
    # The wire's packer: the same msgpack, without a packer made per call.
    return encode(value)


def unpack(data: bytes) -> Any:
    """
    The value of L{pack}'s C{data}: a fresh copy every time.  Tuples come back
    as lists; maps may have non-string keys.
    """
    return msgpack.unpackb(data, raw=False, strict_map_key=False)


def _default_reactor(reactor):
    if reactor is None:
        from twisted.internet import reactor
    return reactor


class MemorySubscription:
    """A subscription to a channel of a L{MemoryBus}; L{cancel} ends it."""

    def __init__(self, bus: MemoryBus, channel: str, callback):
        self.bus = bus
        self.channel = channel
        self.callback = callback
        self.active = True

    def cancel(self) -> defer.Deferred:
        """Stop receiving messages; idempotent.  Deferred[None]."""
        if self.active:
            self.active = False
            self.bus.unsubscribe(self)
        return defer.succeed(None)


@implementer(IBus)
class MemoryBus:
    """
    L{IBus} inside one process.

    Messages are delivered after L{publish} returns, from the reactor, in
    publication order (like the Redis backend, so code that works on one
    works on the other).  A subscriber that raises is logged; the others
    still get the message.

    @ivar reactor: Provides C{seconds} and C{callLater}: the clock of every
        expiry and the scheduler of deliveries.
    """

    log = Logger()

    def __init__(self, reactor=None):
        self.reactor = _default_reactor(reactor)
        self._channels: dict[str, list[MemorySubscription]] = {}
        #: Messages published and not yet delivered: (subscribers, data).
        self._queue: deque[tuple[list[MemorySubscription], bytes]] = deque()
        self._delivery = None
        #: name -> (packed info, expiry time).
        self._directory: dict[str, tuple[bytes, float]] = {}
        #: key -> (count, expiry time).
        self._counts: dict[str, tuple[int, float]] = {}
        #: key -> expiry time.
        self._claims: dict[str, float] = {}
        #: key -> (packed value, expiry time or None).
        self._values: dict[str, tuple[bytes, float | None]] = {}
        #: lease key -> (holder, token, expiry time).
        self._leases: dict[str, tuple[str, int, float]] = {}
        #: lease key -> its last token (never forgotten).
        self._lease_tokens: dict[str, int] = {}
        self._next_sweep = self.reactor.seconds() + SWEEP_INTERVAL

    def __repr__(self) -> str:
        return "<MemoryBus>"

    # -- lifecycle ---------------------------------------------------------------

    def start(self) -> defer.Deferred:
        return defer.succeed(None)

    def stop(self) -> defer.Deferred:
        """Drop undelivered messages and cancel the delivery call."""
        if self._delivery is not None and self._delivery.active():
            self._delivery.cancel()
        self._delivery = None
        self._queue.clear()
        return defer.succeed(None)

    # -- time ----------------------------------------------------------------------

    def _now(self) -> float:
        now = self.reactor.seconds()
        if now >= self._next_sweep:
            self._next_sweep = now + SWEEP_INTERVAL
            self._sweep(now)
        return now

    def _sweep(self, now: float) -> None:
        for name in [n for n, (_, t) in self._directory.items() if t <= now]:
            del self._directory[name]
        for key in [k for k, (_, t) in self._counts.items() if t <= now]:
            del self._counts[key]
        for key in [k for k, t in self._claims.items() if t <= now]:
            del self._claims[key]
        for key in [k for k, (_, t) in self._values.items() if t is not None and t <= now]:
            del self._values[key]
        for key in [k for k, (_, _, t) in self._leases.items() if t <= now]:
            del self._leases[key]

    # -- publish / subscribe ---------------------------------------------------------

    def publish(self, channel: str, message) -> defer.Deferred:
        try:
            data = pack(message)
        except Exception:
            return defer.fail()
        BUS_PUBLISHED.inc()
        subscribers = list(self._channels.get(channel, ()))
        if subscribers:
            self._queue.append((subscribers, data))
            if self._delivery is None:
                self._delivery = self.reactor.callLater(0, self._deliver)
        return defer.succeed(None)

    def _deliver(self) -> None:
        self._delivery = None
        queue = self._queue
        # Only what is queued now: messages published by subscribers while
        # this runs wait for the next call, after the ones before them.
        left = len(queue)
        while left and queue:  # (emptied: stopped by a subscriber)
            subscribers, data = queue.popleft()
            left -= 1
            if len(subscribers) != 1:
                for subscription in subscribers:
                    if subscription.active:
                        deliver(self.log, subscription, data)
                continue
            # The next messages of this channel's one subscriber, with
            # nothing for anyone else between them: one run (deliver_run).
            only = subscribers[0]
            run = [data]
            while left and queue and len(queue[0][0]) == 1 and queue[0][0][0] is only:
                run.append(queue.popleft()[1])
                left -= 1
            if only.active:
                deliver_run(self.log, only, run)

    def subscribe(self, channel: str, callback) -> defer.Deferred:
        subscription = MemorySubscription(self, channel, callback)
        self._channels.setdefault(channel, []).append(subscription)
        return defer.succeed(subscription)

    # -- directory -------------------------------------------------------------------

    def unsubscribe(self, subscription: MemorySubscription) -> None:
        """Deliver nothing more to C{subscription} (its L{MemorySubscription.cancel})."""
        subscribers = self._channels.get(subscription.channel, [])
        if subscription in subscribers:
            subscribers.remove(subscription)
        if not subscribers:
            self._channels.pop(subscription.channel, None)

    def announce(self, name: str, info: dict, ttl: float) -> defer.Deferred:
        try:
            data = pack(info)
        except Exception:
            return defer.fail()
        self._directory[name] = (data, self._now() + ttl)
        return defer.succeed(None)

    def withdraw(self, name: str) -> defer.Deferred:
        self._directory.pop(name, None)
        return defer.succeed(None)

    def services(self, kind: str | None = None) -> defer.Deferred:
        now = self._now()
        result = {}
        for name, (data, expires) in list(self._directory.items()):
            if expires <= now:
                del self._directory[name]
                continue
            info = unpack(data)
            if kind is None or (isinstance(info, dict) and info.get("kind") == kind):
                result[name] = info
        return defer.succeed(result)

    # -- expiring keys -----------------------------------------------------------------

    def hit(self, key: str, window: float) -> defer.Deferred:
        now = self._now()
        count, expires = self._counts.get(key, (0, now))
        if expires <= now:
            count, expires = 0, now + window
        self._counts[key] = (count + 1, expires)
        return defer.succeed(count + 1)

    def count(self, key: str) -> defer.Deferred:
        now = self._now()
        count, expires = self._counts.get(key, (0, now))
        return defer.succeed(count if expires > now else 0)

    def clear(self, key: str) -> defer.Deferred:
        self._counts.pop(key, None)
        self._claims.pop(key, None)
        self._values.pop(key, None)
        return defer.succeed(None)

    def claim(self, key: str, ttl: float) -> defer.Deferred:
        now = self._now()
        if self._claims.get(key, now) > now:
            return defer.succeed(False)
        self._claims[key] = now + ttl
        return defer.succeed(True)

    def put(self, key: str, value, ttl: float | None = None) -> defer.Deferred:
        try:
            data = pack(value)
        except Exception:
            return defer.fail()
        self._values[key] = (data, None if ttl is None else self._now() + ttl)
        return defer.succeed(None)

    def put_many(self, items, ttl: float | None = None) -> defer.Deferred:
        try:
            packed = [(key, pack(value)) for key, value in items]
        except Exception:
            return defer.fail()
        expires = None if ttl is None else self._now() + ttl
        for key, data in packed:
            self._values[key] = (data, expires)
        return defer.succeed(None)

    def get(self, key: str) -> defer.Deferred:
        now = self._now()
        entry = self._values.get(key)
        if entry is None:
            return defer.succeed(None)
        data, expires = entry
        if expires is not None and expires <= now:
            del self._values[key]
            return defer.succeed(None)
        return defer.succeed(unpack(data))

    # -- leases --------------------------------------------------------------------------

    def _live_lease(self, key: str, now: float) -> tuple[str, int, float] | None:
        held = self._leases.get(key)
        if held is not None and held[2] <= now:
            del self._leases[key]
            return None
        return held

    def lease(self, key: str, holder: str, ttl: float) -> defer.Deferred:
        """
        L{IBus.lease}.  A new token is the previous one plus one, or the
        reactor's time in milliseconds when that is higher: this bus lives
        as long as its process, and a process started again (later) then
        still numbers its holdings above those its store has seen.
        """
        now = self._now()
        held = self._live_lease(key, now)
        if held is not None and held[0] != holder:
            return defer.succeed(None)
        if held is not None:
            token = held[1]
        else:
            token = max(self._lease_tokens.get(key, 0) + 1, int(now * 1000))
            self._lease_tokens[key] = token
        self._leases[key] = (holder, token, now + ttl)
        return defer.succeed(token)

    def release_lease(self, key: str, holder: str) -> defer.Deferred:
        held = self._live_lease(key, self._now())
        if held is None or held[0] != holder:
            return defer.succeed(False)
        del self._leases[key]
        return defer.succeed(True)

    def lease_holder(self, key: str) -> defer.Deferred:
        held = self._live_lease(key, self._now())
        return defer.succeed(None if held is None else (held[0], held[1]))


def deliver(log: Logger, subscription, data: bytes) -> None:
    """
    Give one subscriber its own copy of a message; log (never raise) what
    its callback raises, or returns as a failing Deferred.
    """
    BUS_DELIVERED.inc()
    try:
        message = unpack(data)
        result = subscription.callback(message)
    except Exception:
        _failed(log, subscription)
        return
    _watch(log, subscription, result)


def deliver_run(log: Logger, subscription, datas: list[bytes]) -> None:
    """
    Give one subscriber a run of messages of its channel: consecutive in
    publication order, with nothing delivered to anyone between them.  A
    callback with a C{run} method (L{mmo.game.messages.Dispatcher}) gets
    them in one call, C{run(messages)}, and can act on them together (a
    gateway writes a connection's pushes of the run in one write, instead
    of each push to every connection in turn); any other, one by one
    (L{deliver}), as does a run of one message.  Failures are logged as
    L{deliver} logs them: the callback's C{run} is expected to handle each
    message apart, so that one bad message costs only itself.  A run is
    given whole: a subscription that one of its messages cancels still
    gets the others.
    """
    run = getattr(subscription.callback, "run", None)
    if run is None or len(datas) == 1:
        for data in datas:
            deliver(log, subscription, data)
        return
    BUS_DELIVERED.inc(len(datas))
    try:
        result = run([unpack(data) for data in datas])
    except Exception:
        _failed(log, subscription)
        return
    _watch(log, subscription, result)


def _failed(log: Logger, subscription, failure=None) -> None:
    log.failure(
        "subscriber {callback!r} of channel {channel!r} failed",
        failure,
        callback=subscription.callback,
        channel=subscription.channel,
    )


def _watch(log: Logger, subscription, result) -> None:
    """Log C{result}'s failure, if it is a Deferred (or a coroutine) that fails."""
    if inspect.iscoroutine(result):
        result = defer.ensureDeferred(result)
    if isinstance(result, defer.Deferred):
        result.addErrback(lambda f: _failed(log, subscription, f))
