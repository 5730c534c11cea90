"""
Secure WebSocket for browsers (L{mmo.frontend.websocket}): real TLS over
loopback to a real autobahn server, with the C{websockets} library as the
browser.

The browser side is C{websockets}' asyncio client, on an event loop of its
own in a thread (L{BrowserLoop}), so the reactor keeps serving while the
client waits.  (Its threaded "sync" client is not used: it reads and writes
one C{ssl.SSLSocket} from two threads at once, which OpenSSL does not allow,
and now and then its first write never reaches the wire.)  Waits on the
browser side have a generous timeout only so that a broken server fails a
test instead of hanging it; nothing asserts on time.
"""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
import threading

import msgpack
import websockets.asyncio.client
import websockets.exceptions
from twisted.internet import defer, reactor, threads
from twisted.internet.address import IPv4Address
from twisted.python.failure import Failure
from twisted.trial import unittest

from mmo import tls
from mmo.bus.memory import MemoryBus
from mmo.client import connect as tcp_connect
from mmo.config import ConfigError
from mmo.frontend.factory import ClientFactory
from mmo.frontend.listener import ClientListener
from mmo.frontend.protocol import ClientProtocol
from mmo.frontend.websocket import (
    CLOSE_MESSAGE_TOO_BIG,
    CLOSE_NORMAL,
    CLOSE_UNSUPPORTED_DATA,
    MAX_HANDSHAKE_BYTES,
    FrameTransport,
    WebSocketListener,
)
from mmo.login.passwords import PasswordHasher
from mmo.login.service import LoginService
from mmo.login.tickets import TicketSigner
from mmo.standalone.protocol import StandaloneFactory
from mmo.store.sqlite import SQLiteStore
from mmo.wire import codec, codes
from tests import support
from tests.support import LogCapture, deployment, map_with_pairs, until

#: Seconds a browser-side wait may take before the test errs (not an assertion).
TIMEOUT = 30.0

#: The close code for a text message that is not valid UTF-8 (RFC 6455, 7.4.1).
CLOSE_INVALID_PAYLOAD = 1007

#: The WebSocket message limit of the test deployments, below [wire] max_frame_size.
LIMIT = 1024

PROCESSES = """
[processes.mmo]
kind = "mmo"
client = "tcp:0:interface=127.0.0.1"
websocket = "tcp:0:interface=127.0.0.1"
hosts = ["localhost", "127.0.0.1"]
"""

# The handshake timeout is long so that no test passes by waiting for it.
EXTRA = f"""
[wire]
handshake_timeout = 3600

[gateway]
websocket_max_message = {LIMIT}

[login]
argon2_memory_kib = 64
argon2_time_cost = 1

# The port's pages are tested in tests/test_web.py; here it is only WebSocket.
[web]
demo = false
"""


def padded_ping(request_id: int, size: int) -> bytes:
    """The body of a ping of exactly C{size} bytes (a padding field makes up the rest)."""
    pad = size - len(codec.encode({"t": "ping", "id": request_id, "pad": ""}))
    while True:
        body = codec.encode({"t": "ping", "id": request_id, "pad": "x" * pad})
        if len(body) == size:
            return body
        # The str header grew (fixstr -> str8 -> str16): take it out of the padding.
        pad -= len(body) - size


class BrowserLoop:
    """
    An asyncio event loop on a thread of its own, where the browsers of a
    test run; L{run} hands it a coroutine and gives back a Deferred.  One per
    test (L{of}), stopped and joined in the test's cleanup, after the
    browsers are closed.
    """

    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._main, name="browser-loop")
        self.thread.start()

    @classmethod
    def of(cls, testcase) -> BrowserLoop:
        """The browser loop of C{testcase}, started on first use."""
        loop = getattr(testcase, "_browserLoop", None)
        if loop is None:
            loop = testcase._browserLoop = cls()
            testcase.addCleanup(loop.stop)
        return loop

    def _main(self):
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()
        self.loop.run_until_complete(self.loop.shutdown_asyncgens())
        self.loop.close()

    def run(self, coroutine) -> defer.Deferred:
        """Run C{coroutine} on the loop; the Deferred fires (in the reactor) with its result."""
        d = defer.Deferred()

        def fire(future):
            try:
                result = future.result()
            except BaseException:
                d.errback(Failure())
            else:
                d.callback(result)

        future = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        future.add_done_callback(lambda f: reactor.callFromThread(fire, f))
        return d

    @defer.inlineCallbacks
    def stop(self):
        async def cancel_the_rest():
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        yield self.run(cancel_the_rest())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()


