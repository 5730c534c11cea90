"""
Publish and subscribe on L{mmo.bus.redis.RedisBus}: the subscriber
connection (a txredisapi C{SubscriberProtocol} kept up by a
L{ClientService}, every channel subscribed again after a reconnection, a
C{PING} every C{ping_interval} seconds that drops a link whose answer is
late) and L{RedisPubSub}, the mixin of the bus that keeps it and its
subscriptions.  Messages are published on the command connection.
"""

from __future__ import annotations

import random

import txredisapi
from twisted.application.internet import ClientService, backoffPolicy
from twisted.internet import defer, protocol, task

from mmo.bus import BusError
from mmo.bus.memory import deliver, deliver_run, pack
from mmo.bus.resp import RespError, RespReader
from mmo.metrics.registry import (
    BUS_DELIVERY_LAG,
    BUS_PUBLISH_DURATION,
    BUS_PUBLISHED,
    BUS_RECONNECTS,
    BUS_SUBSCRIPTIONS_LOST,
)
from mmo.redis import RedisEndpoint


class _Subscriber(txredisapi.SubscriberProtocol):
    """
    The subscriber side: hands messages and its own loss to the bus.  Its
    replies are read by a L{RespReader} (txredisapi's commands and
    connection handling otherwise); one it cannot read drops the link.

    @ivar reads: How many times bytes came in (the ping tells a busy link
        from a dead one by it).
    """

    reads = 0
    reader: RespReader | None = None
    unreadable = False

    def dataReceived(self, data, *args):
        self.reads += 1
        if self.unreadable:
            return
        reader = self.reader
        if reader is None:
            reader = self.reader = RespReader()
        try:
            replies = reader.feed(data)
        except RespError as e:
            self.unreadable = True
            self.factory.bus.log.error(
                "bus subscriber link to {where}: unreadable reply ({why}); reconnecting",
                where=self.factory.bus.where,
                why=str(e),
            )
            self.transport.abortConnection()
            return
        received = self.factory.bus.messages_received
        # Consecutive messages of one channel, handed on as one run.
        channel, run = None, []
        for reply in replies:
            # A message's push, without the checks of txredisapi's replyReceived.
            if type(reply) is list and len(reply) == 3 and reply[0] == b"message":
                if run and reply[1] != channel:
                    received(channel, run)
                    run = []
                channel = reply[1]
                run.append(reply[2])
                continue
            if run:
                received(channel, run)
                run = []
            self.replyReceived(reply)
        if run:
            received(channel, run)

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

    def __init__(self, bus: RedisPubSub, channel: str, callback):
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


class RedisPubSub:
    """
    Publish/subscribe of L{mmo.bus.IBus} for L{mmo.bus.redis.RedisBus}: the
    subscriber connection and the subscriptions on it, on the bus's
    C{reactor}, C{timeout}, C{ping_interval}, C{where}, C{log} and
    C{_stopping}, and its commands (L{mmo.bus.redis_commands.RedisCommands}).
    """

    #: Reconnection delays of the subscriber connection.
    retry_policy = staticmethod(
        backoffPolicy(
            initialDelay=0.1, maxDelay=5.0, factor=2.0, jitter=lambda: random.random() / 10
        )
    )

    def _init_subscriptions(self) -> None:
        self._service: ClientService | None = None
        self._ping_loop: task.LoopingCall | None = None
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

    # -- life cycle ------------------------------------------------------------------

    def _connect_subscriber(self, endpoint: RedisEndpoint, password, username) -> defer.Deferred:
        """Start the subscriber connection; Deferred firing once it is up with every channel."""
        self._service = ClientService(
            endpoint,
            _SubscriberFactory(self, endpoint, password, username),
            retryPolicy=self.retry_policy,
            clock=self.reactor,
        )
        ready = defer.Deferred()
        self._ready_waiters.append(ready)
        self._service.startService()
        return ready

    def _start_pinging(self) -> None:
        self._ping_loop = task.LoopingCall(self._ping)
        self._ping_loop.clock = self.reactor
        self._ping_loop.start(self.ping_interval, now=False)

    def _stop_subscriber(self) -> list[defer.Deferred]:
        """
        Stop pinging, fail the callers waiting with L{BusError}, stop the
        subscriber connection; the Deferreds of what is still closing.
        """
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
        return pending

    def _forget_link(self) -> None:
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
                BUS_RECONNECTS.inc()
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
        lost = len(self._active)
        self._forget_link()
        if not self._stopping:
            BUS_SUBSCRIPTIONS_LOST.inc(lost)
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
        sent = self.reactor.seconds()
        d = defer.maybeDeferred(proto.ping)
        d.addTimeout(self.timeout, self.reactor)
        # The PONG comes behind every message queued for this link.
        d.addCallback(lambda _: BUS_DELIVERY_LAG.observe(self.reactor.seconds() - sent))

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
        self.messages_received(channel, [data])

    def messages_received(self, channel, datas: list) -> None:
        """
        Deliver C{datas}, consecutive messages of C{channel}: as one run
        (L{deliver_run}) to a channel's only subscriber, else each to every
        subscriber in turn.
        """
        if isinstance(channel, bytes):
            channel = channel.decode("utf-8", "replace")
        head = self._redis_channel("")
        if not channel.startswith(head):
            return
        name = channel[len(head) :]
        subscriptions = self._channels.get(name, ())
        if len(subscriptions) == 1:
            only = subscriptions[0]
            if only.active:
                deliver_run(self.log, only, datas)
            return
        for data in datas:
            for subscription in list(self._channels.get(name, ())):
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

    # -- publish / subscribe ------------------------------------------------------------------

    def publish(self, channel: str, message) -> defer.Deferred:
        try:
            data = pack(message)
        except Exception:
            return defer.fail()
        BUS_PUBLISHED.inc()
        sent = self.reactor.seconds()
        d = self._call(f"publish on {channel!r}", "publish", self._redis_channel(channel), data)
        return d.addCallback(self._published, sent)

    def _published(self, _, sent: float) -> None:
        BUS_PUBLISH_DURATION.observe(self.reactor.seconds() - sent)

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
