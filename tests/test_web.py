"""
The browser demo's pages on the WebSocket port (L{mmo.web}): real TLS over
loopback to a real L{WebSocketListener}, with C{http.client} and the
C{websockets} library as the browser.
"""

from __future__ import annotations

import http.client
import socket
import ssl

from twisted.internet import defer, reactor, threads
from twisted.trial import unittest

from mmo import tls, web
from mmo.config import ConfigError
from mmo.frontend.websocket import MAX_HANDSHAKE_BYTES, WebSocketListener
from mmo.web import demo_url, serves_demo
from mmo.web.pages import CONTENT_SECURITY_POLICY, FILES
from mmo.web.router import is_websocket_upgrade
from tests.support import LogCapture, config_of, deployment, until
from tests.test_websocket import PROCESSES as WEBSOCKET_PROCESSES
from tests.test_websocket import TIMEOUT, Browser, TestFactory

#: The standalone process of the WebSocket tests, and a gateway like it.
PROCESSES = WEBSOCKET_PROCESSES + WEBSOCKET_PROCESSES.replace(
    '[processes.mmo]\nkind = "mmo"', '[processes.gateway-1]\nkind = "gateway"'
)

EXTRA = """
[wire]
handshake_timeout = 3600
"""


class PortTestCase(unittest.TestCase):
    """A WebSocket listener of process C{name} with a test client factory."""

    name = "mmo"
    extra = EXTRA

    def setUp(self):
        self.config = deployment(self, PROCESSES, extra=self.extra)
        self.process = self.config.processes[self.name]
        self.ca = tls.ca_path(self.config.deployment.tls_dir)
        self.factory = TestFactory(self.config, self.process, reactor)
        self.listener = WebSocketListener(self.config, self.process, self.factory, reactor=reactor)
        self.listener.startService()
        self.addCleanup(lambda: self.listener.stopService() if self.listener.running else None)
        self.port = self.listener.port.getHost().port

    def fetch(self, path: str, method: str = "GET", headers=None, body=None):
        """One HTTPS request, verified against the deployment CA: (status, headers, body)."""

        def request():
            context = ssl.create_default_context(cafile=self.ca)
            connection = http.client.HTTPSConnection(
                "localhost", self.port, context=context, timeout=TIMEOUT
            )
            try:
                connection.request(method, path, body=body, headers=headers or {})
                response = connection.getresponse()
                return response.status, dict(response.getheaders()), response.read()
            finally:
                connection.close()

        return threads.deferToThread(request)

    def raw_tls(self) -> ssl.SSLSocket:
        context = ssl.create_default_context(cafile=self.ca)
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=TIMEOUT)
        self.addCleanup(sock.close)
        return context.wrap_socket(sock, server_hostname="localhost")


class PagesTests(PortTestCase):
    @defer.inlineCallbacks
    def test_page(self):
        """GET / is the demo page, with the safe headers, on the WebSocket port's certificate."""
        status, headers, body = yield self.fetch("/")
        self.assertEqual(status, 200)
        self.assertEqual(headers["Content-Type"], "text/html; charset=utf-8")
        self.assertEqual(headers["Content-Security-Policy"], CONTENT_SECURITY_POLICY.decode())
        self.assertEqual(headers["X-Content-Type-Options"], "nosniff")
        self.assertEqual(headers["Server"], "mmo")
        self.assertIn(b"demo.js", body)

    @defer.inlineCallbacks
    def test_every_file(self):
        """Every file of the table is served with its type; HEAD gives no body."""
        for path, kind in FILES.items():
            status, headers, body = yield self.fetch(path.decode())
            self.assertEqual((status, headers["Content-Type"]), (200, kind.decode()))
            self.assertTrue(body)
            status, headers, body = yield self.fetch(path.decode(), method="HEAD")
            self.assertEqual((status, body), (200, b""))

    @defer.inlineCallbacks
    def test_nothing_else(self):
        """No other path, no directory, no way out of the table."""
        for path in ("/static/", "/..%2f__init__.py", "/../__init__.py", "/pages.py", "/x"):
            status, _, body = yield self.fetch(path)
            self.assertEqual((status, body), (404, b"not found\n"), path)

    @defer.inlineCallbacks
    def test_only_get(self):
        """Other methods get 405; a body is not kept."""
        status, headers, _ = yield self.fetch("/", method="POST", body=b"x" * 300000)
        self.assertEqual((status, headers["Allow"]), (405, "GET, HEAD"))

    @defer.inlineCallbacks
    def test_websocket_on_the_same_port(self):
        """An upgrade on any path is the game protocol, as on a port of its own."""
        status, _, _ = yield self.fetch("/")
        self.assertEqual(status, 200)
        browser = Browser(self, self.port, self.ca)
        yield browser.connect()
        reply = yield browser.request({"t": "hello", "id": 1, "versions": [1]})
        self.assertEqual((reply["t"], reply["id"]), ("reply", 1))
        yield browser.close()

    @defer.inlineCallbacks
    def test_head_over_the_limit(self):
        """A first request head over the cap is cut off, whether it ends or not."""
        for end in (b"", b"\r\n\r\n"):
            logs = LogCapture(self)
            sock = yield threads.deferToThread(self.raw_tls)

            def flood(sock=sock, end=end):
                pad = b"a" * (2 * MAX_HANDSHAKE_BYTES)
                try:
                    sock.sendall(b"GET / HTTP/1.1\r\nX-Pad: " + pad + end)
                    return sock.recv(4096)
                except (OSError, ssl.SSLError):
                    return b""

            data = yield threads.deferToThread(flood)
            self.assertEqual(data, b"")
            self.assertTrue(logs.matching(f"request head over {MAX_HANDSHAKE_BYTES} bytes"))

    @defer.inlineCallbacks
    def test_stop_drops_silent_connections(self):
        """A connection that sent no request does not hold up the stop."""
        sock = yield threads.deferToThread(self.raw_tls)
        yield until(lambda: self.listener.router.connections, TIMEOUT)
        yield self.listener.stopService()
        yield until(lambda: not self.listener.router.connections, TIMEOUT)
        sock.close()

    def test_address_logged(self):
        """The listener logs the demo's address."""
        self.assertEqual(demo_url(self.process, self.port), f"https://localhost:{self.port}/")