class Browser:
    """
    A browser stand-in: one C{websockets} client connection on the test's
    L{BrowserLoop}; closed in the test's cleanup.
    """

    def __init__(self, testcase, port, ca, host="127.0.0.1", server_hostname=None, origin=None):
        self.loop = BrowserLoop.of(testcase)
        self.uri = f"wss://{host}:{port}/play"
        self.context = ssl.create_default_context(cafile=ca)
        # Every browser offers ALPN.
        self.context.set_alpn_protocols(["http/1.1"])
        self.server_hostname = server_hostname
        self.origin = origin
        self.ws = None
        testcase.addCleanup(self.close)

    def connect(self) -> defer.Deferred:
        """Connect, verifying the server's certificate; fires with this browser."""

        async def run():
            kwargs = {"server_hostname": self.server_hostname} if self.server_hostname else {}
            self.ws = await websockets.asyncio.client.connect(
                self.uri,
                ssl=self.context,
                origin=self.origin,
                proxy=None,
                compression=None,
                ping_interval=None,
                open_timeout=TIMEOUT,
                close_timeout=TIMEOUT,
                max_size=16 * 1024 * 1024,
                **kwargs,
            )
            return self

        return self.loop.run(run())

    def send(self, message: dict) -> defer.Deferred:
        return self.send_raw(codec.encode(message))

    def send_raw(self, data) -> defer.Deferred:
        """
        Send C{data}: bytes as a binary message, str as a text message, a
        list as one message in fragments.
        """
        return self.loop.run(self.ws.send(data))

    def recv_raw(self) -> defer.Deferred:
        return self.loop.run(asyncio.wait_for(self.ws.recv(), TIMEOUT))

    @defer.inlineCallbacks
    def recv(self):
        """The next message, which must be binary, decoded."""
        data = yield self.recv_raw()
        if not isinstance(data, bytes):
            raise AssertionError(f"not a binary message: {data!r}")
        return codec.decode(data)

    @defer.inlineCallbacks
    def request(self, message: dict):
        yield self.send(message)
        reply = yield self.recv()
        return reply

    def rest(self) -> defer.Deferred:
        """
        Read until the server closes; fires with (the decoded messages that
        came first, the L{websockets.exceptions.ConnectionClosed}).
        """

        async def run():
            received = []
            while True:
                try:
                    data = await asyncio.wait_for(self.ws.recv(), TIMEOUT)
                except websockets.exceptions.ConnectionClosed as e:
                    return received, e
                received.append(codec.decode(data))

        return self.loop.run(run())

    def close(self) -> defer.Deferred:
        if self.ws is None:
            return defer.succeed(None)
        return self.loop.run(self.ws.close())


class TestProtocol(ClientProtocol):
    """A client protocol with messages that exercise the WebSocket adapter."""

    def message_burst(self, message):
        """Three pushes in one write, one as a sequence, one split over writes."""
        self.transport.write(b"".join(codec.frame({"t": "note", "n": n}) for n in range(3)))
        self.transport.writeSequence([codec.frame({"t": "note", "n": 3})[:3], b""])
        self.transport.writeSequence([codec.frame({"t": "note", "n": 3})[3:]])
        split = codec.frame({"t": "note", "n": 4})
        for i in range(0, len(split), 5):
            self.transport.write(split[i : i + 5])
        return {"done": True}

    def message_big(self, message):
        """A push larger than the WebSocket limit (but within max_frame_size)."""
        self.push("big", data="x" * self.field(message, "size", int))
        return {}

    def message_peer(self, message):
        """Where the connection comes from and goes to, as the protocol sees it."""
        peer, host = self.transport.getPeer(), self.transport.getHost()
        return {"peer": [peer.host, peer.port], "host": [host.host, host.port]}


