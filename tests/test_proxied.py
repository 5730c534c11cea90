"""
Client listeners behind a TLS-terminating proxy (mmo.frontend.proxied):
the PROXY header read through Twisted's public proxyEndpoint, the player's
address seen by the client protocol and the per-address limits, and every
refusal logged.  Wire protocols on StringTransport, time on a fake clock.
"""

from __future__ import annotations

import socket
import struct

from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure
from twisted.trial import unittest

from mmo.config import ConfigError
from mmo.frontend.addresses import parse_networks
from mmo.frontend.factory import ClientFactory
from mmo.frontend.listener import ClientListener
from mmo.frontend.proxied import ProxiedFactory, proxied_endpoint
from mmo.frontend.websocket import WebSocketListener
from mmo.wire import PROTOCOL_VERSION, codec
from tests.support import LogCapture, config_of, written_frames

PROXY = IPv4Address("TCP", "10.0.0.5", 40100)
STRANGER = IPv4Address("TCP", "198.51.100.9", 40200)
HELLO = codec.frame({"t": "hello", "id": 1, "versions": [PROTOCOL_VERSION]})


def v1_header(source: str, port: int) -> bytes:
    return f"PROXY TCP4 {source} 10.0.0.1 {port} 7000\r\n".encode()


def v2_header(source: str, port: int) -> bytes:
    """A PROXY protocol v2 header: PROXY command, TCP over IPv4."""
    addresses = socket.inet_aton(source) + socket.inet_aton("10.0.0.1")
    addresses += struct.pack("!HH", port, 7000)
    signature = b"\r\n\r\n\x00\r\nQUIT\n"
    return signature + b"\x21\x11" + struct.pack("!H", len(addresses)) + addresses


class RecordingEndpoint:
    """A server endpoint that keeps the factory it is asked to listen with."""

    factory = None

    def listen(self, factory):
        self.factory = factory


class ProxiedTests(unittest.TestCase):
    def setUp(self):
        self.config = config_of(
            {"mmo": {"kind": "mmo", "client": "tcp:0", "proxy_from": ["10.0.0.0/24"]}},
            listeners={"per_address": 1, "exempt": []},
            wire={"handshake_timeout": 5.0},
        )
        self.reactor = MemoryReactorClock()
        self.clients = ClientFactory(self.config, self.config.processes["mmo"], self.reactor)
        self.logs = LogCapture(self)
        endpoint = RecordingEndpoint()
        proxied_endpoint(endpoint, parse_networks(["10.0.0.0/24"])).listen(
            ProxiedFactory(self.clients, self.clients.addresses, 5.0, self.reactor)
        )
        self.port = endpoint.factory

    def connect(self, peer=PROXY):
        """A connection accepted from C{peer}: (protocol or None, transport)."""
        protocol = self.port.buildProtocol(peer)
        transport = StringTransport(peerAddress=peer)
        if protocol is not None:
            protocol.makeConnection(transport)
        return protocol, transport

    def test_v1_header_gives_the_player_address(self):
        protocol, transport = self.connect()
        # Nothing is connected before the header: no connection, no timer of its own.
        self.assertEqual(self.clients.connections, set())
        protocol.dataReceived(v1_header("203.0.113.7", 51000) + HELLO)
        [client] = self.clients.connections
        self.assertEqual(client.peer, "203.0.113.7:51000")
        self.assertEqual(client.transport.getPeer().host, "203.0.113.7")
        [reply] = written_frames(transport)
        self.assertEqual(reply["t"], "reply")

    def test_v2_header_split_from_the_data(self):
        protocol, transport = self.connect()
        protocol.dataReceived(v2_header("203.0.113.8", 52000))
        self.assertEqual(self.clients.connections, set())
        protocol.dataReceived(HELLO)
        [client] = self.clients.connections
        self.assertEqual(client.peer, "203.0.113.8:52000")
        self.assertEqual([f["t"] for f in written_frames(transport)], ["reply"])

    def test_untrusted_address_refused_before_reading(self):
        protocol, _ = self.connect(STRANGER)
        self.assertIsNone(protocol)
        self.assertEqual(self.port.refused, 1)
        self.assertTrue(self.logs.matching("PROXY refused 198.51.100.9:40200", "not a trusted"))
        # Again from the same address: refused, not logged again.
        self.assertIsNone(self.connect(IPv4Address("TCP", "198.51.100.9", 40201))[0])
        self.assertEqual(self.port.refused, 2)
        self.assertEqual(len(self.logs.matching("PROXY refused")), 1)

    def test_no_header_refused_and_logged(self):
        protocol, transport = self.connect()
        protocol.dataReceived(HELLO + b"x" * 20)
        self.assertTrue(transport.disconnecting)
        protocol.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(self.clients.connections, set())
        self.assertTrue(self.logs.matching("PROXY refused 10.0.0.5:40100", "valid PROXY header"))

    def test_no_header_in_time(self):
        protocol, transport = self.connect()
        self.reactor.advance(5.0)
        self.assertTrue(transport.disconnecting)
        self.assertTrue(self.logs.matching("PROXY refused 10.0.0.5:40100", "within 5 s"))
        protocol.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(len(self.logs.matching("PROXY refused")), 1)

    def test_per_address_limits_apply_to_the_player(self):
        first, _ = self.connect()
        first.dataReceived(v1_header("203.0.113.7", 51000) + HELLO)
        # The same player again through the same proxy: over per_address = 1.
        second, transport = self.connect()
        second.dataReceived(v1_header("203.0.113.7", 51001) + HELLO)
        self.assertTrue(transport.disconnecting)
        self.assertEqual(written_frames(transport), [])
        # Another player through the same proxy is not affected.
        third, _ = self.connect()
        third.dataReceived(v1_header("203.0.113.9", 51002) + HELLO)
        self.assertEqual(len(self.clients.connections), 2)
        # Once the first closes, its address may connect again.
        first.connectionLost(Failure(ConnectionDone()))
        fourth, transport = self.connect()
        fourth.dataReceived(v1_header("203.0.113.7", 51003) + HELLO)
        self.assertEqual([f["t"] for f in written_frames(transport)], ["reply"])

    def test_no_tls_refusal_logged_on_close(self):
        protocol, _ = self.connect()
        protocol.dataReceived(v1_header("203.0.113.7", 51000) + HELLO)
        protocol.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(self.clients.connections, set())
        self.assertEqual(self.logs.matching("TLS refused"), [])


