"""
The server side of a client connection: handshake, dispatch, replies,
pushes, errors, timeouts and goodbye.

L{ClientProtocol} parses and dispatches; it keeps no game state.  A message
of type C{T} is handled by the method C{message_T} (dots in C{T} become
underscores), so a game team adds a message by subclassing::

    class MyProtocol(ClientProtocol):
        def message_emote(self, message):
            name = self.field(message, "name", str)
            self.factory.world.emote(self, name)   # domain object, no bytes
            return {"done": True}                  # the reply's fields

and setting C{protocol = MyProtocol} on a factory subclass.  A handler returns
the reply's fields (a dict, or a Deferred of one), or C{None} for no reply;
it raises L{WireError} for an error frame.  Handlers may be coroutines
(C{async def}).
"""

from __future__ import annotations

from inspect import iscoroutine

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure

import mmo
from mmo.frontend.backlog import IWatchedTransport, SendBacklog
from mmo.frontend.deadlines import EPSILON
from mmo.frontend.sending import CLOSED, HANDSHAKE, OPEN, FrameSending
from mmo.metrics.kinds import LabelCache
from mmo.metrics.registry import MESSAGES_RECEIVED, MESSAGES_SENT, REQUEST_DURATION
from mmo.tls import HandshakeLogging, peer_address
from mmo.unavailable import client_error
from mmo.wire import codes
from mmo.wire.codec import SUPPORTED_VERSIONS
from mmo.wire.codes import WireError
from mmo.wire.protocol import FramedProtocol

#: Seconds a closing connection has to finish closing before it is aborted.
CLOSE_GRACE = 5.0

#: The counters of this process's client messages, a child per type the
#: code handles or sends (a type no handler takes counts as C{other}).
RECEIVED = LabelCache(MESSAGES_RECEIVED)
SENT = LabelCache(MESSAGES_SENT)
LATENCY = LabelCache(REQUEST_DURATION)


def _settle(result):
    """A coroutine (a handler's result, or what its Deferred fired with), as a Deferred."""
    return defer.ensureDeferred(result) if iscoroutine(result) else result