class TestFactory(ClientFactory):
    protocol = TestProtocol


class FakeTLSTransport:
    """Records what a L{FrameTransport} passes on."""

    def __init__(self):
        self.calls = []

    def __getattr__(self, name):
        return lambda *args: self.calls.append((name, *args))


class FakeWebSocket:
    """What a L{FrameTransport} needs from its WebSocket connection."""

    peerAddress = "127.0.0.1:4000"

    def __init__(self):
        self.bodies = []
        self.closed = self.aborted = 0
        self.transport = FakeTLSTransport()

    def sendBody(self, body):
        self.bodies.append(body)

    def closeFromInner(self):
        self.closed += 1

    def abort(self):
        self.aborted += 1


class FrameTransportTests(unittest.TestCase):
    """The adapter's frame splitting, without a network."""

    def setUp(self):
        self.websocket = FakeWebSocket()
        self.transport = FrameTransport(self.websocket)
        self.messages = [{"t": "note", "n": n, "text": "é" * n} for n in range(5)]
        self.stream = b"".join(codec.frame(m) for m in self.messages)

    def received(self):
        return [codec.decode(body) for body in self.websocket.bodies]

    def test_frames_in_one_write(self):
        self.transport.write(self.stream)
        self.assertEqual(self.received(), self.messages)

    def test_frames_split_anywhere(self):
        """Each body is sent once it is complete, wherever the writes cut the stream."""
        for size in (1, 2, 3, 5, 7, 64):
            self.websocket.bodies.clear()
            for i in range(0, len(self.stream), size):
                self.transport.write(self.stream[i : i + size])
            self.assertEqual(self.received(), self.messages, size)

    def test_write_sequence(self):
        self.transport.writeSequence([self.stream[:3], self.stream[3:10], self.stream[10:]])
        self.assertEqual(self.received(), self.messages)

    def test_nothing_after_close(self):
        """After loseConnection, writes are dropped; closing twice closes once."""
        self.transport.write(codec.frame({"t": "a"}) + b"\x00\x00")
        self.transport.loseConnection()
        self.transport.loseConnection()
        self.transport.write(b"\x00\x05" + codec.encode({"t": "b"}))
        self.assertEqual(self.received(), [{"t": "a"}])
        self.assertEqual(self.websocket.closed, 1)
        self.transport.abortConnection()
        self.assertEqual(self.websocket.aborted, 1)

    def test_passed_on(self):
        """Addresses and producers are the TLS transport's."""
        producer = object()
        self.transport.getPeer()
        self.transport.getHost()
        self.transport.registerProducer(producer, True)
        self.transport.pauseProducing()
        self.transport.resumeProducing()
        self.transport.stopProducing()
        self.transport.unregisterProducer()
        self.assertEqual(
            self.websocket.transport.calls,
            [
                ("getPeer",),
                ("getHost",),
                ("registerProducer", producer, True),
                ("pauseProducing",),
                ("resumeProducing",),
                ("stopProducing",),
                ("unregisterProducer",),
            ],
        )


class WebSocketTestCase(unittest.TestCase):
    """A listener with a L{TestFactory} on a throw-away deployment."""

    def setUp(self):
        self.config = deployment(self, PROCESSES, extra=EXTRA)
        self.process = self.config.processes["mmo"]
        self.ca = tls.ca_path(self.config.deployment.tls_dir)
        self.factory = TestFactory(self.config, self.process, reactor)
        self.listener = self.listen(self.factory)
        self.port = self.listener.port.getHost().port

    def listen(self, factory):
        listener = WebSocketListener(self.config, self.process, factory, reactor=reactor)
        listener.startService()
        self.addCleanup(self.stop, listener)
        return listener

    def stop(self, listener):
        return listener.stopService() if listener.running else None

    @defer.inlineCallbacks
    def browser(self, **kwargs):
        """A connected browser that has done the protocol handshake."""
        browser = Browser(self, self.port, self.ca, **kwargs)
        yield browser.connect()
        reply = yield browser.request({"t": "hello", "id": 1, "versions": [1], "client": "b/1"})
        self.assertEqual((reply["t"], reply["id"], reply["version"]), ("reply", 1, 1))
        return browser


