"""
Real TLS over loopback on the client-facing listener: a good handshake, a
client that does not trust the server's CA, a hostname mismatch and a
plaintext client; and the operator's own certificate chain.
"""

import os
import shutil
import socket
import ssl
import subprocess

from OpenSSL import SSL
from twisted.internet import defer, protocol, reactor, threads
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.trial import unittest

from mmo import certs, tls
from mmo.client import ResumingTLS, connect
from mmo.client.tls import client_tls_options
from mmo.config import ConfigError
from mmo.frontend.factory import ClientFactory
from mmo.frontend.listener import ClientListener
from mmo.frontend.websocket import WebSocketListener
from tests.support import STANDALONE, WEBSOCKET, LogCapture, deployment, until


def reused(client) -> bool:
    """Whether the TLS connection of C{client} resumed a session (OpenSSL's own word)."""
    connection = client.transport.getHandle()
    return bool(SSL._lib.SSL_session_reused(connection._ssl))


class ClientFacingTLSTests(unittest.TestCase):
    def setUp(self):
        self.config = deployment(self, STANDALONE)
        self.logs = LogCapture(self)
        return self.start(self.config)

    def start(self, config):
        self.service = ClientListener(config, config.processes["mmo"], reactor=reactor)
        self.service.startService()
        self.addCleanup(self.service.stopService)
        self.port = self.service.port.getHost().port
        return defer.succeed(None)

    @defer.inlineCallbacks
    def test_good_handshake(self):
        """A client trusting the deployment CA verifies the server and pings."""
        ca = tls.ca_path(self.config.deployment.tls_dir)
        for hostname in ("localhost", "127.0.0.1"):
            client = yield connect(reactor, "127.0.0.1", self.port, ca=ca, hostname=hostname)
            reply = yield client.request("ping")
            self.assertIsInstance(reply["time"], float)
            yield client.close()

    @defer.inlineCallbacks
    def test_returning_client_resumes(self):
        """
        A client that keeps its server's session resumes it on its next
        connection: the listener issues session tickets, and
        L{ResumingTLS} offers the last one kept.  A client with a session
        of another server (here: none the listener knows) gets a full
        handshake, and keeps the new session.
        """
        ca = tls.ca_path(self.config.deployment.tls_dir)
        resuming = ResumingTLS(client_tls_options("localhost", ca))
        resumed = []
        for _ in range(3):
            client = yield connect(reactor, "127.0.0.1", self.port, tls=resuming)
            resumed.append(reused(client))
            yield client.request("ping")
            yield client.close()
        self.assertEqual(resumed, [False, True, True])
        # Another listener (a restarted process) has other ticket keys.
        yield self.service.stopService()
        yield self.start(self.config)
        client = yield connect(reactor, "127.0.0.1", self.port, tls=resuming)
        self.assertFalse(reused(client))
        yield client.close()
        client = yield connect(reactor, "127.0.0.1", self.port, tls=resuming)
        self.assertTrue(reused(client))
        yield client.close()

    @defer.inlineCallbacks
    def test_new_connection_full_handshake(self):
        """By default L{connect} keeps no session from one call to the next."""
        ca = tls.ca_path(self.config.deployment.tls_dir)
        for _ in range(2):
            client = yield connect(reactor, "127.0.0.1", self.port, ca=ca, hostname="localhost")
            self.assertFalse(reused(client))
            yield client.close()

    def test_tickets_optional(self):
        """C{session_tickets=False} turns the tickets off (Twisted's C{OP_NO_TICKET})."""
        process = self.config.processes["mmo"]
        on = tls.client_facing_options(self.config, process)
        off = tls.client_facing_options(self.config, process, session_tickets=False)
        self.assertTrue(on.enableSessionTickets)
        self.assertFalse(off.enableSessionTickets)

    @defer.inlineCallbacks
    def test_wrong_ca_refused(self):
        """A client that trusts another CA refuses the server, which logs why."""
        other = deployment(self, STANDALONE, name="other")
        ca = tls.ca_path(other.deployment.tls_dir)
        yield self.assertFailure(
            connect(reactor, "127.0.0.1", self.port, ca=ca, hostname="localhost"), Exception
        )
        yield until(lambda: self.logs.matching("TLS refused", "127.0.0.1", "unknown ca"))
        self.assertEqual(self.service.factory.connections, set())

    @defer.inlineCallbacks
    def test_hostname_mismatch_refused(self):
        """The certificate is good but not for the name asked: refused."""
        ca = tls.ca_path(self.config.deployment.tls_dir)
        failure = yield self.assertFailure(
            connect(reactor, "127.0.0.1", self.port, ca=ca, hostname="elsewhere.example"),
            Exception,
        )
        self.assertIn("elsewhere.example", str(failure))

    @defer.inlineCallbacks
    def test_plaintext_refused(self):
        """A plaintext client is disconnected, and the reason logged."""
        done = defer.Deferred()

        class Plain(protocol.Protocol):
            def connectionMade(self):
                self.transport.write(b"\x00\x00\x00\x05hello")

            def connectionLost(self, reason):
                done.callback(None)

        yield connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", self.port), Plain())
        yield done
        yield until(lambda: self.logs.matching("TLS refused", "127.0.0.1", "wrong version number"))


