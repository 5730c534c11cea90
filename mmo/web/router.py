"""
One TLS port for the WebSocket game protocol and the demo's pages: each
connection's first HTTP request head is read, then the connection is handed
to the WebSocket protocol (a request with C{Upgrade: websocket}) or to a
C{twisted.web} HTTP channel (anything else), which from then on talk to the
TLS transport directly.

Why not autobahn's C{WebSocketResource} inside a C{twisted.web} site: it
takes the transport away from the HTTP channel that parsed the upgrade,
through private attributes, while the channel is still registered as the
transport's producer; routing before either protocol exists needs nothing
private, and leaves the WebSocket protocol exactly as it is on a port of its
own.
"""

from __future__ import annotations

from twisted.internet import interfaces, protocol
from twisted.logger import Logger
from zope.interface import implementer

from mmo.tls import HandshakeLogging, peer_address

#: The end of an HTTP request head.
HEAD_END = b"\r\n\r\n"


def is_websocket_upgrade(head: bytes) -> bool:
    """Whether the request head C{head} asks for a WebSocket upgrade."""
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"upgrade":
            tokens = (token.strip().lower() for token in value.split(b","))
            if b"websocket" in tokens:
                return True
    return False


@implementer(interfaces.IHandshakeListener)
class UpgradeRouter(HandshakeLogging, protocol.Protocol):
    """
    One connection until its first request head is read: buffers what comes
    (at most C{factory.max_head} bytes, for at most C{factory.timeout}
    seconds, else the connection is dropped), then builds the chosen
    protocol, connects it to the transport, tells it that TLS is up and
    gives it every byte read so far; after that it only passes on what
    comes and the end of the connection.

    @ivar chosen: The protocol the connection was handed to, or C{None}.
    """

    log = Logger()
    chosen = None
    _timer = None

    def connectionMade(self) -> None:
        self._head = bytearray()
        self._timer = self.factory.reactor.callLater(self.factory.timeout, self._timedOut)
        self.factory.connections.add(self)

    def dataReceived(self, data: bytes) -> None:
        if self.chosen is not None:
            self.chosen.dataReceived(data)
            return
        if self._head is None:
            return
        self._head += data
        end = self._head.find(HEAD_END)
        if end < 0 and len(self._head) <= self.factory.max_head:
            return
        if end < 0 or end > self.factory.max_head:
            self.drop(f"request head over {self.factory.max_head} bytes")
            return
        upgrade = is_websocket_upgrade(bytes(self._head[:end]))
        self.handOver(self.factory.webSocketFactory if upgrade else self.factory.site)

    def handOver(self, factory) -> None:
        """Give the connection, and what was read, to a protocol of C{factory}."""
        self._stopTimer()
        data, self._head = bytes(self._head), None
        chosen = factory.buildProtocol(self.transport.getPeer())
        if chosen is None:
            self.transport.loseConnection()
            return
        self.chosen = chosen
        chosen.makeConnection(self.transport)
        if self.tlsHandshakeDone and interfaces.IHandshakeListener.providedBy(chosen):
            chosen.handshakeCompleted()
        chosen.dataReceived(data)

    def isHTTP(self) -> bool:
        """Whether the connection was handed to the pages."""
        return self.chosen is not None and not self.factory.isWebSocket(self.chosen)

    def drop(self, why: str) -> None:
        """Drop a connection whose first request head did not come."""
        self.log.warn("{peer}: {why}; dropped", peer=peer_address(self.transport), why=why)
        self._head = None
        self._stopTimer()
        self.transport.abortConnection()

    def _timedOut(self) -> None:
        self._timer = None
        self.drop(f"no request within {self.factory.timeout}s")

    def _stopTimer(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def connectionLost(self, reason) -> None:
        self._stopTimer()
        self.factory.connections.discard(self)
        chosen, self.chosen = self.chosen, None
        try:
            super().connectionLost(reason)
        finally:
            if chosen is not None:
                chosen.connectionLost(reason)


class UpgradeRouterFactory(protocol.Factory):
    """
    The factory behind a WebSocket listener's TLS when it also serves pages.

    @ivar webSocketFactory: Builds the protocol of an upgrade.
    @ivar site: The C{twisted.web} site of everything else.
    @ivar timeout: Seconds for the first request head.
    @ivar max_head: Bytes of the first request head.
    @ivar connections: The live connections (routed or not).
    """

    protocol = UpgradeRouter
    noisy = False

    def __init__(self, webSocketFactory, site, timeout: float, max_head: int, reactor):
        self.webSocketFactory = webSocketFactory
        self.site = site
        self.timeout = timeout
        self.max_head = max_head
        self.reactor = reactor
        self.connections: set[UpgradeRouter] = set()

    def isWebSocket(self, chosen) -> bool:
        return isinstance(chosen, self.webSocketFactory.protocol)

    def startFactory(self) -> None:
        self.webSocketFactory.doStart()

    def stopFactory(self) -> None:
        self.webSocketFactory.doStop()

    def closeOpening(self) -> None:
        """
        Drop the connections not yet routed and close those that carry
        pages (what a stopping listener does; the WebSocket connections are
        the client factory's to say goodbye to).
        """
        for connection in list(self.connections):
            if connection.chosen is None:
                connection.transport.abortConnection()
            elif connection.isHTTP():
                connection.transport.loseConnection()