class ClientProtocol(HandshakeLogging, FrameSending, FramedProtocol):
    """
    One client connection: its life, what it receives and dispatches; how
    it sends is L{FrameSending}'s.

    @ivar factory: The L{mmo.frontend.factory.ClientFactory} that built it.
    @ivar state: L{HANDSHAKE}, then L{OPEN}, then L{CLOSED}.
    @ivar version: The negotiated protocol version, once open.
    @ivar seq: The sequence number of the last push sent.
    @ivar backlog: The L{SendBacklog} that bounds what the client leaves
        unread, when this protocol is the one on the TLS transport (over
        WebSocket the WebSocket connection keeps it: C{None} here).
    @ivar lastReceived: The clock when data last came from the client: the
        idle timeout runs from it (on the factory's
        L{mmo.frontend.deadlines.Deadlines}, see L{deadlineReached}).
    """

    log = Logger()
    state = HANDSHAKE
    version: int | None = None
    seq = 0
    _handshakeTimer = None
    _abortTimer = None
    backlog = None
    lastReceived = 0.0

    def __init__(self):
        # Every attribute made here, in one order: CPython then shares one
        # table of names between connections, where one that set them in
        # another order gave every connection a dict of its own (832 bytes).
        self.factory = None
        self.connected = 0
        self.transport = None
        self.MAX_LENGTH = self.MAX_LENGTH
        self.lastReceived = 0.0
        self._handshakeTimer = None
        self._abortTimer = None
        self.backlog = None
        self.tlsHandshakeDone = False
        self._unprocessed = b""
        self._compatibilityOffset = 0
        self.state = HANDSHAKE
        self.version = None
        self.closing = False
        self.seq = 0
        self._gathered = None

    @property
    def peer(self) -> str:
        """
        The client's address as C{host:port}, for logs: read from the
        transport when asked, not kept by every idle connection.
        """
        return peer_address(self.transport)

    # -- connection life ---------------------------------------------------

    def connectionMade(self) -> None:
        factory = self.factory
        self.MAX_LENGTH = factory.wire.max_frame_size
        self.lastReceived = factory.reactor.seconds()
        factory.deadlines.due(self, self.lastReceived + factory.wire.idle_timeout)
        self._handshakeTimer = factory.reactor.callLater(
            factory.wire.handshake_timeout, self._handshakeTimedOut
        )
        if not IWatchedTransport.providedBy(self.transport):
            self.backlog = SendBacklog(factory.config.listeners.max_unsent, self.unreadOverflow)
            self.backlog.watch(self.transport)
        factory.connectionOpened(self)

    def connectionLost(self, reason: Failure) -> None:
        super().connectionLost(reason)
        self.state = CLOSED
        self.closing = True
        self.factory.deadlines.forget(self)
        for timer in (self._handshakeTimer, self._abortTimer):
            if timer is not None and timer.active():
                timer.cancel()
        self.log.debug("{peer} closed: {why}", peer=self.peer, why=reason.getErrorMessage())
        self.factory.connectionClosed(self)

    def dataReceived(self, data: bytes) -> None:
        self.lastReceived = self.factory.reactor.seconds()
        if not self.gatherFrames():
            FramedProtocol.dataReceived(self, data)
            return
        try:
            FramedProtocol.dataReceived(self, data)
        finally:
            # The replies made as it was read leave now, together.
            self.sendGathered()

    def deadlineReached(self, now: float) -> float | None:
        """
        A deadline may be due at C{now} (the factory's C{deadlines} say):
        close the connection if idle for C{[wire] idle_timeout}; when to look
        again (C{None}: never).  Subclasses add their own (the heartbeat).
        """
        if self.state == CLOSED or self.closing:
            return None
        idle = self.lastReceived + self.factory.wire.idle_timeout
        if now + EPSILON >= idle:
            self.timeoutConnection()
            return None
        return idle

    def timeoutConnection(self) -> None:
        self.fail(
            WireError(
                codes.IDLE_TIMEOUT,
                f"nothing received for {self.factory.wire.idle_timeout:g} seconds",
                fatal=True,
            )
        )

    def _handshakeTimedOut(self) -> None:
        self._handshakeTimer = None
        if self.state == HANDSHAKE:
            self.fail(
                WireError(
                    codes.HANDSHAKE_TIMEOUT,
                    f"no handshake within {self.factory.wire.handshake_timeout:g} seconds",
                    fatal=True,
                )
            )

    # -- receiving ----------------------------------------------------------

    def messageReceived(self, message: dict) -> None:
        kind = message["t"]
        request_id = message.get("id")
        if request_id is not None and (
            isinstance(request_id, bool) or not isinstance(request_id, int) or request_id < 0
        ):
            RECEIVED.get(kind).inc()
            self.wireError(
                WireError(codes.BAD_REQUEST, "'id' must be a non-negative integer"), None
            )
            return
        if self.state == HANDSHAKE and kind != "hello":
            RECEIVED.get(kind).inc()
            self.wireError(
                WireError(
                    codes.HANDSHAKE_REQUIRED,
                    f"{kind!r} before the handshake; send 'hello' first",
                    fatal=True,
                ),
                request_id,
            )
            return
        refusal = self.checkMessage(kind)
        if refusal is not None:
            RECEIVED.get(kind).inc()
            self.wireError(refusal, request_id)
            return
        handler = self.handlerFor(kind)
        if handler is None:
            RECEIVED.other.inc()
            self.wireError(
                WireError(codes.UNKNOWN_TYPE, f"unknown message type {kind!r}"), request_id
            )
            return
        RECEIVED.child(kind).inc()
        # Timed until the reply or the error is sent.
        timing = (LATENCY.child(kind), self.factory.reactor.seconds())
        try:
            result = handler(message)
        except BaseException:
            # As maybeDeferred would: whatever it raised is the client's error.
            self._failed(Failure(), request_id, kind, timing)
            return
        if type(result) is dict or result is None:
            # Answered at once (a ping, every routed input): replied now,
            # without a Deferred to carry the reply.
            self._replied(result, request_id, timing)
            return
        if isinstance(result, defer.Deferred):
            result.addCallback(_settle)
        elif iscoroutine(result):
            result = defer.ensureDeferred(result)
        elif isinstance(result, Failure):
            self._failed(result, request_id, kind, timing)
            return
        else:
            self._replied(result, request_id, timing)
            return
        result.addCallbacks(
            self._replied, self._failed, (request_id, timing), None, (request_id, kind, timing)
        )

    def checkMessage(self, kind: str) -> WireError | None:
        """
        A refusal of message type C{kind} in the connection's current state,
        or C{None}: a hook for subclasses (the gateway refuses everything but
        a few types before a client has presented its ticket).
        """
        return None

    def handlerFor(self, kind: str):
        """
        The callable that handles a message of type C{kind}, or C{None} for
        C{unknown_type}: the method C{message_KIND} (dots become
        underscores).  The gateway overrides it to route what it does not
        handle itself to game services.
        """
        return getattr(self, "message_" + kind.replace(".", "_"), None)

    def _replied(self, fields, request_id, timing=None) -> None:
        if timing is not None:
            latency, started = timing
            latency.observe(self.factory.reactor.seconds() - started)
        if fields is None or request_id is None or self.state == CLOSED:
            return
        try:
            self.sendMessage({**fields, "t": "reply", "id": request_id})
        except Exception:
            self.log.failure("{peer}: cannot send the reply to {id}", peer=self.peer, id=request_id)
            self.wireError(WireError(codes.INTERNAL, "the reply could not be sent"), request_id)

    def _failed(self, failure: Failure, request_id, kind: str, timing=None) -> None:
        if timing is not None:
            latency, started = timing
            latency.observe(self.factory.reactor.seconds() - started)
        if failure.check(WireError):
            self.wireError(failure.value, request_id)
            return
        unavailable = client_error(
            failure, self.log, "{peer}: handling {kind!r}", peer=self.peer, kind=kind
        )
        if unavailable is not None:
            self.wireError(unavailable, request_id)
            return
        self.log.failure("{peer}: handling {kind!r} failed", failure, peer=self.peer, kind=kind)
        self.wireError(
            WireError(codes.INTERNAL, f"the server failed to handle {kind!r}"), request_id
        )

    def sendMessage(self, message: dict) -> None:
        super().sendMessage(message)
        SENT.child(message["t"]).inc()

    def _close(self) -> None:
        self.factory.deadlines.forget(self)
        if self._handshakeTimer is not None and self._handshakeTimer.active():
            self._handshakeTimer.cancel()
        self._handshakeTimer = None
        if self.backlog is not None:
            self.backlog.unwatch()
        # What the read being handled made (a goodbye) goes before the close.
        self.flushGathered()
        self.transport.loseConnection()
        # Under TLS a clean close waits for the peer's close_notify; a peer
        # that never sends it must not hold the connection open forever.
        if self._abortTimer is None:
            self._abortTimer = self.factory.reactor.callLater(
                CLOSE_GRACE, self.transport.abortConnection
            )

    # -- helpers for handlers --------------------------------------------

    @staticmethod
    def field(
        message: dict, name: str, kind: type | tuple[type, ...], default=None, required: bool = True
    ):
        """
        The value of field C{name} of C{message}, checked to be of C{kind};
        raises a C{bad_request} L{WireError} otherwise.
        """
        if name not in message:
            if required:
                raise WireError(codes.BAD_REQUEST, f"field {name!r} is required")
            return default
        value = message[name]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        # msgpack booleans are Python bools, which are also ints: keep them apart.
        if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
            raise WireError(codes.BAD_REQUEST, f"field {name!r} has the wrong type")
        return value

    # -- the messages every server answers --------------------------------

    def message_hello(self, message: dict) -> dict:
        """The version handshake: pick the highest version both speak."""
        if self.state != HANDSHAKE:
            raise WireError(codes.BAD_REQUEST, "the handshake is already done")
        if message.get("id") is None:
            raise WireError(codes.BAD_REQUEST, "'hello' needs an 'id' for its reply", fatal=True)
        offered = self.field(message, "versions", list)
        common = [
            v
            for v in offered
            if isinstance(v, int) and not isinstance(v, bool) and v in SUPPORTED_VERSIONS
        ]
        if not common:
            raise WireError(
                codes.UNSUPPORTED_VERSION,
                f"offered {offered!r}; this server speaks {list(SUPPORTED_VERSIONS)!r}",
                fatal=True,
            )
        self.version = max(common)
        self.state = OPEN
        if self._handshakeTimer is not None and self._handshakeTimer.active():
            self._handshakeTimer.cancel()
        self._handshakeTimer = None
        client = message.get("client")
        # Debug, as the close is: a connection's coming and going is not
        # news on a busy server (what a login or an admission does is).
        self.log.debug(
            "{peer} connected: protocol {version}, client {client}",
            peer=self.peer,
            version=self.version,
            client=client if isinstance(client, str) else "unnamed",
        )
        wire = self.factory.wire
        interval, timeout = self.heartbeat_settings()
        return {
            "version": self.version,
            "server": f"mmo/{mmo.__version__}",
            "max_frame_size": wire.max_frame_size,
            "idle_timeout": wire.idle_timeout,
            "heartbeat_interval": interval,
            "heartbeat_timeout": timeout,
        }

    def heartbeat_settings(self) -> tuple[float | None, float | None]:
        """
        The server heartbeat's interval and timeout on this connection, in
        seconds, which the hello reply tells the client; C{(None, None)}
        where sessions have no heartbeat (a login server's).
        """
        return None, None

    def message_ping(self, message: dict) -> dict:
        """Liveness and round-trip time: answers with the server's clock."""
        return {"time": self.factory.reactor.seconds()}

    def message_bye(self, message: dict) -> None:
        """The client is leaving: close without an answer."""
        self.log.debug("{peer} said goodbye", peer=self.peer)
        self.closing = True
        self._close()


def valid_id(request_id) -> bool:
    """Whether C{request_id} is an id a reply can carry: a non-negative integer."""
    return isinstance(request_id, int) and not isinstance(request_id, bool) and request_id >= 0
