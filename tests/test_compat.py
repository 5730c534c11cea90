"""
The pieces of L{mmo.compat} that reach into a library, on the real thing:
L{write_through} on real loopback TCP connections of the running reactor.
"""

from __future__ import annotations

import hashlib
import socket

from twisted.internet import defer, interfaces, protocol, reactor
from twisted.internet.testing import StringTransport
from twisted.trial import unittest
from zope.interface import implementer

from mmo.compat import write_through
from mmo.frontend.addresses import LimitedTLSFactory, WriteThroughTLS
from tests import support


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