class ProxyConfigTests(unittest.TestCase):
    def test_bad_address_refused(self):
        with self.assertRaises(ConfigError) as caught:
            config_of({"g": {"kind": "gateway", "client": "tcp:0", "proxy_from": ["proxy"]}})
        self.assertIn("proxy_from", str(caught.exception))

    def test_only_client_facing_processes(self):
        with self.assertRaises(ConfigError) as caught:
            config_of(
                {
                    "mmo": {"kind": "mmo", "client": "tcp:0"},
                    "lobby": {"kind": "lobby", "rpc": "tcp:0", "proxy_from": ["10.0.0.1"]},
                }
            )
        self.assertIn("proxy_from", str(caught.exception))

    def test_default_none(self):
        config = config_of()
        self.assertEqual(config.processes["mmo"].proxy_from, [])


class ProxiedWebSocketTests(unittest.TestCase):
    """The secure WebSocket listener behind a proxy: plain HTTP upgrade after the header."""

    def test_upgrade_after_header_sees_the_player(self):
        config = config_of(
            {
                "gateway-1": {
                    "kind": "gateway",
                    "client": "tcp:7000",
                    "websocket": "tcp:7443",
                    "proxy_from": ["10.0.0.5"],
                }
            },
            listeners={"exempt": []},
        )
        process = config.processes["gateway-1"]
        reactor = MemoryReactorClock()
        clients = ClientFactory(config, process, reactor)
        logs = LogCapture(self)
        # No certificate is read: the proxy does the TLS.
        listener = WebSocketListener(config, process, clients, reactor=reactor)
        # Listens on the fake reactor: nothing to stop.
        listener.startService()
        [(port, factory, _, _)] = reactor.tcpServers
        self.assertEqual(port, 7443)
        self.assertTrue(logs.matching("browsers on WebSocket, PROXY protocol"))

        connection = factory.buildProtocol(PROXY)
        transport = StringTransport(peerAddress=PROXY)
        connection.makeConnection(transport)
        upgrade = (
            b"GET / HTTP/1.1\r\nHost: play.example.org\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            b"Sec-WebSocket-Version: 13\r\n\r\n"
        )
        connection.dataReceived(v2_header("203.0.113.7", 51000) + upgrade)
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 101"), transport.value())
        [client] = clients.connections
        self.assertEqual(client.peer, "203.0.113.7:51000")
        self.assertEqual(logs.matching("TLS refused") + logs.matching("PROXY refused"), [])

    def test_untrusted_proxy_refused(self):
        config = config_of(
            {"g": {"kind": "gateway", "client": "tcp:7000", "proxy_from": ["10.0.0.5"]}}
        )
        reactor = MemoryReactorClock()
        listener = ClientListener(config, config.processes["g"], reactor)
        listener.startService()
        self.addCleanup(listener.stopService)
        [(_, factory, _, _)] = reactor.tcpServers
        self.assertIsNone(factory.buildProtocol(STRANGER))
        self.assertIsNotNone(factory.buildProtocol(PROXY))
