"""
The client's TLS: one context per server name and CA, which keeps the
server's last session ticket and offers it on the next connection, so that
a returning client resumes instead of doing a full handshake (no
certificate signature for the server to make, no chain for the client to
verify).
"""

from __future__ import annotations

from OpenSSL import SSL
from twisted.internet import ssl
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator
from zope.interface import implementer


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

    def keep(self, transport) -> None:
        """Offer the session of C{transport} (a TLS transport past its handshake) from now on."""
        handle = getattr(transport, "getHandle", None)
        connection = handle() if handle is not None else None
        if isinstance(connection, SSL.Connection):
            session = connection.get_session()
            if session is not None:
                self.session = session