class WebSocketTests(WebSocketTestCase):
    @defer.inlineCallbacks
    def test_hello_and_ping(self):
        """The server's certificate verifies against the deployment CA; hello, then ping."""
        for hostname in (None, "localhost"):
            browser = yield self.browser(server_hostname=hostname)
            pong = yield browser.request({"t": "ping", "id": 2})
            self.assertEqual((pong["t"], pong["id"]), ("reply", 2))
            self.assertIsInstance(pong["time"], float)
            yield browser.close()
        yield self.listener.webSocketFactory.whenDrained()
        self.assertEqual(self.factory.connections, set())

    @defer.inlineCallbacks
    def test_one_connection_in_the_factory(self):
        """
        The inner protocol comes from the client factory, counts among its
        connections, and sees the real addresses of the TCP connection.
        """
        browser = yield self.browser()
        [connection] = self.factory.connections
        self.assertIsInstance(connection, TestProtocol)
        local = browser.ws.local_address
        reply = yield browser.request({"t": "peer", "id": 2})
        self.assertEqual(reply["peer"], [local[0], local[1]])
        self.assertEqual(reply["host"], ["127.0.0.1", self.port])
        self.assertEqual(connection.transport.getPeer(), IPv4Address("TCP", *local))

    @defer.inlineCallbacks
    def test_wrong_ca_refused(self):
        """A browser that trusts another CA refuses the server."""
        other = deployment(self, PROCESSES, name="other", extra=EXTRA)
        browser = Browser(self, self.port, tls.ca_path(other.deployment.tls_dir))
        yield self.assertFailure(browser.connect(), ssl.SSLCertVerificationError)
        yield self.listener.webSocketFactory.whenDrained()
        self.assertEqual(self.factory.connections, set())

    @defer.inlineCallbacks
    def test_errors_keep_the_connection(self):
        """Protocol errors that are not fatal come back as error messages; the rest works."""
        browser = yield self.browser()
        error = yield browser.request({"t": "dance", "id": 2})
        self.assertEqual((error["t"], error["code"], error["id"]), ("error", "unknown_type", 2))
        self.assertFalse(error["fatal"])
        pong = yield browser.request({"t": "ping", "id": 3})
        self.assertEqual(pong["id"], 3)

    @defer.inlineCallbacks
    def test_text_message_refused(self):
        """A text message: a fatal bad_frame error, then close code 1003."""
        browser = yield self.browser()
        yield browser.send_raw('{"t": "ping", "id": 2}')
        received, closed = yield browser.rest()
        [error] = received
        self.assertEqual(
            (error["t"], error["id"], error["code"], error["fatal"]),
            ("error", None, codes.BAD_FRAME, True),
        )
        self.assertEqual(closed.rcvd.code, CLOSE_UNSUPPORTED_DATA)
        yield self.listener.webSocketFactory.whenDrained()
        self.assertEqual(self.factory.connections, set())

    @defer.inlineCallbacks
    def test_bad_body_is_fatal(self):
        """A binary message that is not a msgpack map is bad_frame, as over TCP."""
        browser = yield self.browser()
        yield browser.send_raw(b"\xc1")
        received, closed = yield browser.rest()
        self.assertEqual([(m["code"], m["fatal"]) for m in received], [(codes.BAD_FRAME, True)])
        self.assertEqual(closed.rcvd.code, CLOSE_NORMAL)

    @defer.inlineCallbacks
    def test_duplicate_key_is_fatal(self):
        """A map with a key twice is bad_frame, as over TCP."""
        browser = yield self.browser()
        yield browser.send_raw(map_with_pairs(("t", msgpack.packb("ping")), ("t", b"\xa3bye")))
        received, closed = yield browser.rest()
        self.assertEqual([(m["code"], m["fatal"]) for m in received], [(codes.BAD_FRAME, True)])
        self.assertEqual(closed.rcvd.code, CLOSE_NORMAL)

    @defer.inlineCallbacks
    def test_invalid_utf8_text_message(self):
        """
        A text message that is not valid UTF-8 is failed by the WebSocket
        layer itself, before any frame is read: close code 1007, no error
        frame.
        """
        browser = yield self.browser()
        yield browser.loop.run(browser.ws.send(b"\xff\xfe", text=True))
        yield self.assertClosedSilently(browser, CLOSE_INVALID_PAYLOAD)

    @defer.inlineCallbacks
    def assertClosedSilently(self, browser, code):
        """The server closes with C{code}, sending nothing first, and forgets the connection."""
        received, closed = yield browser.rest()
        self.assertEqual(received, [])
        self.assertEqual(closed.rcvd.code, code)
        yield self.listener.webSocketFactory.whenDrained()
        self.assertEqual(self.factory.connections, set())

    @defer.inlineCallbacks
    def test_message_at_the_limit(self):
        """A message of exactly websocket_max_message bytes is accepted."""
        browser = yield self.browser()
        yield browser.send_raw(padded_ping(2, LIMIT))
        pong = yield browser.recv()
        self.assertEqual((pong["t"], pong["id"]), ("reply", 2))

    @defer.inlineCallbacks
    def test_message_over_the_limit(self):
        """One byte more: a fatal frame_too_large error, then close code 1009."""
        browser = yield self.browser()
        yield browser.send_raw(padded_ping(2, LIMIT + 1))
        received, closed = yield browser.rest()
        [error] = received
        self.assertEqual(
            (error["t"], error["id"], error["code"], error["fatal"]),
            ("error", None, codes.FRAME_TOO_LARGE, True),
        )
        self.assertIn(str(LIMIT), error["message"])
        self.assertEqual(closed.rcvd.code, CLOSE_MESSAGE_TOO_BIG)

    @defer.inlineCallbacks
    def test_fragmented_message_over_the_limit(self):
        """The limit holds for a message sent in fragments, each under it."""
        browser = yield self.browser()
        body = padded_ping(2, LIMIT + 100)
        yield browser.send_raw([body[:600], body[600:]])
        received, closed = yield browser.rest()
        self.assertEqual([m["code"] for m in received], [codes.FRAME_TOO_LARGE])
        self.assertEqual(closed.rcvd.code, CLOSE_MESSAGE_TOO_BIG)

    @defer.inlineCallbacks
    def test_fragmented_message_accepted(self):
        """A message in fragments is one body."""
        browser = yield self.browser()
        body = codec.encode({"t": "ping", "id": 2})
        yield browser.send_raw([body[:3], body[3:5], body[5:]])
        pong = yield browser.recv()
        self.assertEqual(pong["id"], 2)

    @defer.inlineCallbacks
    def test_several_frames_in_one_write(self):
        """Frames written together, or split, arrive as one message each, in order."""
        browser = yield self.browser()
        yield browser.send({"t": "burst", "id": 2})
        received = []
        for _ in range(6):
            received.append((yield browser.recv()))
        self.assertEqual(
            received,
            [{"t": "note", "n": n} for n in range(5)] + [{"t": "reply", "id": 2, "done": True}],
        )

    @defer.inlineCallbacks
    def test_server_messages_over_the_websocket_limit(self):
        """
        The WebSocket limit is on what browsers send: the server's messages
        may be as large as [wire] max_frame_size.
        """
        browser = yield self.browser()
        size = 20 * LIMIT
        yield browser.send({"t": "big", "id": 2, "size": size})
        push = yield browser.recv()
        self.assertEqual((push["t"], push["seq"], len(push["data"])), ("big", 1, size))
        reply = yield browser.recv()
        self.assertEqual(reply, {"t": "reply", "id": 2})

    @defer.inlineCallbacks
    def test_bye_from_the_browser(self):
        """The browser says bye: the server closes, normally."""
        browser = yield self.browser()
        yield browser.send({"t": "bye"})
        yield self.assertClosedSilently(browser, CLOSE_NORMAL)

    @defer.inlineCallbacks
    def test_abort(self):
        """The inner protocol aborts (as closeAll does to a peer that stays): dropped."""
        browser = yield self.browser()
        [connection] = self.factory.connections
        connection.transport.abortConnection()
        received, closed = yield browser.rest()
        self.assertEqual((received, closed.rcvd), ([], None))
        yield self.listener.webSocketFactory.whenDrained()
        self.assertEqual(self.factory.connections, set())

    @defer.inlineCallbacks
    def test_browser_closes(self):
        """The browser closes the WebSocket: the inner protocol's connection ends."""
        browser = yield self.browser()
        self.assertEqual(len(self.factory.connections), 1)
        yield browser.close()
        yield self.listener.webSocketFactory.whenDrained()
        self.assertEqual(self.factory.connections, set())

    @defer.inlineCallbacks
    def test_stop_says_goodbye(self):
        """Stopping the listener: every client is told, then closed; the port is shut."""
        browsers = []
        for _ in range(2):
            browsers.append((yield self.browser()))
        yield self.listener.stopService()
        self.assertEqual(self.factory.connections, set())
        self.assertEqual(self.listener.webSocketFactory.connections, set())
        for browser in browsers:
            received, closed = yield browser.rest()
            self.assertEqual([(m["t"], m["code"]) for m in received], [("bye", codes.SHUTDOWN)])
            self.assertEqual(closed.rcvd.code, CLOSE_NORMAL)
        late = Browser(self, self.port, self.ca)
        yield self.assertFailure(late.connect(), ConnectionRefusedError)

    @defer.inlineCallbacks
    def test_stop_with_the_tcp_listener(self):
        """
        The factory is shared with the TLS listener: one set of connections,
        and stopping either listener says goodbye to all of them.
        """
        tcp = ClientListener(self.config, self.process, reactor=reactor, factory=self.factory)
        tcp.startService()
        self.addCleanup(self.stop, tcp)
        client = yield tcp_connect(
            reactor, "127.0.0.1", tcp.port.getHost().port, ca=self.ca, hostname="localhost"
        )
        browser = yield self.browser()
        self.assertEqual(len(self.factory.connections), 2)
        yield self.listener.stopService()
        closed = yield client.whenClosed()
        self.assertEqual(closed.code, codes.SHUTDOWN)
        received, _ = yield browser.rest()
        self.assertEqual([m["code"] for m in received], [codes.SHUTDOWN])

    @defer.inlineCallbacks
    def test_stop_drops_unopened_connections(self):
        """A connection still in its opening handshake does not hold up the stop."""
        context = ssl.create_default_context(cafile=self.ca)
        sock = yield threads.deferToThread(self.raw_tls, context)
        yield until(lambda: self.listener.webSocketFactory.connections, TIMEOUT)
        yield self.listener.stopService()
        self.assertEqual(self.listener.webSocketFactory.connections, set())
        data = yield threads.deferToThread(self.read_to_end, sock)
        self.assertEqual(data, b"")

    @defer.inlineCallbacks
    def test_oversized_opening_handshake(self):
        """An upgrade request that never ends is cut off past the cap."""
        logs = LogCapture(self)
        context = ssl.create_default_context(cafile=self.ca)
        sock = yield threads.deferToThread(self.raw_tls, context)

        def flood():
            try:
                sock.sendall(b"GET / HTTP/1.1\r\nX-Pad: " + b"a" * (2 * MAX_HANDSHAKE_BYTES))
            except OSError:
                pass
            return self.read_to_end(sock)

        data = yield threads.deferToThread(flood)
        self.assertEqual(data, b"")
        yield self.listener.webSocketFactory.whenDrained()
        self.assertTrue(logs.matching(f"opening handshake over {MAX_HANDSHAKE_BYTES} bytes"))

    def raw_tls(self, context):
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=TIMEOUT)
        self.addCleanup(sock.close)
        return context.wrap_socket(sock, server_hostname="localhost")

    @staticmethod
    def read_to_end(sock) -> bytes:
        """What the server sends before it closes (a reset counts as nothing)."""
        data = b""
        try:
            while chunk := sock.recv(4096):
                data += chunk
        except (ConnectionResetError, ssl.SSLError):
            pass
        return data

    @defer.inlineCallbacks
    def test_plain_https_request(self):
        """A request that is not a WebSocket upgrade gets no page, only an error status."""
        context = ssl.create_default_context(cafile=self.ca)
        sock = yield threads.deferToThread(self.raw_tls, context)

        def get():
            sock.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
            return self.read_to_end(sock)

        response = yield threads.deferToThread(get)
        self.assertTrue(response.startswith(b"HTTP/1.1 426"), response[:100])
        self.assertNotIn(b"Autobahn", response)


