"""
The bots' TLS (L{mmo.client.tls.StdlibTLS}, Python's C{ssl} module under
the SDK's client): against the real client-facing listener (handshake,
verification, resumption, the server's goodbye), and record by record
against a server end in memory (what is written during the handshake,
records split across reads and a message across records).
"""

from __future__ import annotations

import ssl

from twisted.internet import defer, protocol, reactor, task
from twisted.internet.testing import StringTransport
from twisted.trial import unittest

from mmo import tls
from mmo.bot import scenario
from mmo.bot.swarm import Options, Swarm
from mmo.client import ConnectionClosed, StdlibTLS, connect
from mmo.client.tls import StdlibTLSProtocol
from mmo.frontend.listener import ClientListener
from tests.support import STANDALONE, deployment


class ListenerTests(unittest.TestCase):
    def setUp(self):
        self.config = deployment(self, STANDALONE)
        self.ca = tls.ca_path(self.config.deployment.tls_dir)
        self.start()

    def start(self):
        self.service = ClientListener(self.config, self.config.processes["mmo"], reactor=reactor)
        self.service.startService()
        self.addCleanup(self.service.stopService)
        self.port = self.service.port.getHost().port

    @defer.inlineCallbacks
    def test_ping_and_close(self):
        """A client on L{StdlibTLS} verifies the server, pings and closes cleanly."""
        client = yield connect(reactor, "127.0.0.1", self.port, tls=StdlibTLS("localhost", self.ca))
        self.assertIsInstance(client.transport.getHandle(), ssl.SSLObject)
        reply = yield client.request("ping")
        self.assertIsInstance(reply["time"], float)
        closed = yield client.close()
        self.assertIsInstance(closed, ConnectionClosed)

    @defer.inlineCallbacks
    def test_returning_client_resumes(self):
        """The session kept from one connection is resumed by the next."""
        resuming = StdlibTLS("localhost", self.ca)
        resumed = []
        for _ in range(3):
            client = yield connect(reactor, "127.0.0.1", self.port, tls=resuming)
            resumed.append(client.transport.getHandle().session_reused)
            yield client.request("ping")
            yield client.close()
        self.assertEqual(resumed, [False, True, True])

    @defer.inlineCallbacks
    def test_wrong_ca_refused(self):
        other = deployment(self, STANDALONE, name="other")
        wrong = StdlibTLS("localhost", tls.ca_path(other.deployment.tls_dir))
        failure = yield self.assertFailure(
            connect(reactor, "127.0.0.1", self.port, tls=wrong), ConnectionClosed
        )
        self.assertIn("certificate verify failed", str(failure))

    @defer.inlineCallbacks
    def test_hostname_mismatch_refused(self):
        elsewhere = StdlibTLS("elsewhere.example", self.ca)
        failure = yield self.assertFailure(
            connect(reactor, "127.0.0.1", self.port, tls=elsewhere), ConnectionClosed
        )
        self.assertIn("elsewhere.example", str(failure))

    @defer.inlineCallbacks
    def test_server_goodbye(self):
        """The server's goodbye and close reach the client as on Twisted's TLS."""
        client = yield connect(reactor, "127.0.0.1", self.port, tls=StdlibTLS("localhost", self.ca))
        yield self.service.stopService()
        closed = yield client.whenClosed()
        self.assertEqual(closed.code, "shutdown")


class Received(protocol.Protocol):
    def __init__(self):
        self.chunks: list[bytes] = []
        self.lost = None

    def connectionMade(self):
        self.transport.write(b"early")

    def dataReceived(self, data):
        self.chunks.append(data)

    def connectionLost(self, reason):
        self.lost = reason


class RecordTests(unittest.TestCase):
    """The protocol between a StringTransport and a server end in memory."""

    def setUp(self):
        config = deployment(self, STANDALONE)
        directory = config.deployment.tls_dir
        server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        server.load_cert_chain(f"{directory}/mmo.crt", f"{directory}/mmo.key")
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.server = server.wrap_bio(self.incoming, self.outgoing, server_side=True)
        self.wrapped = Received()
        self.tls = StdlibTLSProtocol(StdlibTLS("localhost", tls.ca_path(directory)), self.wrapped)
        self.transport = StringTransport()
        self.tls.makeConnection(self.transport)
        for _ in range(4):
            self.incoming.write(self.transport.value())
            self.transport.clear()
            try:
                self.server.do_handshake()
            except ssl.SSLWantReadError:
                pass
            self.tls.dataReceived(self.outgoing.read())

    def from_server(self) -> bytes:
        """What the client sent the server since the last call, decrypted."""
        self.incoming.write(self.transport.value())
        self.transport.clear()
        sent = []
        while True:
            try:
                sent.append(self.server.read(65536))
            except ssl.SSLWantReadError:
                return b"".join(sent)

    def test_written_during_the_handshake_goes_after_it(self):
        self.assertEqual(self.from_server(), b"early")
        self.tls.write(b"later")
        self.assertEqual(self.from_server(), b"later")

    def test_records_split_and_joined_across_reads(self):
        """Each record's plaintext in order, however the bytes come."""
        records = []
        for text in (b"one", b"two", b"x" * 40000):
            self.server.write(text)
            records.append(self.outgoing.read())
        stream = b"".join(records)
        for start in range(0, len(stream), 1000):
            self.tls.dataReceived(stream[start : start + 1000])
        self.assertEqual(b"".join(self.wrapped.chunks), b"onetwo" + b"x" * 40000)
        self.assertEqual(self.wrapped.chunks[:2], [b"one", b"two"])

    def test_close_notify_closes(self):
        """The server's close_notify: the client says its own and closes."""
        self.assertEqual(self.from_server(), b"early")
        with self.assertRaises(ssl.SSLWantReadError):
            self.server.unwrap()
        self.tls.dataReceived(self.outgoing.read())
        self.assertTrue(self.transport.disconnecting)
        self.incoming.write(self.transport.value())
        self.server.unwrap()

    def test_a_bad_record_aborts(self):
        self.tls.dataReceived(b"\x17\x03\x03\x00\x10" + b"\x00" * 16)
        self.assertTrue(self.transport.disconnecting)
        self.tls.connectionLost(None)
        self.assertIsInstance(self.wrapped.lost.value, ssl.SSLError)


class SwarmTLSTests(unittest.TestCase):
    def test_the_bots_use_the_ssl_module(self):
        """The swarm's TLS per server is a L{StdlibTLS} verifying its hostname."""
        swarm = Swarm(task.Clock(), Options("127.0.0.1", 7000, progress=None),
                      scenario.make("idle"))  # fmt: skip
        login = swarm.tls("127.0.0.1", 7000)
        self.assertIsInstance(login, StdlibTLS)
        self.assertEqual(login.hostname, "localhost")
