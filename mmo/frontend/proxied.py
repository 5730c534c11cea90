"""
Client listeners behind a TLS-terminating proxy (HAProxy), with the PROXY
protocol (C{processes.NAME.proxy_from}).

The proxy does the TLS with the players and opens a plain TCP connection to
the process for each of them, which starts with a PROXY protocol header (v1
or v2) naming the player's address.  Twisted's C{twisted.protocols.haproxy}
parses the header (its public L{proxyEndpoint}); this module adds what a
game server needs around it:

  - B{who may send a header}: a connection whose TCP peer is not one of the
    trusted proxies is closed at once, before a byte is read
    (L{TrustedProxies}): anyone else could claim any address;
  - B{the real address, from the start}: the client protocol (or the
    WebSocket one) is connected only once the header is read (L{Proxied}),
    so its C{getPeer}, its log lines, the per-address limits
    (L{mmo.frontend.addresses.AddressLimits}) and C{register_per_ip} all see
    the player's address, never the proxy's;
  - B{a log line for every refusal}: an untrusted address (once per
    address), a connection closed before a valid header, no header within
    C{[wire] handshake_timeout}.

Writes go to the socket as they come (write-through, no Nagle delay); a
turn's writes are not gathered into one as mmo's TLS does: measured with
C{bench/tls.py}, gathering them (one timer per turn for every connection)
cost the Python process more with one frame per connection per turn, a
tick's shape, than it saved with ten.

The stack of one connection, from the socket up::

    TCP (tcp.Connection, write-through, no Nagle delay)
      HAProxy's wrapper (parses the header; getPeer is the player's)
        ClientProtocol, WebSocketProtocol or the upgrade router
      with L{Proxied} between the two until the header is read (it admits
      the address, then connects the protocol) and told of the close.
"""

from __future__ import annotations

from twisted.internet import interfaces, protocol
from twisted.logger import Logger
from twisted.protocols import policies
from twisted.protocols.haproxy import proxyEndpoint
from zope.interface import implementer

from mmo.compat import write_through
from mmo.frontend.addresses import AddressLimits, in_networks
from mmo.tls import format_address, peer_address

#: Untrusted addresses whose refusal was logged, remembered at most.
LOGGED_ADDRESSES = 1024


class TrustedProxies(protocol.Factory):
    """
    Accepts connections from the trusted proxies only: C{buildProtocol}
    returns C{None} for any other peer, which makes the port close the
    socket at once (nothing read, nothing parsed).  Everything else is the
    wrapped factory's.

    @ivar networks: The trusted proxies' networks.
    @ivar refused: Connections refused so far.
    """

    log = Logger()
    noisy = False

    def __init__(self, wrapped, networks: list):
        self.wrapped = wrapped
        self.networks = networks
        self.refused = 0
        self._logged: set[str | None] = set()

    def buildProtocol(self, addr):
        host = getattr(addr, "host", None)
        if not in_networks(host, self.networks):
            self.refused += 1
            # Once per address (of the last LOGGED_ADDRESSES): a scan or a
            # flood from outside fills no log.
            if host not in self._logged:
                if len(self._logged) >= LOGGED_ADDRESSES:
                    self._logged.clear()
                self._logged.add(host)
                self.log.warn(
                    "PROXY refused {address}: not a trusted proxy (processes.*.proxy_from); "
                    "{refused} refused so far",
                    address=format_address(addr),
                    refused=self.refused,
                )
            return None
        return self.wrapped.buildProtocol(addr)

    def doStart(self) -> None:
        self.wrapped.doStart()

    def doStop(self) -> None:
        self.wrapped.doStop()

    def logPrefix(self) -> str:
        return self.wrapped.logPrefix()


@implementer(interfaces.IStreamServerEndpoint)
class TrustedProxiesEndpoint:
    """An endpoint that listens with L{TrustedProxies} around each factory."""

    def __init__(self, endpoint, networks: list):
        self.endpoint = endpoint
        self.networks = networks

    def listen(self, factory):
        return self.endpoint.listen(TrustedProxies(factory, self.networks))