class OriginTests(WebSocketTestCase):
    """The optional Origin allow-list."""

    def setUp(self):
        super().setUp()
        self.listener = self.listen_with(["https://play.example.org:443"])
        self.port = self.listener.port.getHost().port

    def listen_with(self, origins):
        self.config.processes["mmo"].websocket = "tcp:0:interface=127.0.0.1"
        listener = WebSocketListener(
            self.config, self.process, self.factory, reactor=reactor, origins=origins
        )
        listener.startService()
        self.addCleanup(self.stop, listener)
        return listener

    @defer.inlineCallbacks
    def open(self, origin):
        browser = Browser(self, self.port, self.ca, origin=origin)
        yield browser.connect()
        yield browser.close()

    @defer.inlineCallbacks
    def test_origins(self):
        yield self.open("https://play.example.org")
        yield self.open(None)
        failure = yield self.assertFailure(
            self.open("https://evil.example.com"), websockets.exceptions.InvalidStatus
        )
        self.assertEqual(failure.response.status_code, 400)


class ListenerConfigTests(unittest.TestCase):
    def test_not_configured(self):
        config = deployment(self, PROCESSES.replace("websocket =", "# websocket ="))
        process = config.processes["mmo"]
        error = self.assertRaises(
            ConfigError, WebSocketListener, config, process, TestFactory(config, process, reactor)
        )
        self.assertIn("processes.mmo.websocket", str(error))

    def test_port_in_use(self):
        """A port that cannot be bound fails the start, naming the key."""
        config = deployment(self, PROCESSES)
        process = config.processes["mmo"]
        factory = TestFactory(config, process, reactor)
        first = WebSocketListener(config, process, factory, reactor=reactor)
        first.startService()
        self.addCleanup(first.stopService)
        process.websocket = f"tcp:{first.port.getHost().port}:interface=127.0.0.1"
        second = WebSocketListener(config, process, factory, reactor=reactor)
        error = self.assertRaises(ConfigError, second.startService)
        self.assertIn(f"{config.file}: processes.mmo.websocket: cannot listen", str(error))

    def test_missing_certificates(self):
        config = deployment(self, PROCESSES)
        process = config.processes["mmo"]
        os.remove(tls.server_paths(config.deployment.tls_dir, "mmo")[0])
        error = self.assertRaises(
            ConfigError, WebSocketListener, config, process, TestFactory(config, process, reactor)
        )
        self.assertIn("deployment.tls_dir: cannot read", str(error))


