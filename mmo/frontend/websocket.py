"""
Secure WebSocket for browsers: the client protocol over C{wss://}.

Browsers cannot open raw TLS sockets, so a process may also listen for
secure WebSocket (C{processes.NAME.websocket}).  Over WebSocket each binary
message carries exactly one frame body, without the 4-byte length prefix of
the TCP stream; everything else in C{docs/protocol.md} is unchanged.

The WebSocket layer is an adapter, not a second implementation of the
protocol: every WebSocket connection gets an inner protocol from the same
client factory the TLS listener uses (the real gateway protocol, unchanged),
connected to a L{FrameTransport}.  An inbound binary message is handed to the
inner protocol as one length-prefixed frame; the length-prefixed frames the
inner protocol writes are cut apart again and each body sent as one binary
message.  So the handshake, login, admission, heartbeat, flood limits,
resume and goodbye work over WebSocket exactly as they do over TCP, and the
connections of both listeners are one set in the factory.

    L{WebSocketListener}   the service: TLS listener, start and stop
    L{WebSocketFactory}    autobahn server factory: options, connections
    L{WebSocketProtocol}   autobahn server protocol: one browser connection
    L{FrameTransport}      what the inner protocol sees as its transport
"""

from __future__ import annotations

from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.util import encode_truncate
from autobahn.websocket.protocol import WebSocketProtocol as _Base
from twisted.internet import defer, interfaces
from twisted.internet.protocol import connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from mmo.compat import MessageTooBigHook
from mmo.config import Config, ProcessSection
from mmo.frontend.backlog import IWatchedTransport, SendBacklog
from mmo.frontend.listener import TLSListener
from mmo.tls import HandshakeLogging, peer_address
from mmo.web import demo_site, demo_url
from mmo.web.router import UpgradeRouterFactory
from mmo.wire import codec
from mmo.wire.codes import BAD_FRAME, FRAME_TOO_LARGE, SLOW_READER

#: Seconds a closing WebSocket connection has to finish its closing
#: handshake (and TLS its close_notify) before the TCP connection is aborted.
CLOSE_GRACE = 5.0

#: The most bytes a client may send before its WebSocket opening handshake
#: is done (the HTTP upgrade request): autobahn buffers the request until it
#: is complete, so without a cap a client could fill memory with one header.
MAX_HANDSHAKE_BYTES = 16 * 1024

#: WebSocket close codes used here (RFC 6455, section 7.4.1).
CLOSE_NORMAL = _Base.CLOSE_STATUS_CODE_NORMAL  # 1000
CLOSE_UNSUPPORTED_DATA = _Base.CLOSE_STATUS_CODE_UNSUPPORTED_DATA  # 1003
CLOSE_MESSAGE_TOO_BIG = _Base.CLOSE_STATUS_CODE_MESSAGE_TOO_BIG  # 1009

_HEADER = codec.HEADER
_OPEN = _Base.STATE_OPEN
_CONNECTING = _Base.STATE_CONNECTING
_CLOSED = _Base.STATE_CLOSED