class NoPagesTests(PortTestCase):
    """Where the demo is not served, a plain request gets 426 as before."""

    name = "gateway-1"

    @defer.inlineCallbacks
    def test_gateway(self):
        """A gateway's WebSocket port serves no pages."""
        self.assertIsNone(self.listener.router)
        sock = yield threads.deferToThread(self.raw_tls)

        def get():
            sock.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
            return sock.recv(4096)

        response = yield threads.deferToThread(get)
        self.assertTrue(response.startswith(b"HTTP/1.1 426"), response[:100])


class TurnedOffTests(NoPagesTests):
    """C{[web] demo = false} turns the pages off on a standalone process."""

    name = "mmo"
    extra = EXTRA + "\n[web]\ndemo = false\n"
    test_turned_off = NoPagesTests.test_gateway


class RouterTests(unittest.TestCase):
    def test_upgrade(self):
        """Only a request head with an Upgrade header naming websocket is an upgrade."""
        head = b"GET /x HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\n"
        self.assertTrue(is_websocket_upgrade(head + b"Upgrade: websocket"))
        self.assertTrue(is_websocket_upgrade(head + b"upgrade:  h2c, WebSocket"))
        self.assertFalse(is_websocket_upgrade(head + b"Upgrade: h2c"))
        self.assertFalse(is_websocket_upgrade(b"GET /websocket HTTP/1.1\r\nX-Upgrade: websocket"))
        self.assertFalse(is_websocket_upgrade(b"GET / HTTP/1.1\r\nHost: a"))


class ConfigTests(unittest.TestCase):
    def test_default(self):
        """On by default for standalone and login processes with a WebSocket port only."""
        config = config_of(
            {
                "mmo": {"kind": "mmo", "client": "tcp:0", "websocket": "tcp:0"},
                "login": {"kind": "login", "client": "tcp:1", "websocket": "tcp:2"},
                "gw": {"kind": "gateway", "client": "tcp:3", "websocket": "tcp:4"},
                "bare": {"kind": "mmo", "client": "tcp:5"},
            }
        )
        self.assertTrue(config.web.demo)
        served = [name for name, p in config.processes.items() if serves_demo(config, p)]
        self.assertEqual(served, ["mmo", "login"])

    def test_files_missing(self):
        """An install without the demo's files fails the start with the key to turn it off."""

        def missing():
            raise FileNotFoundError("no such file: demo.js")

        self.patch(web, "demo_pages", missing)
        config = config_of({"mmo": {"kind": "mmo", "client": "tcp:0", "websocket": "tcp:0"}})
        with self.assertRaises(ConfigError) as caught:
            web.demo_site(config, config.processes["mmo"])
        self.assertIn("web.demo: the demo's files are not installed", str(caught.exception))

    def test_not_a_bool(self):
        """A wrong value fails with its key."""
        with self.assertRaises(ConfigError) as caught:
            config_of(web={"demo": "yes"})
        self.assertIn("web.demo", str(caught.exception))
