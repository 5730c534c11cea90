"""
TLS context factories for mmo's listeners and links.

Two kinds of TLS are used:

  - B{client-facing}: the server presents a certificate (the one C{mmo-certs}
    issued for the process, or the operator's own chain from C{[tls]}); the
    client is not asked for one.
  - B{internal}: links between processes are mutual.  Both sides present a
    certificate signed by the deployment's CA and verify the other's against
    that CA only; the client checks the server's identity (its process name)
    and the server checks that the client's certificate names one of the
    deployment's processes, both with C{service_identity}.

Certificates are read from the deployment's TLS directory, laid out by
L{mmo.certs}: C{ca.crt}, C{NAME.crt}/C{NAME.key} (server) and
C{NAME.client.crt}/C{NAME.client.key} (client) for every process C{NAME}.
A missing or unreadable file is a L{ConfigError} naming the config file and
the key that points at it, so a misconfigured process fails at start.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from OpenSSL import SSL, crypto
from service_identity import VerificationError
from service_identity.cryptography import verify_certificate_hostname
from twisted.internet import ssl
from twisted.internet.interfaces import IHandshakeListener, IOpenSSLServerConnectionCreator
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from mmo.config import Config, ConfigError, ProcessSection

#: The oldest protocol version accepted on any listener or link.
MINIMUM_TLS = ssl.TLSVersion.TLSv1_2


def ca_path(directory: str) -> str:
    return os.path.join(directory, "ca.crt")


def server_paths(directory: str, name: str) -> tuple[str, str]:
    """The certificate and key files of process C{name}'s server certificate."""
    return os.path.join(directory, f"{name}.crt"), os.path.join(directory, f"{name}.key")


def client_paths(directory: str, name: str) -> tuple[str, str]:
    """The certificate and key files of process C{name}'s client certificate."""
    return (
        os.path.join(directory, f"{name}.client.crt"),
        os.path.join(directory, f"{name}.client.key"),
    )


def _read(path: str, config: Config, key: tuple[str, ...]) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        hint = ""
        if key == ("deployment", "tls_dir"):
            hint = f"; generate it with: mmo-certs --config {config.file}"
        raise ConfigError(f"cannot read {path}: {e.strerror or e}{hint}", key, config.file)


def _load_chain(path: str, config: Config, key: tuple[str, ...]) -> list[crypto.X509]:
    try:
        certs = x509.load_pem_x509_certificates(_read(path, config, key))
    except ValueError as e:
        raise ConfigError(f"{path} holds no valid PEM certificate: {e}", key, config.file)
    return [crypto.X509.from_cryptography(c) for c in certs]


def _load_key(path: str, config: Config, key: tuple[str, ...]) -> crypto.PKey:
    try:
        private = serialization.load_pem_private_key(_read(path, config, key), password=None)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"{path} holds no usable PEM private key: {e}", key, config.file)
    return crypto.PKey.from_cryptography_key(private)


def _options(config: Config, key: tuple[str, ...], **kwargs) -> ssl.CertificateOptions:
    try:
        options = ssl.CertificateOptions(raiseMinimumTo=MINIMUM_TLS, **kwargs)
        # Build the context now: a key that does not match its certificate
        # must fail the start, not the first connection.
        options.getContext()
        return options
    except SSL.Error as e:
        raise ConfigError(f"unusable certificate or key: {e}", key, config.file)


def load_ca(config: Config) -> ssl.Certificate:
    """The deployment CA certificate."""
    key = ("deployment", "tls_dir")
    path = ca_path(config.deployment.tls_dir)
    return ssl.Certificate(_load_chain(path, config, key)[0])


def client_facing_options(
    config: Config, process: ProcessSection, session_tickets: bool = True
) -> ssl.CertificateOptions:
    """
    Server-side options for the client-facing listener of C{process}: the
    operator's chain from C{[tls]} when set, otherwise the process's server
    certificate from the TLS directory.

    @param session_tickets: Issue stateless session tickets (encrypted
        with a key of this process's own, made at start, which no other
        process knows), so that a returning client resumes: the server
        then makes no certificate signature, and the client checks no
        chain.  The tickets cost the server no memory.
    """
    if config.tls.certificate:
        cert_file, key_file = config.tls.certificate, config.tls.private_key
        cert_key, key_key = ("tls", "certificate"), ("tls", "private_key")
    else:
        cert_file, key_file = server_paths(config.deployment.tls_dir, process.name)
        cert_key = key_key = ("deployment", "tls_dir")
    chain = _load_chain(cert_file, config, cert_key)
    return _options(
        config,
        cert_key,
        privateKey=_load_key(key_file, config, key_key),
        certificate=chain[0],
        extraCertChain=chain[1:],
        enableSessionTickets=session_tickets,
    )