@implementer(
    interfaces.ITransport, interfaces.IConsumer, interfaces.IPushProducer, IWatchedTransport
)
class FrameTransport:
    """
    The transport an inner (stream) protocol writes to: it turns the
    length-prefixed frames the protocol writes back into message bodies and
    sends each as one binary WebSocket message.

    Frames may come several to a write or split across writes; bytes are
    buffered until a frame is complete.  Everything else (closing, peer and
    host addresses, producers) is passed to the WebSocket connection.

    What the inner protocol writes is counted by the WebSocket connection's
    L{SendBacklog} (with the WebSocket's own frames), which is the producer
    registered on the TLS transport: it provides L{IWatchedTransport}, and
    a second producer cannot be registered.

    @ivar websocket: The L{WebSocketProtocol} this transport belongs to.
    @ivar disconnecting: Set once the inner protocol asked to close; what it
        writes after that is dropped, as a closing TCP transport would.
    @ivar connected: Cleared when the connection is gone.
    """

    log = Logger()
    disconnecting = False
    connected = True

    def __init__(self, websocket):
        self.websocket = websocket
        self._buffer = bytearray()

    # -- ITransport ----------------------------------------------------------

    def write(self, data: bytes) -> None:
        if self.disconnecting or not self.connected:
            return
        buffer = self._buffer
        buffer += data
        offset, available = 0, len(buffer)
        while available - offset >= 4:
            (length,) = _HEADER.unpack_from(buffer, offset)
            end = offset + 4 + length
            if end > available:
                break
            self.websocket.sendBody(bytes(buffer[offset + 4 : end]))
            offset = end
        if offset:
            del buffer[:offset]

    def writeSequence(self, data) -> None:
        self.write(b"".join(data))

    def loseConnection(self) -> None:
        """Close the WebSocket (closing handshake, then TLS, then TCP)."""
        if self.disconnecting or not self.connected:
            return
        self.disconnecting = True
        if self._buffer:
            self.log.warn(
                "{peer}: {count} bytes of an incomplete frame dropped at close",
                peer=self.websocket.peerAddress,
                count=len(self._buffer),
            )
            self._buffer.clear()
        self.websocket.closeFromInner()

    def abortConnection(self) -> None:
        """Drop the connection now, without a closing handshake."""
        if not self.connected:
            return
        self.disconnecting = True
        self._buffer.clear()
        self.websocket.abort()

    def getPeer(self):
        """The browser's address (of the TCP connection)."""
        return self.websocket.transport.getPeer()

    def getHost(self):
        """This side's address (of the TCP connection)."""
        return self.websocket.transport.getHost()

    # -- IConsumer and IPushProducer: passed to the TLS transport ------------

    def registerProducer(self, producer, streaming) -> None:
        self.websocket.transport.registerProducer(producer, streaming)

    def unregisterProducer(self) -> None:
        self.websocket.transport.unregisterProducer()

    def pauseProducing(self) -> None:
        self.websocket.transport.pauseProducing()

    def resumeProducing(self) -> None:
        self.websocket.transport.resumeProducing()

    def stopProducing(self) -> None:
        self.websocket.transport.stopProducing()