#: A WebSocket opening handshake, as a browser sends it after TLS.
UPGRADE = (
    b"GET /play HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
    b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Sec-WebSocket-Version: 13\r\n\r\n"
)


def alpn_handshake(port: int, ca: str, offered: list[str], send: bytes = b"") -> tuple:
    """
    In a thread: a TLS handshake with Python's C{ssl} offering C{offered}
    over ALPN, as browsers and curl do; the protocol selected and the first
    bytes answered to C{send}, if given.
    """
    context = ssl.create_default_context(cafile=ca)
    context.set_alpn_protocols(offered)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname="localhost") as conn:
            answer = b""
            if send:
                conn.sendall(send)
                answer = conn.recv(12)
            return conn.selected_alpn_protocol(), answer


class ALPNTests(unittest.TestCase):
    """
    A client that offers ALPN is never refused: the TCP listener selects
    C{mmo} when it is offered (else nothing), the WebSocket listener
    C{http/1.1}, and the WebSocket upgrade follows.
    """

    def setUp(self):
        self.config = deployment(self, STANDALONE + WEBSOCKET)
        process = self.config.processes["mmo"]
        self.ca = tls.ca_path(self.config.deployment.tls_dir)
        factory = ClientFactory(self.config, process, reactor)
        self.tcp = ClientListener(self.config, process, reactor=reactor, factory=factory)
        self.wss = WebSocketListener(self.config, process, factory, reactor=reactor)
        for listener in (self.tcp, self.wss):
            listener.startService()
            self.addCleanup(listener.stopService)

    def offer(self, listener, offered, send=b""):
        port = listener.port.getHost().port
        return threads.deferToThread(alpn_handshake, port, self.ca, offered, send)

    @defer.inlineCallbacks
    def test_websocket_selects_http11(self):
        for offered in (["http/1.1"], ["h2", "http/1.1"]):
            selected, answer = yield self.offer(self.wss, offered, UPGRADE)
            self.assertEqual((selected, answer), ("http/1.1", b"HTTP/1.1 101"), offered)

    @defer.inlineCallbacks
    def test_websocket_without_http11(self):
        """An offer of only C{h2}: nothing selected, the handshake goes on."""
        selected, answer = yield self.offer(self.wss, ["h2"], UPGRADE)
        self.assertEqual((selected, answer), (None, b"HTTP/1.1 101"))

    @defer.inlineCallbacks
    def test_tcp_selects_mmo(self):
        for offered, expected in (
            (["mmo"], "mmo"),
            (["h2", "mmo"], "mmo"),
            (["http/1.1"], None),
            (["h2", "http/1.1"], None),
        ):
            selected, _ = yield self.offer(self.tcp, offered)
            self.assertEqual(selected, expected, offered)

    @defer.inlineCallbacks
    def test_openssl_s_client(self):
        """C{openssl s_client -alpn} on both listeners."""
        openssl = shutil.which("openssl")
        if openssl is None:
            raise unittest.SkipTest("openssl is not installed")
        for listener, offered, expected in (
            (self.wss, "h2,http/1.1", b"ALPN protocol: http/1.1"),
            (self.tcp, "http/1.1", b"No ALPN negotiated"),
            (self.tcp, "mmo", b"ALPN protocol: mmo"),
        ):
            port = listener.port.getHost().port
            command = [openssl, "s_client", "-connect", f"127.0.0.1:{port}"]
            command += ["-servername", "localhost", "-CAfile", self.ca, "-alpn", offered]
            done = yield threads.deferToThread(
                subprocess.run, command, stdin=subprocess.DEVNULL, capture_output=True, timeout=20
            )
            out, err = done.stdout, done.stderr
            # Its exit code is that of the read after the handshake (the
            # server may reset a connection that sent nothing): not asserted.
            self.assertIn(expected, out, (offered, out, err))
            self.assertIn(b"Verify return code: 0 (ok)", out)


