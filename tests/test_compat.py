"""
The pieces of L{mmo.compat} that reach into a library, on the real thing:
L{write_through} on real loopback TCP connections of the running reactor.
"""

from __future__ import annotations

import hashlib
import socket

from OpenSSL import SSL
from twisted.internet import defer, interfaces, protocol, reactor, task, tcp
from twisted.internet.testing import StringTransport
from twisted.trial import unittest
from zope.interface import implementer

from mmo import tls
from mmo.client import connect
from mmo.compat import TLSWriteThrough, fresh_bios, write_through
from mmo.frontend.addresses import LimitedTLSFactory, WriteThroughTLS
from mmo.frontend.factory import ClientFactory
from mmo.frontend.listener import ClientListener
from mmo.wire import codec
from tests import support
from tests.support import deployment


class Held(protocol.Protocol):
    """A connection whose side is kept by the test."""

    def __init__(self, connected: list):
        self.received = bytearray()
        self.lost = defer.Deferred()
        self._connected = connected

    def connectionMade(self):
        self._connected.append(self)

    def dataReceived(self, data):
        self.received += data

    def connectionLost(self, reason):
        self.lost.callback(None)


@implementer(interfaces.IPushProducer)
class Producer:
    paused = False

    def pauseProducing(self):
        self.paused = True

    def resumeProducing(self):
        self.paused = False

    def stopProducing(self):
        pass


class WriteThroughTests(unittest.TestCase):
    async def connected(self):
        """A server side and a client side of one loopback TCP connection."""
        servers, clients = [], []
        port = reactor.listenTCP(
            0, protocol.Factory.forProtocol(lambda: Held(servers)), interface="127.0.0.1"
        )
        self.addCleanup(port.stopListening)
        endpoint = protocol.ClientCreator(reactor, Held, clients)
        await support.bounded(endpoint.connectTCP("127.0.0.1", port.getHost().port))
        await support.until(lambda: servers and clients)
        server, client = servers[0], clients[0]

        async def close():
            server.transport.abortConnection()
            client.transport.abortConnection()
            await support.bounded(defer.gatherResults([server.lost, client.lost]))

        self.addCleanup(lambda: defer.ensureDeferred(close()))
        write_through(server.transport)
        return server, client

    async def test_sent_at_once(self):
        """
        A write while nothing waits is sent at once: the socket is not
        watched for writability, and the peer gets it.
        """
        server, client = await self.connected()
        server.transport.write(b"hello")
        self.assertNotIn(server.transport, reactor.getWriters())
        server.transport.write(b" world")
        await support.until(lambda: bytes(client.received) == b"hello world")

    async def test_full_kernel_buffer(self):
        """
        When the kernel takes no more, the rest is buffered as Twisted
        buffers it (the producer is paused past the buffer size) and
        everything arrives in order once the peer reads.
        """
        server, client = await self.connected()
        client.transport.pauseProducing()
        producer = Producer()
        server.transport.registerProducer(producer, True)
        sent = hashlib.sha256()
        total = 0
        # Bounded: the kernel's buffers on loopback hold a few MB at most.
        for i in range(512):
            chunk = bytes([i % 251]) * 65536
            server.transport.write(chunk)
            sent.update(chunk)
            total += len(chunk)
            if producer.paused:
                break
        self.assertTrue(producer.paused)
        self.assertIn(server.transport, reactor.getWriters())
        # A small write now goes after what is buffered, not ahead of it.
        server.transport.write(b"last")
        sent.update(b"last")
        total += 4
        client.transport.resumeProducing()
        await support.until(lambda: len(client.received) >= total, timeout=30)
        self.assertEqual(hashlib.sha256(client.received).hexdigest(), sent.hexdigest())
        await support.until(lambda: not producer.paused)
        server.transport.unregisterProducer()

    async def test_no_delay(self):
        """
        Nagle's algorithm is off: a second send of a turn (a TLS 1.3
        server's first reply after its session tickets) is not held until
        the peer acknowledges the first, which it delays by 40 ms.
        """
        server, client = await self.connected()
        handle = server.transport.getHandle()
        self.assertTrue(handle.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))

    async def test_close_after_write(self):
        """A write and then a close: the peer gets the write, then the close."""
        server, client = await self.connected()
        server.transport.write(b"bye")
        server.transport.loseConnection()
        await support.bounded(client.lost)
        self.assertEqual(bytes(client.received), b"bye")

    def test_other_transports_left_alone(self):
        transport = StringTransport()
        write_through(transport)
        transport.write(b"x")
        self.assertEqual(transport.value(), b"x")
        self.assertNotIn("write", vars(transport))

    def test_client_listeners_write_through(self):
        """The client listeners' TLS protocol writes through on its socket."""
        self.assertTrue(issubclass(LimitedTLSFactory.protocol, WriteThroughTLS))
        self.assertTrue(issubclass(WriteThroughTLS, TLSWriteThrough))


def _pump(source, sink) -> None:
    """Move what C{source} (a pyOpenSSL connection) has to send into C{sink}."""
    while True:
        try:
            sink.bio_write(source.bio_read(65536))
        except SSL.WantReadError:
            return


def _handshake_step(connection) -> bool:
    try:
        connection.do_handshake()
    except SSL.WantReadError:
        return False
    return True