class WebSocketProtocol(MessageTooBigHook, HandshakeLogging, WebSocketServerProtocol):
    """
    One browser connection: an autobahn WebSocket server protocol carrying
    an inner protocol from the client factory.

    The inner protocol is built when the WebSocket opening handshake is
    done, so it never sees the TLS or HTTP phase; by then TLS is up, and an
    inner protocol that listens for the TLS handshake is told so.

    Refused input is answered the way the TCP protocol answers a broken
    frame, with an error frame (C{"fatal": true}), and then the WebSocket is
    closed with a close code that says why:

      - a text message: C{bad_frame}, close code 1003 (unsupported data);
      - a message over C{[gateway] websocket_max_message}:
        C{frame_too_large}, close code 1009 (message too big), as soon as
        the frame header announces it, before the payload is read.

    Everything sent (the inner protocol's frames, pongs, close frames)
    goes through L{sendData} and is counted by the connection's
    L{SendBacklog}: a browser that leaves more than C{[listeners]
    max_unsent} bytes unread, by not reading pushes or by sending pings
    and not reading the pongs, is told goodbye (C{slow_reader}) and closed.

    @ivar inner: The inner protocol, once open.
    @ivar frames: Its L{FrameTransport}, once open.
    @ivar backlog: The connection's L{SendBacklog}.
    """

    # autobahn's own "log" (a txaio logger, filtered by txaio's level) stays.
    _log = Logger()
    inner = None
    frames = None
    _handshakeBytes = 0
    _refused = False
    _lost = False
    _abortTimer = None
    backlog = None

    @property
    def peerAddress(self) -> str:
        """The peer as C{host:port}, for logs."""
        return peer_address(self.transport)

    # -- connection life -----------------------------------------------------

    def connectionMade(self) -> None:
        super().connectionMade()
        self.backlog = SendBacklog(self.factory.max_unsent, self.unreadOverflow)
        # Through autobahn's registerProducer, since its dropConnection unregisters it.
        self.backlog.watch(self)
        self.factory.connections.add(self)

    def dataReceived(self, data: bytes) -> None:
        if self.state == _CONNECTING:
            self._handshakeBytes += len(data)
            if self._handshakeBytes > MAX_HANDSHAKE_BYTES:
                self._log.warn(
                    "{peer}: WebSocket opening handshake over {limit} bytes; dropped",
                    peer=self.peerAddress,
                    limit=MAX_HANDSHAKE_BYTES,
                )
                self.dropConnection(abort=True)
                return
        super().dataReceived(data)

    def onOpen(self) -> None:
        inner = self.factory.clientFactory.buildProtocol(self.transport.getPeer())
        if inner is None:
            self._log.info("{peer}: refused by the client factory", peer=self.peerAddress)
            self.sendClose(CLOSE_NORMAL)
            return
        self.inner = inner
        self.frames = FrameTransport(self)
        inner.makeConnection(self.frames)
        # The WebSocket handshake ran over TLS, so TLS is up: tell an inner
        # protocol that waits for it (it would otherwise log a TLS refusal).
        if interfaces.IHandshakeListener.providedBy(inner):
            inner.handshakeCompleted()

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        if self.inner is None or self._refused or self.frames.disconnecting:
            return
        if not isBinary:
            self.refuse(
                BAD_FRAME,
                "text messages are not accepted: send each body as a binary message",
                CLOSE_UNSUPPORTED_DATA,
            )
            return
        self.inner.dataReceived(_HEADER.pack(len(payload)) + payload)

    def message_too_big(self, size: int, limit: int, reason: str) -> None:
        # Called when a frame header announces more than the limits: say why
        # in an error frame (as over TCP) before autobahn closes with 1009.
        self._refused = True
        self._log.warn(
            "closing {peer}: {code}: {reason}",
            peer=self.peerAddress,
            code=FRAME_TOO_LARGE,
            reason=reason,
        )
        self.sendError(FRAME_TOO_LARGE, f"message over the limit of {limit} bytes")

    def refuse(self, code: str, message: str, close_code: int) -> None:
        """Send a fatal error frame, then close the WebSocket with C{close_code}."""
        self._refused = True
        self._log.warn(
            "closing {peer}: {code}: {message}", peer=self.peerAddress, code=code, message=message
        )
        self.sendError(code, message)
        # As autobahn fails a connection itself: read no more frames, and
        # close with a code sendClose() would refuse (1003).
        self.failedByMe = True
        if self.state == _OPEN:
            self.sendCloseFrame(code=close_code, reasonUtf8=encode_truncate(message, 123))
        elif self.state != _CLOSED:
            self.dropConnection()

    def sendError(self, code: str, message: str) -> None:
        """Send a fatal error frame that does not belong to a request."""
        self.sendBody(
            codec.encode(
                {"t": "error", "id": None, "code": code, "message": message, "fatal": True}
            )
        )

    def sendBody(self, body: bytes) -> None:
        """Send one frame body as one binary message; dropped unless open."""
        if self.state != _OPEN:
            return
        if 0 < self.maxMessagePayloadSize < len(body):
            # autobahn applies the (inbound) message limit to sendMessage as
            # well; server messages may be as large as [wire] max_frame_size,
            # so send larger ones through the frame API, which does not check.
            self.beginMessage(isBinary=True)
            self.sendMessageFrame(body)
            self.endMessage()
        else:
            self.sendMessage(body, isBinary=True)

    def sendData(self, data: bytes, sync: bool = False, chopsize: int | None = None) -> None:
        super().sendData(data, sync, chopsize)
        self.backlog.wrote(len(data))

    def unreadOverflow(self, unsent: int) -> None:
        """
        The browser left more than C{[listeners] max_unsent} bytes unread:
        the inner protocol says goodbye (C{slow_reader}) and closes, as
        over TCP; before it is open, the connection is dropped.
        """
        if self.inner is not None and self.inner.canSend():
            self.inner.unreadOverflow(unsent)
            return
        self._log.warn(
            "dropping {peer}: {code}: {unsent} bytes unread",
            peer=self.peerAddress,
            code=SLOW_READER,
            unsent=unsent,
        )
        self.dropConnection(abort=True)

    def closeFromInner(self) -> None:
        """
        The inner protocol closes: start the WebSocket closing handshake
        (unless one is under way already).  autobahn drops the TCP
        connection once the browser answers, or after L{CLOSE_GRACE}.
        """
        if self.state == _OPEN:
            self.sendClose(CLOSE_NORMAL)

    def abort(self) -> None:
        """Drop the TCP connection now."""
        if self._lost:
            return
        if self.state != _CLOSED:
            self.dropConnection(abort=True)
        else:
            # autobahn considers it closed already, but TLS may still be
            # waiting for the peer's close_notify.
            self.transport.abortConnection()

    def dropConnection(self, abort: bool = False) -> None:
        # autobahn unregisters the backlog here (TLS closes only then).
        super().dropConnection(abort)
        # A clean TLS close waits for the peer's close_notify: a peer that
        # never sends it must not hold the connection open forever.
        if not abort and not self._lost and self._abortTimer is None:
            self._abortTimer = self.factory.reactor.callLater(CLOSE_GRACE, self._abortNow)

    def _abortNow(self) -> None:
        self._abortTimer = None
        if not self._lost:
            self._log.info(
                "{peer}: no close after {grace}s; aborted", peer=self.peerAddress, grace=CLOSE_GRACE
            )
            self.transport.abortConnection()

    def connectionLost(self, reason: Failure) -> None:
        self._lost = True
        # autobahn leaves its closing-handshake timer (a txaio batched call,
        # which cancels safely even once run) running when the connection
        # goes before the peer's close frame came.
        if getattr(self, "closeHandshakeTimeoutCall", None) is not None:
            self.closeHandshakeTimeoutCall.cancel()
            self.closeHandshakeTimeoutCall = None
        if self._abortTimer is not None:
            if self._abortTimer.active():
                self._abortTimer.cancel()
            self._abortTimer = None
        inner, self.inner = self.inner, None
        if inner is not None:
            self.frames.connected = False
            self.frames.disconnecting = True
        try:
            super().connectionLost(reason)
        finally:
            try:
                if inner is not None:
                    # After a complete closing handshake autobahn aborts the
                    # TCP connection (the server's duty, RFC 6455 7.1.1): for
                    # the inner protocol that is a clean close.
                    inner.connectionLost(connectionDone if self.wasClean else reason)
            finally:
                # Last: once the factory is drained, so is every inner protocol.
                self.factory.connectionClosed(self)