KEY = b"k" * 64
PASSWORD = "correct horse battery"


class BrowserLoginTests(unittest.TestCase):
    """
    What a browser game does: register, log in and present its ticket, all
    over WebSocket, on a standalone factory wired to the login service, the
    bus, the SQLite store and admission; the TLS listener shares the factory.
    """

    @defer.inlineCallbacks
    def setUp(self):
        self.config = deployment(self, PROCESSES, extra=EXTRA)
        process = self.config.processes["mmo"]
        self.ca = tls.ca_path(self.config.deployment.tls_dir)
        store = SQLiteStore(os.path.abspath(self.mktemp()) + ".sqlite3")
        yield store.start()
        self.addCleanup(store.stop)
        bus = MemoryBus(reactor=reactor)
        yield bus.start()
        self.addCleanup(bus.stop)
        hasher = PasswordHasher(reactor, threads_=2, queue=8, time_cost=1, memory_kib=64)
        hasher.start()
        self.addCleanup(hasher.stop)
        signer = TicketSigner(KEY, self.config.login.ticket_ttl, reactor)
        login = LoginService(self.config, store, bus, hasher, signer, reactor)
        factory = support.gateway(
            self.config, "mmo", bus, signer, (), reactor, StandaloneFactory, login=login
        )
        self.factory = factory
        self.tcp = ClientListener(self.config, process, reactor=reactor, factory=factory)
        self.tcp.startService()
        self.addCleanup(self.tcp.stopService)
        self.ws = WebSocketListener(self.config, process, factory, reactor=reactor)
        self.ws.startService()
        self.addCleanup(self.ws.stopService)
        self.ws_port = self.ws.port.getHost().port
        info = {"kind": "mmo", "realm": process.realm, "host": "localhost", "load": 0}
        yield bus.announce(process.name, {**info, "port": self.tcp.port.getHost().port}, 60)

    @defer.inlineCallbacks
    def test_register_login_auth(self):
        browser = Browser(self, self.ws_port, self.ca, server_hostname="localhost")
        yield browser.connect()
        reply = yield browser.request({"t": "hello", "id": 1, "versions": [1]})
        self.assertEqual(reply["t"], "reply")
        error = yield browser.request({"t": "emote", "id": 2})
        self.assertEqual(error["code"], codes.AUTH_REQUIRED)
        registered = yield browser.request(
            {"t": "register", "id": 3, "name": "Zed", "password": PASSWORD}
        )
        self.assertEqual((registered["t"], registered["name"]), ("reply", "Zed"))
        login = yield browser.request({"t": "login", "id": 4, "name": "zed", "password": PASSWORD})
        self.assertEqual((login["t"], login["realm"]), ("reply", "main"))
        self.assertEqual(login["gateway"]["name"], "mmo")
        admitted = yield browser.request({"t": "auth", "id": 5, "ticket": login["ticket"]})
        self.assertEqual((admitted["t"], admitted["name"]), ("reply", "Zed"))
        self.assertEqual(admitted["account"], registered["account"])
        [connection] = self.factory.connections
        self.assertIs(
            self.factory.sessions.registry.by_account[admitted["account"]].connection, connection
        )
        pong = yield browser.request({"t": "ping", "id": 6})
        self.assertEqual(pong["id"], 6)

        # The same account over the TLS listener: one set of sessions, the
        # newer wins, and the browser is told why before it is closed.
        client = yield tcp_connect(
            reactor, "127.0.0.1", self.tcp.port.getHost().port, ca=self.ca, hostname="localhost"
        )
        again = yield client.request("login", name="Zed", password=PASSWORD)
        yield client.request("auth", ticket=again["ticket"])
        received, closed = yield browser.rest()
        self.assertEqual([(m["t"], m["code"]) for m in received], [("bye", codes.REPLACED)])
        self.assertEqual(closed.rcvd.code, CLOSE_NORMAL)
        yield self.ws.webSocketFactory.whenDrained()
        [connection] = self.factory.connections
        self.assertIs(
            self.factory.sessions.registry.by_account[admitted["account"]].connection, connection
        )
        yield client.close()
        # Let the presence cleanup of the closed sessions run.
        yield support.sleep(0)