def proxied_endpoint(endpoint, networks: list):
    """
    C{endpoint} (a plain TCP server endpoint) accepting PROXY protocol
    connections from C{networks} only.
    """
    return proxyEndpoint(TrustedProxiesEndpoint(endpoint, networks))


class Proxied(protocol.Protocol):
    """
    One proxied connection until its PROXY header is read: then it admits
    the player's address and connects the wrapped protocol to HAProxy's
    wrapper (whose C{getPeer} is the player's), which it no longer stands
    between except to hear of the end of the connection.

    The first bytes the wrapped protocol would see come with (or after)
    the header: both of mmo's protocols (the framed one and WebSocket's
    HTTP upgrade) wait for the client to speak first, so nothing is sent
    before.  A connection whose header does not come within the
    factory's C{timeout} is aborted.
    """

    log = Logger()
    admitted = False
    _timer = None
    _host = None
    _refusalLogged = False

    def __init__(self, factory: ProxiedFactory, wrappedProtocol):
        self.factory = factory
        self.wrappedProtocol = wrappedProtocol

    def connectionMade(self) -> None:
        self.factory.registerProtocol(self)
        # The socket below HAProxy's wrapper: one send() per write while it
        # keeps up, and no Nagle delay (write_through): without TLS nothing
        # gathers a turn's frames into one write.
        write_through(getattr(self.transport, "transport", None))
        self._timer = self.factory.reactor.callLater(self.factory.timeout, self._timedOut)

    def dataReceived(self, data: bytes) -> None:
        # HAProxy's wrapper passes data up only once the header is parsed:
        # this is the first read, and the only one that comes here.
        self._cancelTimer()
        self.admitted = True
        host = getattr(self.transport.getPeer(), "host", None)
        limits = self.factory.addresses
        if limits.counts(host):
            if limits.admit(host) is not None:
                self.transport.abortConnection()
                return
            self._host = host
        wrapped = self.wrappedProtocol
        wrapped.makeConnection(self.transport)
        # The proxy did the TLS: tell a protocol that waits for it.
        if interfaces.IHandshakeListener.providedBy(wrapped):
            wrapped.handshakeCompleted()
        # Later reads go from HAProxy's wrapper straight to the protocol
        # (one call less per read, as Twisted's BufferingTLSTransport does
        # for its writes).
        self.dataReceived = wrapped.dataReceived
        wrapped.dataReceived(data)

    def connectionLost(self, reason) -> None:
        self._cancelTimer()
        self.factory.unregisterProtocol(self)
        if self._host is not None:
            host, self._host = self._host, None
            self.factory.addresses.release(host)
        wrapped, self.wrappedProtocol = self.wrappedProtocol, None
        if self.admitted:
            if wrapped.transport is not None and wrapped.connected:
                wrapped.connectionLost(reason)
        elif not self._refusalLogged:
            self.log.warn(
                "PROXY refused {address}: closed before a valid PROXY header",
                address=peer_address(self.transport),
            )

    def _timedOut(self) -> None:
        self._timer = None
        self.log.warn(
            "PROXY refused {address}: no PROXY header within {timeout:g} s",
            address=peer_address(self.transport),
            timeout=self.factory.timeout,
        )
        self._refusalLogged = True
        self.transport.abortConnection()

    def _cancelTimer(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None


class ProxiedFactory(policies.WrappingFactory):
    """
    Builds a L{Proxied} around each protocol of C{wrappedFactory}, which is
    asked for one with the proxy's address (the header is not read yet).

    @ivar addresses: The per-address limits, applied to the player's address.
    @ivar timeout: Seconds a connection has to send its header.
    @ivar reactor: For the timer.
    """

    protocol = Proxied
    noisy = False

    def __init__(self, wrappedFactory, addresses: AddressLimits, timeout: float, reactor):
        super().__init__(wrappedFactory)
        self.addresses = addresses
        self.timeout = timeout
        self.reactor = reactor