class WebSocketFactory(WebSocketServerFactory):
    """
    The autobahn server factory of a L{WebSocketListener}: WebSocket options
    from the config, the live WebSocket connections, and the client factory
    that builds each connection's inner protocol.

    The client factory counts this listener as one of its ports: it is
    started with the first port and stopped with the last (C{doStart} and
    C{doStop}), whichever listener they belong to.

    @ivar clientFactory: The client factory (shared with the TLS listener).
    @ivar max_unsent: The bytes a connection may leave unread (L{SendBacklog}).
    @ivar connections: The live WebSocket connections, open or not yet.
    """

    protocol = WebSocketProtocol
    noisy = False

    def __init__(
        self,
        clientFactory,
        max_message: int,
        handshake_timeout: float,
        origins: list[str] | None = None,
        reactor=None,
        max_unsent: int = 4 * 1024 * 1024,
    ):
        super().__init__(server="mmo", reactor=reactor)
        self.clientFactory = clientFactory
        self.max_unsent = max_unsent
        self.connections: set[WebSocketProtocol] = set()
        self._drained: list[defer.Deferred] = []
        self.setProtocolOptions(
            maxFramePayloadSize=max_message,
            maxMessagePayloadSize=max_message,
            # Close with a close frame that says why (1003, 1009, 1002...)
            # instead of dropping the TCP connection without a word.
            failByDrop=False,
            # TLS and the HTTP upgrade must be done within this.
            openHandshakeTimeout=handshake_timeout,
            closeHandshakeTimeout=CLOSE_GRACE,
            # No HTML status page (and version) for plain HTTPS requests.
            webStatus=False,
            # The protocol has its own heartbeat; no permessage-deflate
            # (perMessageCompressionAccept stays "refuse").
            autoPingInterval=0,
            allowedOrigins=origins if origins is not None else ["*"],
            # Pages from file:// or sandboxed frames send "Origin: null".
            allowNullOrigin=origins is None,
        )

    def startFactory(self) -> None:
        super().startFactory()
        self.clientFactory.doStart()

    def stopFactory(self) -> None:
        self.clientFactory.doStop()
        super().stopFactory()

    def connectionClosed(self, connection: WebSocketProtocol) -> None:
        self.connections.discard(connection)
        if not self.connections:
            waiting, self._drained = self._drained, []
            for d in waiting:
                d.callback(None)

    def abortOpening(self) -> None:
        """Drop the connections whose WebSocket handshake is not done."""
        for connection in list(self.connections):
            if connection.inner is None:
                connection.abort()

    def whenDrained(self) -> defer.Deferred:
        """Fires once no WebSocket connection is left."""
        if not self.connections:
            return defer.succeed(None)
        d = defer.Deferred()
        self._drained.append(d)
        return d


