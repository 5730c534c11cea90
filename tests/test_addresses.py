"""
Per-address limits of the client listeners (L{mmo.frontend.addresses}):
the table on a fake clock, then a real TLS listener and a real secure
WebSocket listener on loopback (with loopback not exempt), where the
connection over the limit is closed before TLS.
"""

from __future__ import annotations

from twisted.internet import defer, protocol, reactor, task
from twisted.internet.address import IPv4Address, UNIXAddress
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.trial import unittest

from mmo import tls
from mmo.client import connect
from mmo.config import ConfigError
from mmo.frontend.addresses import AddressLimits
from mmo.frontend.factory import ClientFactory
from mmo.frontend.listener import ClientListener
from mmo.frontend.websocket import WebSocketListener
from tests import support
from tests.support import deployment, until
from tests.test_websocket import PROCESSES


def limits(per_address=2, rate=0.0, burst=10, exempt=("127.0.0.0/8", "::1"), max_addresses=100):
    clock = task.Clock()
    return clock, AddressLimits(per_address, rate, burst, list(exempt), max_addresses, clock)


class AddressLimitsTests(unittest.TestCase):
    def test_concurrent_connections(self):
        """The N+1th connection of an address is refused; one closing makes room."""
        _, table = limits(per_address=2)
        self.assertIsNone(table.admit("192.0.2.1"))
        self.assertIsNone(table.admit("192.0.2.1"))
        self.assertIn("2 connections open", table.admit("192.0.2.1"))
        self.assertIsNone(table.admit("192.0.2.2"))
        table.release("192.0.2.1")
        self.assertIsNone(table.admit("192.0.2.1"))
        self.assertEqual(table.refused, 1)

    def test_rate_of_new_connections(self):
        """A token bucket per address: a burst, then the rate."""
        clock, table = limits(per_address=0, rate=2.0, burst=3)
        for _ in range(3):
            self.assertIsNone(table.admit("192.0.2.1"))
            table.release("192.0.2.1")
        self.assertIn("per second", table.admit("192.0.2.1"))
        self.assertIsNone(table.admit("192.0.2.2"))
        clock.advance(0.5)
        self.assertIsNone(table.admit("192.0.2.1"))

    def test_exempt_and_uncounted(self):
        """Loopback (by default), UNIX sockets and switched-off limits are not counted."""
        _, table = limits(per_address=1)
        for host in ("127.0.0.1", "127.9.9.9", "::1", "::ffff:127.0.0.1", None):
            self.assertFalse(table.counts(host), host)
        self.assertTrue(table.counts("192.0.2.1"))
        self.assertTrue(table.counts("2001:db8::1"))
        _, off = limits(per_address=0, rate=0.0)
        self.assertFalse(off.counts("192.0.2.1"))
        _, strict = limits(exempt=())
        self.assertTrue(strict.counts("127.0.0.1"))

    def test_table_bounded(self):
        """
        Entries of closed connections with full buckets are forgotten; a full
        table makes room from addresses without connections, oldest first,
        and refuses a new address only when every entry has a connection.
        """
        clock, table = limits(per_address=5, rate=1.0, burst=1, max_addresses=16)
        table.admit("192.0.2.1")
        table.release("192.0.2.1")
        self.assertEqual(len(table), 1)  # its bucket is not full yet
        clock.advance(1.0)
        table.admit("192.0.2.2")
        self.assertEqual(len(table), 1)  # 192.0.2.1 swept
        for i in range(100):
            table.admit(f"198.51.100.{i}")
            table.release(f"198.51.100.{i}")
            self.assertLessEqual(len(table), 16)
        _, full = limits(per_address=5, max_addresses=16)
        for i in range(16):
            self.assertIsNone(full.admit(f"203.0.113.{i}"))
        self.assertIn("too many addresses", full.admit("192.0.2.200"))
        full.release("203.0.113.3")
        self.assertIsNone(full.admit("192.0.2.200"))
        self.assertEqual(len(full), 16)

    def test_config(self):
        config = support.config_of(listeners={"per_address": 3, "exempt": ["10.0.0.0/8"]})
        table = AddressLimits.from_config(config.listeners, task.Clock())
        self.assertEqual((table.per_address, table.rate, table.burst), (3, 10.0, 50))
        self.assertTrue(table.counts("127.0.0.1"))
        self.assertFalse(table.counts("10.1.2.3"))
        with self.assertRaises(ConfigError) as caught:
            support.config_of(listeners={"exempt": ["localhost"]})
        self.assertEqual(caught.exception.path, ("listeners", "exempt"))


class Closed(protocol.Protocol):
    """A plain TCP client that sends nothing: tells whether the server closed it."""

    def __init__(self):
        self.lost = defer.Deferred()
        self.received = b""

    def dataReceived(self, data):
        self.received += data

    def connectionLost(self, reason):
        self.lost.callback(None)


class ListenerLimitTests(unittest.TestCase):
    """A real listener with loopback counted, as a public address would be."""

    def setUp(self):
        self.config = deployment(
            self,
            PROCESSES,
            extra="[listeners]\nper_address = 2\nper_address_rate = 0\nexempt = []\n",
        )
        self.process = self.config.processes["mmo"]
        self.ca = tls.ca_path(self.config.deployment.tls_dir)
        self.factory = ClientFactory(self.config, self.process, reactor)
        self.tcp = ClientListener(self.config, self.process, reactor, self.factory)
        self.wss = WebSocketListener(self.config, self.process, self.factory, reactor)
        for listener in (self.tcp, self.wss):
            listener.startService()
            self.addCleanup(listener.stopService)

    async def client(self):
        port = self.tcp.port.getHost().port
        client = await connect(reactor, "127.0.0.1", port, ca=self.ca, hostname="localhost")
        self.addCleanup(lambda: client.transport.connected and client.transport.abortConnection())
        return client

    async def raw(self, listener) -> Closed:
        raw = Closed()
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", listener.port.getHost().port)
        await connectProtocol(endpoint, raw)
        self.addCleanup(lambda: raw.lost.called or raw.transport.abortConnection())
        return raw

    async def test_connection_over_the_limit_closed_before_tls(self):
        """
        Two connections from one address are served; the third, on either
        listener, is closed at once, without a byte (before TLS); once one
        closes, a new one is served again.
        """
        first = await self.client()
        await self.client()
        for listener in (self.tcp, self.wss):
            refused = await self.raw(listener)
            await support.bounded(refused.lost)
            self.assertEqual(refused.received, b"")
        self.assertEqual(self.factory.addresses.refused, 2)
        await first.close()
        await until(lambda: len(self.factory.connections) == 1)
        third = await self.client()
        self.assertIn("time", await third.request("ping"))

    def test_unix_socket_not_counted(self):
        self.assertFalse(self.factory.addresses.counts(getattr(UNIXAddress("/x"), "host", None)))
        self.assertTrue(self.factory.addresses.counts(IPv4Address("TCP", "127.0.0.1", 1).host))