@implementer(IOpenSSLServerConnectionCreator)
class ClientFacingTLS:
    """
    The server side of a client-facing listener's TLS, with ALPN: of the
    protocols a client offers, the first of C{protocols} it offers is
    selected; when it offers none of them, none is selected and the
    handshake goes on (a client that offers ALPN must not be refused).

    Why not C{CertificateOptions(acceptableProtocols=...)}: Twisted installs
    an ALPN select callback on every context it makes, with or without
    acceptable protocols, and that callback answers an offer it shares
    nothing with by returning C{b""}.  pyOpenSSL takes that as "selected an
    empty protocol" and OpenSSL aborts the handshake with an
    C{internal_error} alert; so every browser (which always offers ALPN) was
    refused.  This replaces the callback, through pyOpenSSL's public API,
    with one that answers C{NO_OVERLAPPING_PROTOCOLS}.

    @ivar protocols: The protocols this listener speaks, most preferred first.
    """

    def __init__(self, options: ssl.CertificateOptions, protocols: Sequence[bytes]):
        self.protocols = tuple(protocols)
        # One context per listener: the callback below is the listener's own.
        self.context = options.getContext()
        self.context.set_alpn_select_callback(self._select)

    def _select(self, connection: SSL.Connection, offered: list[bytes]):
        for protocol in self.protocols:
            if protocol in offered:
                return protocol
        return SSL.NO_OVERLAPPING_PROTOCOLS

    def serverConnectionForTLS(self, tlsProtocol) -> SSL.Connection:
        return SSL.Connection(self.context)


def client_facing_tls(
    config: Config, process: ProcessSection, protocols: Sequence[bytes]
) -> ClientFacingTLS:
    """
    The server side of TLS for a client-facing listener of C{process} that
    speaks C{protocols} (ALPN names, most preferred first).
    """
    return ClientFacingTLS(client_facing_options(config, process), protocols)


def internal_server_options(config: Config, process: ProcessSection) -> ssl.CertificateOptions:
    """
    Server-side options for C{process}'s internal listener: presents its
    server certificate and requires a client certificate signed by the
    deployment CA.  Check the client's identity with L{peer_identity} once
    the handshake is complete.
    """
    key = ("deployment", "tls_dir")
    cert_file, key_file = server_paths(config.deployment.tls_dir, process.name)
    ca = load_ca(config)
    return _options(
        config,
        key,
        privateKey=_load_key(key_file, config, key),
        certificate=_load_chain(cert_file, config, key)[0],
        # A trust root makes Twisted require and verify the peer's certificate.
        trustRoot=ssl.trustRootFromCertificates([ca]),
    )


def internal_client_options(config: Config, process: ProcessSection, peer: ProcessSection):
    """
    Client-side options for a link from C{process} to C{peer}: presents
    C{process}'s client certificate, trusts only the deployment CA and checks
    that the server is C{peer}.
    """
    key = ("deployment", "tls_dir")
    cert_file, key_file = client_paths(config.deployment.tls_dir, process.name)
    mine = ssl.PrivateCertificate.loadPEM(
        _read(cert_file, config, key) + _read(key_file, config, key)
    )
    return ssl.optionsForClientTLS(
        peer.identity,
        trustRoot=load_ca(config),
        clientCertificate=mine,
        extraCertificateOptions={"raiseMinimumTo": MINIMUM_TLS},
    )


def peer_identity(transport, candidates: Iterable[str]) -> str | None:
    """
    The first of C{candidates} that the peer certificate on C{transport}
    (a TLS transport whose handshake is complete) is valid for, or C{None}.
    """
    peer = transport.getPeerCertificate()
    if peer is None:
        return None
    cert = peer.to_cryptography()
    for name in candidates:
        try:
            verify_certificate_hostname(cert, name)
        except VerificationError:
            continue
        return name
    return None


def describe_failure(reason: Failure) -> str:
    """A one-line account of why a TLS connection failed, for the log."""
    error = reason.value
    if isinstance(error, SSL.Error) and error.args and isinstance(error.args[0], list):
        details = [entry[-1] for entry in error.args[0] if entry]
        if details:
            return ", ".join(str(d) for d in details)
    return reason.getErrorMessage() or type(error).__name__


@implementer(IHandshakeListener)
class HandshakeLogging:
    """
    Mixin for protocols wrapped in TLS: remembers whether the handshake
    completed and, when the connection ends before it did, logs the refusal
    with the peer address and the reason (wrong CA, plaintext, no client
    certificate...).  It calls up the MRO, so put it first among the bases;
    protocols that override C{connectionLost} or C{handshakeCompleted} call
    C{super()}.
    """

    tlsHandshakeDone = False
    _tlsLog = Logger()

    def handshakeCompleted(self) -> None:
        self.tlsHandshakeDone = True
        parent = getattr(super(), "handshakeCompleted", None)
        if parent is not None:
            parent()

    def connectionLost(self, reason: Failure) -> None:
        if not self.tlsHandshakeDone:
            self._tlsLog.warn(
                "TLS refused {peer}: {why}",
                peer=peer_address(self.transport),
                why=describe_failure(reason),
            )
        super().connectionLost(reason)


def peer_address(transport) -> str:
    """The remote address of C{transport} as C{host:port}, for logs."""
    try:
        address = transport.getPeer()
    except Exception:
        return "unknown peer"
    return format_address(address)


def format_address(address) -> str:
    """
    An C{IAddress} as C{host:port} (C{[host]:port} for IPv6), or a Unix
    socket's C{unix:PATH} (C{unix socket} for an unnamed end), for logs.
    """
    host, port = getattr(address, "host", None), getattr(address, "port", None)
    if host is None:
        if hasattr(address, "name"):
            name = address.name
            return "unix socket" if not name else f"unix:{os.fsdecode(name)}"
        return str(address)
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