class WebSocketListener(TLSListener):
    """
    The secure WebSocket listener of a process: listens on
    C{processes.NAME.websocket} with TLS (the same certificate as the client
    listener, L{tls.client_facing_options}) and serves the client protocol
    to browsers, one frame body per binary message, on any path; on a
    standalone or login process it also answers plain HTTPS requests with
    the browser demo game (L{mmo.web}).

    It shares C{factory} with the process's L{mmo.frontend.listener.ClientListener},
    so TCP and WebSocket connections are one set of sessions.  When stopped
    it stops accepting, drops connections still in their WebSocket opening
    handshake, has the client factory say goodbye to every client
    (C{closeAll}) and waits until every WebSocket connection is closed.

    @param origins: When given, only pages from these origins may connect
        (autobahn patterns such as C{"https://play.example.org:443"} or
        C{"https://*.example.org:*"}); a request without an Origin header
        (not a browser) is still accepted.  By default any origin may: the
        protocol authenticates inside the connection, with no cookie a
        foreign page could ride on.
    @ivar factory: The client factory.
    @ivar webSocketFactory: The L{WebSocketFactory}.
    @ivar router: The L{UpgradeRouterFactory} in front of it when the port
        also serves the browser demo's pages (C{[web] demo}, on a
        standalone or login process), else C{None}.
    @ivar port: The listening port while running.
    """

    what = "browsers on secure WebSocket"
    what_proxied = "browsers on WebSocket, PROXY protocol (TLS at the proxy)"
    alpn = (b"http/1.1",)

    def __init__(
        self,
        config: Config,
        process: ProcessSection,
        factory,
        reactor=None,
        origins: list[str] | None = None,
    ):
        if reactor is None:
            from twisted.internet import reactor
        self.factory = factory
        self.webSocketFactory = WebSocketFactory(
            factory,
            # A message larger than a frame could never be accepted anyway.
            max_message=min(config.gateway.websocket_max_message, config.wire.max_frame_size),
            handshake_timeout=config.wire.handshake_timeout,
            origins=origins,
            reactor=reactor,
            max_unsent=config.listeners.max_unsent,
        )
        # The demo game's pages share the port: a router reads each
        # connection's first request and hands it to one or the other.
        site = demo_site(config, process, reactor)
        self.router = (
            None
            if site is None
            else UpgradeRouterFactory(
                self.webSocketFactory,
                site,
                timeout=config.wire.handshake_timeout,
                max_head=MAX_HANDSHAKE_BYTES,
                reactor=reactor,
            )
        )
        wrapped = self.webSocketFactory if self.router is None else self.router
        super().__init__(config, process, "websocket", wrapped, factory, reactor)

    def _listening(self, port):
        super()._listening(port)
        if self.router is not None:
            self.log.info(
                "{process}: the demo game: {url}",
                process=self.process.name,
                url=demo_url(self.process, port.getHost().port),
            )

    @defer.inlineCallbacks
    def stopService(self):
        super().stopService()
        yield self.stopListening()
        if self.router is not None:
            self.router.closeOpening()
        self.webSocketFactory.abortOpening()
        yield self.factory.closeAll()
        yield self.webSocketFactory.whenDrained()
