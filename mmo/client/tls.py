"""
The client's TLS: one context per server name and CA, which keeps the
server's last session ticket and offers it on the next connection, so that
a returning client resumes instead of doing a full handshake (no
certificate signature for the server to make, no chain for the client to
verify).
"""

from __future__ import annotations

import ssl as stdlib_ssl

from OpenSSL import SSL
from twisted.internet import defer, endpoints, ssl
from twisted.internet.interfaces import (
    IOpenSSLClientConnectionCreator,
    IStreamClientEndpoint,
    ITransport,
)
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.python.failure import Failure
from zope.interface import implementer

from mmo.compat import write_through


def client_tls_options(hostname: str, ca: str | None = None):
    """
    TLS options that verify the server is C{hostname}: against the CA
    certificate in the PEM file C{ca} (a deployment's own), or the
    platform's trust store when C{ca} is C{None}.
    """
    if ca is None:
        trust = ssl.platformTrust()
    else:
        with open(ca, "rb") as f:
            trust = ssl.Certificate.loadPEM(f.read())
    return ssl.optionsForClientTLS(hostname, trustRoot=trust)


@implementer(IOpenSSLClientConnectionCreator)
class ResumingTLS:
    """
    Client TLS for one server (one address): C{options}' connections,
    each offered the session of an earlier one (L{keep}).  A session the
    server does not take (another process, a restart, an expired ticket)
    costs a full handshake, as without it.

    Under TLS 1.3 the server sends its tickets after the handshake, so a
    connection's session can be resumed only once something the server sent
    after its handshake has been read: L{keep} is called then (L{connect}
    does once the server's C{hello} reply has come).

    @ivar session: The session offered to the next connection, or C{None}.
    """

    def __init__(self, options):
        self.options = options
        self.session: SSL.Session | None = None

    def clientConnectionForTLS(self, tlsProtocol) -> SSL.Connection:
        connection = self.options.clientConnectionForTLS(tlsProtocol)
        if self.session is not None:
            connection.set_session(self.session)
        return connection

    def wrap(self, endpoint) -> IStreamClientEndpoint:
        """C{endpoint} (a TCP one), its connections under this TLS."""
        return endpoints.wrapClientTLS(self, endpoint)

    def keep(self, transport) -> None:
        """Offer the session of C{transport} (a TLS transport past its handshake) from now on."""
        handle = getattr(transport, "getHandle", None)
        connection = handle() if handle is not None else None
        if isinstance(connection, SSL.Connection):
            session = connection.get_session()
            if session is not None:
                self.session = session


class StdlibTLS:
    """
    Client TLS for one server done by Python's C{ssl} module, for a client
    that makes many connections and reads many small records: each record
    is decrypted by one C call, where Twisted's TLS over pyOpenSSL goes
    through several Python layers (and raises an exception at the end of
    every read), and each write goes to the socket at once instead of on
    the reactor's next turn.  What is verified is the same as
    L{client_tls_options}: C{hostname} in the server's certificate, signed
    by the CA in the PEM file C{ca} (else the platform's trust store).

    Like L{ResumingTLS}, each connection is offered the session of an
    earlier one (L{keep}): a returning client resumes.

    @ivar session: The session offered to the next connection, or C{None}.
    """

    def __init__(self, hostname: str, ca: str | None = None):
        self.hostname = hostname
        self.ca = ca
        self.context = stdlib_ssl.create_default_context(cafile=ca)
        self.session: stdlib_ssl.SSLSession | None = None

    def wrap(self, endpoint) -> IStreamClientEndpoint:
        """C{endpoint} (a TCP one), its connections under this TLS."""
        return _StdlibTLSEndpoint(self, endpoint)

    def elsewhere(self, hostname: str) -> StdlibTLS:
        """The same trust for another server, C{hostname}, with no session yet."""
        return StdlibTLS(hostname, self.ca)

    def keep(self, transport) -> None:
        """Offer the session of C{transport} (past its handshake) from now on."""
        handle = getattr(transport, "getHandle", None)
        connection = handle() if handle is not None else None
        if isinstance(connection, stdlib_ssl.SSLObject):
            session = connection.session
            if session is not None:
                self.session = session


@implementer(IStreamClientEndpoint)
class _StdlibTLSEndpoint:
    """A TCP endpoint whose connections speak L{StdlibTLS} to the protocol's server."""

    def __init__(self, tls: StdlibTLS, endpoint):
        self._tls = tls
        self._endpoint = endpoint

    def connect(self, factory) -> defer.Deferred:
        d = self._endpoint.connect(_StdlibTLSFactory(self._tls, factory))
        return d.addCallback(lambda protocol: protocol.wrapped)


class _StdlibTLSFactory(Factory):
    def __init__(self, tls: StdlibTLS, factory):
        self.tls = tls
        self.factory = factory

    def buildProtocol(self, addr):
        wrapped = self.factory.buildProtocol(addr)
        return None if wrapped is None else StdlibTLSProtocol(self.tls, wrapped)