class OperatorCertificateTests(unittest.TestCase):
    """[tls] certificate/private_key replace the generated certificate."""

    @defer.inlineCallbacks
    def test_operator_chain(self):
        other = deployment(self, STANDALONE, name="public")
        ca_key, ca_cert = certs.create_ca("public")
        key, cert = certs.issue(ca_key, ca_cert, "localhost", ["localhost"], usage="server")
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        chain, key_file = os.path.join(directory, "chain.pem"), os.path.join(directory, "k.pem")
        certs.write_certificate(chain, cert)
        with open(chain, "ab") as f:
            f.write(ca_cert.public_bytes(certs.serialization.Encoding.PEM))
        certs.write_private_key(key_file, key)
        ca_file = os.path.join(directory, "ca.pem")
        certs.write_certificate(ca_file, ca_cert)
        config = deployment(
            self,
            STANDALONE,
            extra=f'[tls]\ncertificate = "{chain}"\nprivate_key = "{key_file}"\n',
        )
        service = ClientListener(config, config.processes["mmo"], reactor=reactor)
        service.startService()
        self.addCleanup(service.stopService)
        port = service.port.getHost().port
        client = yield connect(reactor, "127.0.0.1", port, ca=ca_file, hostname="localhost")
        yield client.request("ping")
        yield client.close()
        # The deployment's own CA is not what the listener presents now.
        yield self.assertFailure(
            connect(
                reactor,
                "127.0.0.1",
                port,
                ca=tls.ca_path(other.deployment.tls_dir),
                hostname="localhost",
            ),
            Exception,
        )


class MissingFilesTests(unittest.TestCase):
    def test_missing_certificates(self):
        """No certificates yet: the start fails naming the key and the remedy."""
        config = deployment(self, STANDALONE)
        os.remove(tls.server_paths(config.deployment.tls_dir, "mmo")[0])
        error = self.assertRaises(
            ConfigError, ClientListener, config, config.processes["mmo"], reactor
        )
        message = str(error)
        self.assertIn(f"{config.file}: deployment.tls_dir: cannot read", message)
        self.assertIn("mmo.crt", message)
        self.assertIn("mmo-certs --config", message)

    def test_key_does_not_match(self):
        """A private key of another certificate is refused at start."""
        config = deployment(self, STANDALONE)
        directory = config.deployment.tls_dir
        os.replace(os.path.join(directory, "mmo.client.key"), tls.server_paths(directory, "mmo")[1])
        error = self.assertRaises(
            ConfigError, ClientListener, config, config.processes["mmo"], reactor
        )
        self.assertIn("deployment.tls_dir", str(error))

    def test_port_in_use(self):
        """A port that cannot be bound fails the start with the key."""
        config = deployment(self, STANDALONE)
        first = ClientListener(config, config.processes["mmo"], reactor=reactor)
        first.startService()
        self.addCleanup(first.stopService)
        busy = first.port.getHost().port
        config.processes["mmo"].client = f"tcp:{busy}:interface=127.0.0.1"
        second = ClientListener(config, config.processes["mmo"], reactor=reactor)
        error = self.assertRaises(ConfigError, second.startService)
        self.assertIn("processes.mmo.client: cannot listen", str(error))