class FreshBIOsTests(unittest.TestCase):
    """L{fresh_bios} on a TLS 1.3 handshake in memory."""

    def test_unread_bytes_kept(self):
        """
        What the client sent right after its Finished (in the same read)
        is read after the BIOs are replaced, and the connection goes on
        both ways.
        """
        conf = deployment(self)
        server = SSL.Connection(
            tls.client_facing_options(conf, conf.processes["mmo"]).getContext(), None
        )
        server.set_accept_state()
        client = SSL.Connection(SSL.Context(SSL.TLS_METHOD), None)
        client.set_connect_state()
        _handshake_step(client)
        _pump(client, server)
        self.assertFalse(_handshake_step(server))
        _pump(server, client)
        self.assertTrue(_handshake_step(client))
        client.send(b"right after the handshake")
        # The client's Finished and its first record, in one read.
        _pump(client, server)
        self.assertTrue(_handshake_step(server))
        old = (server._into_ssl, server._from_ssl)
        _pump(server, client)
        fresh_bios(server)
        self.assertNotIn(server._into_ssl, old)
        self.assertNotIn(server._from_ssl, old)
        self.assertEqual(server.recv(1024), b"right after the handshake")
        server.send(b"and back")
        _pump(server, client)
        received = b""
        while True:
            try:
                received += client.recv(1024)
            except SSL.WantReadError:
                break
        self.assertEqual(received, b"and back")
        client.send(b"again")
        _pump(client, server)
        self.assertEqual(server.recv(1024), b"again")


class TLSListener:
    """A test case's real client listener over TLS on loopback."""

    def setUp(self):
        self.config = deployment(self)
        process = self.config.processes["mmo"]
        self.factory = ClientFactory(self.config, process, reactor)
        self.listener = ClientListener(self.config, process, reactor, self.factory)
        self.listener.startService()
        self.addCleanup(self.listener.stopService)


class TLSWriteThroughTests(TLSListener, unittest.TestCase):
    """L{TLSWriteThrough}: a real client listener over TLS on loopback."""

    def client(self) -> defer.Deferred:
        """A client of the listener over TLS (a Deferred of it, ready)."""
        return connect(
            reactor,
            "127.0.0.1",
            self.listener.port.getHost().port,
            ca=tls.ca_path(self.config.deployment.tls_dir),
            hostname="localhost",
        )

    async def test_sends_at_once_and_keeps_nothing(self):
        """
        Replies arrive, the socket sends them at once (it is not watched
        for writability once idle, Nagle is off) and the socket's
        transport is Twisted's own, unchanged: nothing per connection.
        """
        client = await self.client()
        self.addCleanup(lambda: client.transport.connected and client.transport.abortConnection())
        self.assertIn("time", await client.request("ping"))
        (server,) = self.factory.connections
        socket_transport = server.transport.transport
        self.assertIs(type(socket_transport), tcp.Server)
        self.assertNotIn("write", vars(socket_transport))
        handle = socket_transport.getHandle()
        self.assertTrue(handle.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
        self.assertIn("time", await client.request("ping"))
        self.assertNotIn(socket_transport, reactor.getWriters())

    async def test_write_now(self):
        """
        C{writeNow} sends at once, without a delayed call, after what the
        turn gathered before it (in order); what is written after it is
        gathered again.
        """
        client = await self.client()
        self.addCleanup(lambda: client.transport.connected and client.transport.abortConnection())
        await client.request("ping")
        (server,) = self.factory.connections
        heard = []
        arrived = defer.Deferred()

        def received(message):
            heard.append(message["n"])
            if len(heard) == 4 and not arrived.called:
                arrived.callback(None)

        client.on("tick", received)
        socket_transport = server.transport.transport
        delayed = len(reactor.getDelayedCalls())
        server.transport.writeNow(frame("tick", n=1))
        # Sent already: the socket kept nothing, and nothing was scheduled.
        self.assertEqual(len(reactor.getDelayedCalls()), delayed)
        self.assertNotIn(socket_transport, reactor.getWriters())
        server.sendFrame(frame("tick", n=2))
        server.transport.writeNow(frame("tick", n=3))
        server.sendFrame(frame("tick", n=4))
        await arrived
        self.assertEqual(heard, [1, 2, 3, 4])

    async def test_write_now_after_the_connection_is_lost(self):
        """A connection that is gone drops what is written now, as C{write} does."""
        client = await self.client()
        await client.request("ping")
        (server,) = self.factory.connections
        closed = client.whenClosed()
        server.transport.abortConnection()
        await closed
        while self.factory.connections:
            await task.deferLater(reactor, 0.01, lambda: None)
        server.transport.writeNow(frame("tick", n=1))
        self.assertFalse(server.transport.connected)

    async def test_write_now_refused_by_tls(self):
        """
        A record OpenSSL refuses (here: written after TLS was shut down)
        ends the connection, as Twisted's own write does, with the error.
        """
        client = await self.client()
        self.addCleanup(lambda: client.transport.connected and client.transport.abortConnection())
        await client.request("ping")
        (server,) = self.factory.connections
        lost = support.when_lost(server)
        server.transport._tlsConnection.shutdown()
        server.transport.writeNow(frame("tick", n=1))
        (reason,) = await lost
        reason.trap(SSL.Error)

    async def test_reads_without_an_exception(self):
        """
        What a client sends is read to the end without pyOpenSSL's
        C{recv}, which raised C{WantReadError} at the end of every read; a
        client's close (its close_notify) still closes the connection.
        """
        client = await self.client()
        self.addCleanup(lambda: client.transport.connected and client.transport.abortConnection())
        await client.request("ping")
        (server,) = self.factory.connections
        connection = server.transport._tlsConnection
        received = []
        recv = connection.recv

        def counted(size, flags=None):
            received.append(size)
            return recv(size, flags)

        connection.recv = counted
        for _ in range(3):
            self.assertIn("time", await client.request("ping"))
        self.assertEqual(received, [])
        closed = support.when_lost(server)
        client.transport.loseConnection()
        await closed


def frame(kind: str, **fields) -> bytes:
    """A whole frame (its length header included) of message C{kind}."""
    body = codec.encode({**fields, "t": kind})
    return codec.HEADER.pack(len(body)) + body