@implementer(ITransport)
class StdlibTLSProtocol(Protocol):
    """
    One connection's TLS (L{StdlibTLS}) between a TCP transport and the
    protocol C{wrapped}, to which it is the transport.  What C{wrapped}
    writes during the handshake is sent once the handshake is done.
    """

    #: The most plaintext one read of a record gives (a record holds 16 KiB).
    READ_SIZE = 65536

    def __init__(self, tls: StdlibTLS, wrapped):
        self.wrapped = wrapped
        self._incoming = stdlib_ssl.MemoryBIO()
        self._outgoing = stdlib_ssl.MemoryBIO()
        self._tls = tls.context.wrap_bio(
            self._incoming, self._outgoing, server_hostname=tls.hostname, session=tls.session
        )
        self._handshaking = True
        self._early: list[bytes] = []
        self._failure: Failure | None = None
        self.disconnecting = False
        self.lost = False

    # -- from the TCP transport ------------------------------------------------

    def connectionMade(self) -> None:
        write_through(self.transport)
        try:
            self._handshake()
        except stdlib_ssl.SSLError as e:
            self._fail(e)
        self.wrapped.makeConnection(self)

    def dataReceived(self, data: bytes) -> None:
        if self.lost:
            return
        self._incoming.write(data)
        try:
            if self._handshaking and not self._handshake():
                return
            read, deliver = self._tls.read, self.wrapped.dataReceived
            incoming = self._incoming
            while incoming.pending and not self.disconnecting:
                # A read takes one whole record (READ_SIZE is more than a
                # record holds): once nothing is left unread, there is no
                # more to ask for, and no SSLWantReadError to raise.
                try:
                    chunk = read(self.READ_SIZE)
                except stdlib_ssl.SSLWantReadError:
                    break
                if not chunk:
                    # The server's close_notify: it closes, and so do we.
                    self.loseConnection()
                    return
                deliver(chunk)
        except stdlib_ssl.SSLZeroReturnError:
            self.loseConnection()
            return
        except stdlib_ssl.SSLError as e:
            self._fail(e)
            return
        if self._outgoing.pending:
            # Post-handshake messages of ours (a key update's answer).
            self.transport.write(self._outgoing.read())

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.lost = True
        self.wrapped.connectionLost(self._failure or reason)

    def _handshake(self) -> bool:
        """Go on with the handshake; whether it is done (then send what waited)."""
        try:
            self._tls.do_handshake()
        except stdlib_ssl.SSLWantReadError:
            self.transport.write(self._outgoing.read())
            return False
        self._handshaking = False
        early, self._early = b"".join(self._early), []
        if early:
            self._tls.write(early)
        if self._outgoing.pending:
            self.transport.write(self._outgoing.read())
        return True

    def _fail(self, error: Exception) -> None:
        """The TLS connection is broken (a bad certificate, a bad record): drop it."""
        if self._failure is None:
            self._failure = Failure(error)
        self.disconnecting = True
        self.transport.abortConnection()

    # -- to the wrapped protocol: its transport ---------------------------------

    def write(self, data: bytes) -> None:
        if self.disconnecting or self.lost or not data:
            return
        if self._handshaking:
            self._early.append(data)
            return
        try:
            self._tls.write(data)
        except stdlib_ssl.SSLError as e:
            self._fail(e)
            return
        self.transport.write(self._outgoing.read())

    def writeSequence(self, data) -> None:
        self.write(b"".join(data))

    def loseConnection(self) -> None:
        """Say close_notify (once the handshake is done) and close the TCP connection."""
        if self.disconnecting or self.lost:
            return
        self.disconnecting = True
        if not self._handshaking:
            try:
                self._tls.unwrap()
            except stdlib_ssl.SSLError:
                # Our close_notify is out; the server's is not waited for.
                pass
            if self._outgoing.pending:
                self.transport.write(self._outgoing.read())
        self.transport.loseConnection()

    def abortConnection(self) -> None:
        self.disconnecting = True
        self.transport.abortConnection()

    def getPeer(self):
        return self.transport.getPeer()

    def getHost(self):
        return self.transport.getHost()

    def getHandle(self) -> stdlib_ssl.SSLObject:
        """The connection's C{ssl.SSLObject} (L{StdlibTLS.keep} reads its session)."""
        return self._tls

    def registerProducer(self, producer, streaming) -> None:
        self.transport.registerProducer(producer, streaming)

    def unregisterProducer(self) -> None:
        self.transport.unregisterProducer()

    def pauseProducing(self) -> None:
        self.transport.pauseProducing()

    def resumeProducing(self) -> None:
        self.transport.resumeProducing()

    def stopProducing(self) -> None:
        self.transport.stopProducing()
