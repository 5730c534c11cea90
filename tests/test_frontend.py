"""
Tests for L{mmo.frontend} (the server side of a client connection, its
factory and the choice of factory class) and for the client SDK
L{mmo.client.Client}, all without a network: protocols are driven through
C{StringTransport}s (or a linked pair of fake transports) and time through a
L{MemoryReactorClock}.
"""

from __future__ import annotations

import gc
import struct

from twisted.internet import defer, task
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import LogLevel, formatEvent, globalLogPublisher
from twisted.python.failure import Failure
from twisted.test import iosim
from twisted.trial import unittest

import mmo
from mmo import client as sdk
from mmo.bus import BusError
from mmo.bus.memory import MemoryBus
from mmo.config import Config, ConfigError, WireSection
from mmo.frontend import protocol as frontend_protocol
from mmo.frontend.deadlines import Deadlines
from mmo.frontend.factory import ClientFactory
from mmo.frontend.listener import ClientListener, factory_class
from mmo.frontend.protocol import CLOSE_GRACE, CLOSED, HANDSHAKE, OPEN, ClientProtocol
from mmo.frontend.sending import GATHERED_MOST
from mmo.login.tickets import TicketSigner
from mmo.store import StoreUnavailable
from mmo.wire import PROTOCOL_VERSION, SUPPORTED_VERSIONS, codec, codes
from mmo.wire.codes import WireError
from tests import support
from tests.support import config_of, deployment, written_frames

PEER = IPv4Address("TCP", "192.0.2.7", 51000)


def make_config(factory: str = "", **wire) -> Config:
    """One standalone process (with its C{factory} class if given), C{wire} limits."""
    return config_of({"mmo": {"kind": "mmo", "client": "tcp:0", "factory": factory}}, wire=wire)


def gone(protocol) -> None:
    """Tell C{protocol} its connection is gone, as the transport would."""
    protocol.connectionLost(Failure(ConnectionDone("closed")))


# -- a game's own protocol, as a game team would write it ---------------------


class EmoteProtocol(ClientProtocol):
    """A game protocol adding messages to the standard ones."""

    def message_emote(self, message):
        name = self.field(message, "name", str)
        times = self.field(message, "times", int, default=1, required=False)
        self.factory.emotes.append((name, times))
        return {"done": True, "name": name, "times": times}

    def message_game_wave(self, message):
        """Handles "game.wave": dots in a type become underscores."""
        return {"waved": True}

    def message_silent(self, message):
        self.factory.emotes.append(("silent", 0))
        return None

    def message_boom(self, message):
        raise ZeroDivisionError("the handler is broken")

    def message_refuse(self, message):
        raise WireError(codes.BAD_REQUEST, "refused on purpose")

    def message_store_down(self, message):
        raise StoreUnavailable("Redis at redis.lan:7380: Lost connection")

    def message_bus_down(self, message):
        return defer.fail(BusError("hit 'k': Redis at redis.lan:7380 did not answer within 5s"))

    def message_deliver_down(self, message):
        # As GameService.deliver fails: the first failure of a gathering.
        failing = defer.fail(BusError("publish: Redis at redis.lan:7380: Not connected"))
        return defer.gatherResults([failing], consumeErrors=True)

    def message_slow(self, message):
        d = defer.Deferred()
        self.factory.pending.append(d)
        return d

    def message_returns_failure(self, message):
        return Failure(WireError(codes.BAD_REQUEST, "returned, not raised"))

    def message_slow_coroutine(self, message):
        """A Deferred that fires with a coroutine: answered with the coroutine's result."""

        async def reply():
            return {"from": "coroutine"}

        d = defer.Deferred()
        self.factory.pending.append(d)
        return d.addCallback(lambda _: reply())

    def message_spoof(self, message):
        return {"t": "spoofed", "id": 12345, "ok": 1}

    def message_huge(self, message):
        return {"blob": "x" * (self.MAX_LENGTH + 1)}


class EmoteFactory(ClientFactory):
    protocol = EmoteProtocol

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.emotes = []
        self.pending = []


def not_a_factory():
    """A callable that is not a class, for factory_class."""


# -- the harness ----------------------------------------------------------------


class GatewayTestCase(unittest.TestCase):
    """Connections to a gateway factory on a fake clock."""

    factoryClass = EmoteFactory
    wire = {"handshake_timeout": 10.0, "idle_timeout": 60.0, "max_frame_size": 4096}

    def setUp(self):
        # Collect garbage before the test ends, so that a failure left
        # unhandled in a Deferred is reported against the test that made it.
        self.addCleanup(gc.collect)
        self.config = make_config(**self.wire)
        self.reactor = MemoryReactorClock()
        self.factory = self.factoryClass(
            self.config, self.config.processes["mmo"], reactor=self.reactor
        )

    def connect(self, hello: bool = False):
        """A new connection; with C{hello}, its handshake done (and read)."""
        protocol = self.factory.buildProtocol(PEER)
        transport = StringTransport(peerAddress=PEER)
        protocol.makeConnection(transport)
        if hello:
            self.send(protocol, {"t": "hello", "id": 1, "versions": [PROTOCOL_VERSION]})
            [reply] = self.received(protocol)
            self.assertEqual(reply["t"], "reply")
        return protocol

    def send(self, protocol, message: dict) -> None:
        protocol.dataReceived(codec.frame(message))

    def received(self, protocol) -> list[dict]:
        """The messages written to C{protocol}'s transport since the last call."""
        return written_frames(protocol.transport)

    def request(self, protocol, message: dict) -> list[dict]:
        self.send(protocol, message)
        return self.received(protocol)

    def assertError(self, message, code, request_id=None, fatal=False):
        self.assertEqual(message["t"], "error")
        self.assertEqual(
            (message["code"], message["id"], message["fatal"]), (code, request_id, fatal)
        )
        self.assertIsInstance(message["message"], str)
        self.assertTrue(message["message"])
        keys = {"t", "id", "code", "message", "fatal"}
        if code == codes.UNAVAILABLE:
            keys.add("retry_after")
        self.assertEqual(set(message), keys)

    def assertUsable(self, protocol, request_id=77):
        """The connection is open and answers a ping."""
        self.assertFalse(protocol.transport.disconnecting)
        [reply] = self.request(protocol, {"t": "ping", "id": request_id})
        self.assertEqual((reply["t"], reply["id"]), ("reply", request_id))


# -- the handshake ----------------------------------------------------------------


class HandshakeTests(GatewayTestCase):
    def test_hello(self):
        """The reply carries the version, the server, the limits and the id."""
        protocol = self.connect()
        self.assertEqual(protocol.state, HANDSHAKE)
        [reply] = self.request(
            protocol, {"t": "hello", "id": 42, "versions": [1], "client": "test/1.0"}
        )
        self.assertEqual(
            reply,
            {
                "t": "reply",
                "id": 42,
                "version": 1,
                "server": f"mmo/{mmo.__version__}",
                "max_frame_size": 4096,
                "idle_timeout": 60.0,
                # No heartbeat on a plain client listener (a login server's).
                "heartbeat_interval": None,
                "heartbeat_timeout": None,
            },
        )
        self.assertEqual(protocol.state, OPEN)
        self.assertEqual(protocol.version, 1)
        self.assertFalse(protocol.transport.disconnecting)

    def test_coming_and_going_logged_at_debug(self):
        """
        A connection's hello and goodbye are logged at debug level: on a
        busy server, two info lines per connection cost more than the
        login they frame.  The client's name still reaches the event.
        """
        events = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        protocol = self.connect()
        self.request(protocol, {"t": "hello", "id": 1, "versions": [1], "client": "test/1.0"})
        self.send(protocol, {"t": "bye"})
        levels = {formatEvent(e): e["log_level"] for e in events}
        [hello] = [text for text in levels if "connected" in text]
        [bye] = [text for text in levels if "said goodbye" in text]
        self.assertIn("test/1.0", hello)
        self.assertEqual((levels[hello], levels[bye]), (LogLevel.debug, LogLevel.debug))

    def test_limits_from_config(self):
        """The reply's limits are the configured ones, and are enforced."""
        self.config = make_config(max_frame_size=2048, idle_timeout=15)
        self.factory = EmoteFactory(self.config, self.config.processes["mmo"], self.reactor)
        protocol = self.connect()
        [reply] = self.request(protocol, {"t": "hello", "id": 1, "versions": [1]})
        self.assertEqual((reply["max_frame_size"], reply["idle_timeout"]), (2048, 15.0))
        self.assertEqual(protocol.MAX_LENGTH, 2048)

    def test_highest_common_version(self):
        """The server picks the highest version both sides speak."""
        self.patch(frontend_protocol, "SUPPORTED_VERSIONS", (1, 2, 3))
        protocol = self.connect()
        [reply] = self.request(protocol, {"t": "hello", "id": 1, "versions": [2, 7, 1]})
        self.assertEqual(reply["version"], 2)
        self.assertEqual(protocol.version, 2)

    def test_client_name_optional(self):
        """'client' is optional and may be anything."""
        for name in (None, 5, "x" * 100):
            protocol = self.connect()
            message = {"t": "hello", "id": 1, "versions": [1]}
            if name is not None:
                message["client"] = name
            [reply] = self.request(protocol, message)
            self.assertEqual(reply["version"], 1)

    def test_unsupported_versions(self):
        """No common version: a fatal unsupported_version error echoing the id."""
        for offered in ([], [2], [0, 99], [-1], [True], ["1"], [None], [[1]]):
            protocol = self.connect()
            [error] = self.request(protocol, {"t": "hello", "id": 3, "versions": offered})
            self.assertError(error, codes.UNSUPPORTED_VERSION, 3, fatal=True)
            self.assertIn("[1]", error["message"])
            self.assertTrue(protocol.transport.disconnecting, offered)
            self.assertNotEqual(protocol.state, OPEN)

    def test_versions_are_integers(self):
        """A float that equals a version is not that version."""
        protocol = self.connect()
        [error] = self.request(protocol, {"t": "hello", "id": 3, "versions": [1.0]})
        self.assertError(error, codes.UNSUPPORTED_VERSION, 3, fatal=True)

    def test_versions_missing_or_not_a_list(self):
        """A hello without a 'versions' array is a bad request; the client may retry."""
        protocol = self.connect()
        for message in ({"t": "hello", "id": 5}, {"t": "hello", "id": 5, "versions": 1}):
            [error] = self.request(protocol, message)
            self.assertError(error, codes.BAD_REQUEST, 5)
            self.assertFalse(protocol.transport.disconnecting)
            self.assertEqual(protocol.state, HANDSHAKE)
        [reply] = self.request(protocol, {"t": "hello", "id": 6, "versions": [1]})
        self.assertEqual((reply["id"], reply["version"]), (6, 1))

    def test_frame_before_hello(self):
        """Any other frame first: a fatal handshake_required error with the id."""
        for kind in ("ping", "emote", "nonsense", "bye", "reply"):
            protocol = self.connect()
            [error] = self.request(protocol, {"t": kind, "id": 9})
            self.assertError(error, codes.HANDSHAKE_REQUIRED, 9, fatal=True)
            self.assertTrue(protocol.transport.disconnecting)
            self.assertEqual(self.factory.emotes, [])

    def test_frame_before_hello_without_id(self):
        protocol = self.connect()
        [error] = self.request(protocol, {"t": "ping"})
        self.assertError(error, codes.HANDSHAKE_REQUIRED, None, fatal=True)

    def test_second_hello(self):
        """A second hello is a bad request; the connection stays usable."""
        protocol = self.connect(hello=True)
        [error] = self.request(protocol, {"t": "hello", "id": 2, "versions": [1]})
        self.assertError(error, codes.BAD_REQUEST, 2)
        self.assertEqual(protocol.state, OPEN)
        self.assertUsable(protocol)

    def test_hello_without_id(self):
        """A hello without an id could not be answered: a fatal bad request."""
        protocol = self.connect()
        [error] = self.request(protocol, {"t": "hello", "versions": [1]})
        self.assertError(error, codes.BAD_REQUEST, None, fatal=True)
        self.assertTrue(protocol.transport.disconnecting)
        self.assertNotEqual(protocol.state, OPEN)

    def test_requests_pipelined_after_hello(self):
        """Requests sent right behind the hello, in one write, are handled."""
        protocol = self.connect()
        protocol.dataReceived(
            codec.frame({"t": "hello", "id": 1, "versions": [1]})
            + codec.frame({"t": "ping", "id": 2})
        )
        self.assertEqual([m["id"] for m in self.received(protocol)], [1, 2])

    def test_pipelined_after_refused_hello(self):
        """After a refused hello, the frames behind it are dropped."""
        protocol = self.connect()
        protocol.dataReceived(
            codec.frame({"t": "hello", "id": 1, "versions": [99]})
            + codec.frame({"t": "ping", "id": 2})
        )
        [error] = self.received(protocol)
        self.assertError(error, codes.UNSUPPORTED_VERSION, 1, fatal=True)

    def test_hello_reply_fits_smallest_frame_limit(self):
        """
        The smallest max_frame_size the config accepts still leaves room for
        the handshake reply (with the largest id) and for error frames.
        """
        smallest = WireSection.fields["max_frame_size"].minimum
        self.config = make_config(max_frame_size=smallest, idle_timeout=86400)
        self.factory = EmoteFactory(self.config, self.config.processes["mmo"], self.reactor)
        protocol = self.connect()
        self.send(protocol, {"t": "hello", "id": 2**64 - 1, "versions": [1]})
        [reply] = self.received(protocol)
        self.assertEqual((reply["t"], reply["id"]), ("reply", 2**64 - 1))
        [error] = self.request(protocol, {"t": "hello", "id": 2**64 - 1, "versions": [1]})
        self.assertError(error, codes.BAD_REQUEST, 2**64 - 1)


# -- frame limits ---------------------------------------------------------------


def body_of_size(size: int, message: dict) -> bytes:
    """The body of C{message} padded with a "pad" string to exactly C{size} bytes."""
    for length in range(size, -1, -1):
        body = codec.encode({**message, "pad": "a" * length})
        if len(body) == size:
            return body
    raise ValueError(f"no padding makes {message!r} {size} bytes long")


class FrameLimitTests(GatewayTestCase):
    def test_exactly_the_limit(self):
        """A body of exactly max_frame_size bytes is accepted."""
        protocol = self.connect(hello=True)
        body = body_of_size(4096, {"t": "ping", "id": 2})
        protocol.dataReceived(struct.pack(">I", len(body)) + body)
        [reply] = self.received(protocol)
        self.assertEqual((reply["t"], reply["id"]), ("reply", 2))

    def test_over_the_limit(self):
        """One byte more is a fatal frame_too_large, sent without waiting for the body."""
        protocol = self.connect(hello=True)
        protocol.dataReceived(struct.pack(">I", 4097))
        [error] = self.received(protocol)
        self.assertError(error, codes.FRAME_TOO_LARGE, None, fatal=True)
        self.assertTrue(protocol.transport.disconnecting)

    def test_zero_length(self):
        protocol = self.connect(hello=True)
        protocol.dataReceived(b"\x00\x00\x00\x00")
        [error] = self.received(protocol)
        self.assertError(error, codes.BAD_FRAME, None, fatal=True)
        self.assertTrue(protocol.transport.disconnecting)

    def test_bad_body(self):
        """A bad body is fatal, before or after the handshake."""
        for hello in (False, True):
            protocol = self.connect(hello=hello)
            protocol.dataReceived(codec.frame({"t": "ping", "id": 2})[:-1] + b"\xc1")
            [error] = self.received(protocol)
            self.assertError(error, codes.BAD_FRAME, None, fatal=True)
            self.assertTrue(protocol.transport.disconnecting)

    def test_push_too_large(self):
        """The server never sends a frame over the limit: push() refuses it."""
        protocol = self.connect(hello=True)
        error = self.assertRaises(WireError, protocol.push, "news", text="x" * 4096)
        self.assertEqual(error.code, codes.FRAME_TOO_LARGE)
        self.assertEqual(self.received(protocol), [])


class ExampleSessionTests(GatewayTestCase):
    """The example session of docs/protocol.md, frame for frame."""

    wire = {}

    def test_session(self):
        self.reactor.advance(1700000000.25)
        protocol = self.connect()
        hello = {"t": "hello", "id": 1, "versions": [1], "client": "example/1.0"}
        self.assertEqual(len(codec.encode(hello)), 43)
        self.assertEqual(
            self.request(protocol, hello),
            [
                {
                    "version": 1,
                    "server": f"mmo/{mmo.__version__}",
                    "max_frame_size": 65536,
                    "idle_timeout": 120.0,
                    "heartbeat_interval": None,
                    "heartbeat_timeout": None,
                    "t": "reply",
                    "id": 1,
                }
            ],
        )
        self.send(protocol, {"t": "ping", "id": 2})
        # The reply of the worked example, byte for byte.
        self.assertEqual(
            protocol.transport.value().hex(" "),
            "00 00 00 1b 83 a4 74 69 6d 65 cb 41 d9 54 fc 40 10 00 00 a1 74 a5 72 65"
            " 70 6c 79 a2 69 64 02",
        )
        self.assertEqual(self.received(protocol), [{"time": 1700000000.25, "t": "reply", "id": 2}])
        self.assertEqual(
            self.request(protocol, {"t": "dance", "id": 3}),
            [
                {
                    "t": "error",
                    "id": 3,
                    "code": "unknown_type",
                    "message": "unknown message type 'dance'",
                    "fatal": False,
                }
            ],
        )
        self.assertEqual(
            self.request(protocol, {"t": "ping", "id": -1}),
            [
                {
                    "t": "error",
                    "id": None,
                    "code": "bad_request",
                    "message": "'id' must be a non-negative integer",
                    "fatal": False,
                }
            ],
        )
        protocol.push("notice", text="welcome")
        self.assertEqual(self.received(protocol), [{"text": "welcome", "t": "notice", "seq": 1}])
        self.factory.closeAll()
        self.assertEqual(
            self.received(protocol),
            [{"t": "bye", "code": "shutdown", "message": "the server is shutting down"}],
        )
        self.assertTrue(protocol.transport.disconnecting)


# -- requests, replies and errors ----------------------------------------


class RequestTests(GatewayTestCase):
    def test_ping(self):
        """A ping is answered with the id and the server's clock."""
        protocol = self.connect(hello=True)
        self.reactor.advance(12.5)
        [reply] = self.request(protocol, {"t": "ping", "id": 4})
        self.assertEqual(reply, {"t": "reply", "id": 4, "time": 12.5})
        self.reactor.advance(0.25)
        [reply] = self.request(protocol, {"t": "ping", "id": 5})
        self.assertEqual(reply, {"t": "reply", "id": 5, "time": 12.75})

    def test_no_id_no_reply(self):
        """A request without an id is handled but gets no reply."""
        protocol = self.connect(hello=True)
        self.assertEqual(self.request(protocol, {"t": "ping"}), [])
        self.assertEqual(self.request(protocol, {"t": "emote", "name": "bow"}), [])
        self.assertEqual(self.factory.emotes, [("bow", 1)])
        self.assertUsable(protocol)

    def test_ids_echoed(self):
        """Any non-negative integer id is echoed, up to 2**64 - 1."""
        protocol = self.connect(hello=True)
        for request_id in (0, 1, 2**31, 2**64 - 1):
            [reply] = self.request(protocol, {"t": "ping", "id": request_id})
            self.assertEqual(reply["id"], request_id)

    def test_unknown_type(self):
        """Unknown types get a non-fatal unknown_type error; the connection stays usable."""
        protocol = self.connect(hello=True)
        for kind in ("dance", "reply", "error", "message_ping", "game.dance"):
            [error] = self.request(protocol, {"t": kind, "id": 5})
            self.assertError(error, codes.UNKNOWN_TYPE, 5)
            self.assertIn(repr(kind), error["message"])
        self.assertUsable(protocol)

    def test_unknown_type_without_id(self):
        protocol = self.connect(hello=True)
        [error] = self.request(protocol, {"t": "dance"})
        self.assertError(error, codes.UNKNOWN_TYPE, None)
        self.assertUsable(protocol)

    def test_bad_id(self):
        """An id that is not a non-negative integer is a bad request, with id nil."""
        protocol = self.connect(hello=True)
        for bad in (-1, -(2**63), True, False, "1", 1.0, [1], {"a": 1}, b"1"):
            [error] = self.request(protocol, {"t": "ping", "id": bad})
            self.assertError(error, codes.BAD_REQUEST, None)
            self.assertIn("'id'", error["message"])
        self.assertUsable(protocol)

    def test_bad_id_not_handled(self):
        """A message with a bad id is not handled at all."""
        protocol = self.connect(hello=True)
        self.request(protocol, {"t": "emote", "id": -1, "name": "bow"})
        self.assertEqual(self.factory.emotes, [])

    def test_handler_exception(self):
        """
        A handler failing unexpectedly: an internal error with the id, the
        failure logged, the connection still usable.
        """
        protocol = self.connect(hello=True)
        [error] = self.request(protocol, {"t": "boom", "id": 6})
        self.assertError(error, codes.INTERNAL, 6)
        self.assertNotIn("ZeroDivisionError", error["message"])
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)
        self.assertUsable(protocol)

    def test_backend_unavailable(self):
        """
        A handler failing because the store or the bus cannot be reached
        (also inside a gathering): C{unavailable} with a retry hint and the
        id, one warning line each and no traceback; the message does not
        name the backend's address; the connection stays usable.
        """
        events = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        protocol = self.connect(hello=True)
        for request_id, kind in enumerate(("store_down", "bus_down", "deliver_down"), 10):
            [error] = self.request(protocol, {"t": kind, "id": request_id})
            self.assertError(error, codes.UNAVAILABLE, request_id)
            self.assertEqual(error["retry_after"], codes.UNAVAILABLE_RETRY_AFTER)
            self.assertNotIn("7380", error["message"])
        warned = [e for e in events if e["log_level"] == LogLevel.warn]
        self.assertEqual(len(warned), 3)
        self.assertTrue(all("7380" in formatEvent(e) for e in warned))
        self.assertEqual([e for e in events if e["log_level"] >= LogLevel.error], [])
        self.assertUsable(protocol)

    def test_handler_wire_error(self):
        """A handler raising WireError: that error, with the id."""
        protocol = self.connect(hello=True)
        [error] = self.request(protocol, {"t": "refuse", "id": 7})
        self.assertError(error, codes.BAD_REQUEST, 7)
        self.assertEqual(error["message"], "refused on purpose")
        self.assertUsable(protocol)

    def test_deferred_reply(self):
        """A handler returning a Deferred is answered when it fires."""
        protocol = self.connect(hello=True)
        self.assertEqual(self.request(protocol, {"t": "slow", "id": 8}), [])
        self.assertEqual(self.request(protocol, {"t": "slow", "id": 9}), [])
        first, second = self.factory.pending
        second.callback({"n": 2})
        self.assertEqual(self.received(protocol), [{"t": "reply", "id": 9, "n": 2}])
        first.callback({"n": 1})
        self.assertEqual(self.received(protocol), [{"t": "reply", "id": 8, "n": 1}])

    def test_deferred_failure(self):
        protocol = self.connect(hello=True)
        self.request(protocol, {"t": "slow", "id": 8})
        self.request(protocol, {"t": "slow", "id": 9})
        first, second = self.factory.pending
        first.errback(WireError(codes.BAD_REQUEST, "no"))
        [error] = self.received(protocol)
        self.assertError(error, codes.BAD_REQUEST, 8)
        second.errback(KeyError("x"))
        [error] = self.received(protocol)
        self.assertError(error, codes.INTERNAL, 9)
        self.assertEqual(len(self.flushLoggedErrors(KeyError)), 1)
        self.assertUsable(protocol)

    def test_failure_returned(self):
        """A handler returning a Failure: its error, as if raised."""
        protocol = self.connect(hello=True)
        [error] = self.request(protocol, {"t": "returns_failure", "id": 4})
        self.assertError(error, codes.BAD_REQUEST, 4)
        self.assertEqual(error["message"], "returned, not raised")
        self.assertUsable(protocol)

    def test_deferred_of_a_coroutine(self):
        """A handler's Deferred that fires with a coroutine: answered with its result."""
        protocol = self.connect(hello=True)
        self.assertEqual(self.request(protocol, {"t": "slow_coroutine", "id": 5}), [])
        self.factory.pending[0].callback(None)
        self.assertEqual(self.received(protocol), [{"t": "reply", "id": 5, "from": "coroutine"}])

    def test_deferred_reply_after_close(self):
        """A reply ready after the connection closed is dropped."""
        protocol = self.connect(hello=True)
        self.request(protocol, {"t": "slow", "id": 8})
        gone(protocol)
        self.factory.pending[0].callback({"n": 1})
        self.assertEqual(self.received(protocol), [])

    def test_reply_cannot_be_spoofed(self):
        """A handler's fields cannot change the reply's 't' or 'id'."""
        protocol = self.connect(hello=True)
        [reply] = self.request(protocol, {"t": "spoof", "id": 3})
        self.assertEqual(reply, {"t": "reply", "id": 3, "ok": 1})

    def test_handler_returning_none(self):
        protocol = self.connect(hello=True)
        self.assertEqual(self.request(protocol, {"t": "silent", "id": 3}), [])
        self.assertEqual(self.factory.emotes, [("silent", 0)])

    def test_reply_too_large(self):
        """
        A reply over the frame limit is not sent: the client gets an internal
        error for its request instead, and the connection stays usable.
        """
        protocol = self.connect(hello=True)
        [error] = self.request(protocol, {"t": "huge", "id": 3})
        self.assertError(error, codes.INTERNAL, 3)
        self.assertEqual(len(self.flushLoggedErrors(WireError)), 1)
        self.assertUsable(protocol)

    def test_error_message_fits_frame_limit(self):
        """An error quoting a long type is still sent within the frame limit."""
        protocol = self.connect(hello=True)
        kind = "x" * (4096 - 20)
        self.send(protocol, {"t": kind, "id": 3})
        data = protocol.transport.value()
        self.assertLessEqual(len(data), 4 + 4096)
        [error] = self.received(protocol)
        self.assertError(error, codes.UNKNOWN_TYPE, 3)
        self.assertTrue(error["message"].startswith("unknown message type 'xxx"))
        self.assertUsable(protocol)


class GameProtocolTests(GatewayTestCase):
    """A game's protocol, set on a factory subclass."""

    def test_factory_builds_game_protocol(self):
        protocol = self.connect()
        self.assertIsInstance(protocol, EmoteProtocol)
        self.assertIs(protocol.factory, self.factory)
        self.assertIn(protocol, self.factory.connections)

    def test_emote(self):
        protocol = self.connect(hello=True)
        [reply] = self.request(protocol, {"t": "emote", "id": 2, "name": "wave", "times": 3})
        self.assertEqual(reply, {"t": "reply", "id": 2, "done": True, "name": "wave", "times": 3})
        [reply] = self.request(protocol, {"t": "emote", "id": 3, "name": "bow"})
        self.assertEqual(reply["times"], 1)
        self.assertEqual(self.factory.emotes, [("wave", 3), ("bow", 1)])

    def test_emote_bad_fields(self):
        protocol = self.connect(hello=True)
        for message in (
            {"t": "emote", "id": 4},
            {"t": "emote", "id": 4, "name": 5},
            {"t": "emote", "id": 4, "name": b"wave"},
            {"t": "emote", "id": 4, "name": "wave", "times": True},
            {"t": "emote", "id": 4, "name": "wave", "times": 1.5},
        ):
            [error] = self.request(protocol, message)
            self.assertError(error, codes.BAD_REQUEST, 4)
        self.assertEqual(self.factory.emotes, [])
        self.assertUsable(protocol)

    def test_dotted_type(self):
        protocol = self.connect(hello=True)
        [reply] = self.request(protocol, {"t": "game.wave", "id": 2})
        self.assertEqual(reply, {"t": "reply", "id": 2, "waved": True})

    def test_plain_factory_has_no_emote(self):
        factory = ClientFactory(self.config, self.config.processes["mmo"], reactor=self.reactor)
        protocol = factory.buildProtocol(PEER)
        protocol.makeConnection(StringTransport())
        self.assertIs(type(protocol), ClientProtocol)
        self.send(protocol, {"t": "hello", "id": 1, "versions": [1]})
        self.received(protocol)
        [error] = self.request(protocol, {"t": "emote", "id": 2, "name": "wave"})
        self.assertError(error, codes.UNKNOWN_TYPE, 2)


class FieldTests(unittest.TestCase):
    """L{ClientProtocol.field}: the checks handlers use."""

    field = staticmethod(ClientProtocol.field)

    def assertBadRequest(self, *args, **kwargs):
        error = self.assertRaises(WireError, self.field, *args, **kwargs)
        self.assertEqual(error.code, codes.BAD_REQUEST)
        self.assertFalse(error.fatal)
        return error

    def test_present(self):
        self.assertEqual(self.field({"n": 3}, "n", int), 3)
        self.assertEqual(self.field({"s": "a"}, "s", str), "a")
        self.assertEqual(self.field({"f": 1}, "f", (int, float)), 1)
        self.assertEqual(self.field({"l": [1]}, "l", list), [1])

    def test_missing(self):
        error = self.assertBadRequest({}, "n", int)
        self.assertIn("'n'", error.message)
        self.assertIn("required", error.message)

    def test_optional(self):
        self.assertEqual(self.field({}, "n", int, default=7, required=False), 7)
        self.assertIsNone(self.field({}, "n", int, required=False))
        self.assertEqual(self.field({"n": 2}, "n", int, default=7, required=False), 2)

    def test_wrong_type(self):
        error = self.assertBadRequest({"n": "3"}, "n", int)
        self.assertIn("wrong type", error.message)
        self.assertBadRequest({"n": 1.0}, "n", int)
        self.assertBadRequest({"n": None}, "n", int)
        self.assertBadRequest({"s": b"a"}, "s", str)
        # Present but wrong is an error even when optional.
        self.assertBadRequest({"n": "3"}, "n", int, default=1, required=False)

    def test_bool_is_not_int(self):
        """msgpack true/false are Python bools, which are ints: kept apart."""
        self.assertBadRequest({"n": True}, "n", int)
        self.assertBadRequest({"n": False}, "n", (int, float))
        self.assertIs(self.field({"b": True}, "b", bool), True)
        self.assertIs(self.field({"b": False}, "b", (bool, int)), False)
        self.assertBadRequest({"b": 1}, "b", bool)


# -- timeouts ---------------------------------------------------------------


class TimeoutTests(GatewayTestCase):
    wire = {"handshake_timeout": 5.0, "idle_timeout": 30.0}
    tick = 2**-10

    def test_handshake_timeout(self):
        """No hello within handshake_timeout: a fatal handshake_timeout error."""
        protocol = self.connect()
        self.reactor.advance(5.0 - self.tick)
        self.assertEqual(self.received(protocol), [])
        self.assertFalse(protocol.transport.disconnecting)
        self.reactor.advance(self.tick)
        [error] = self.received(protocol)
        self.assertError(error, codes.HANDSHAKE_TIMEOUT, None, fatal=True)
        self.assertIn("5 seconds", error["message"])
        self.assertTrue(protocol.transport.disconnecting)

    def test_close_aborted_after_grace(self):
        """
        A closing connection whose peer never finishes the close (no TLS
        close_notify) is aborted after the grace period, and not before.
        """
        protocol = self.connect(hello=True)
        protocol.goodbye("shutdown", "bye")
        self.assertTrue(protocol.transport.disconnecting)
        self.reactor.advance(CLOSE_GRACE - self.tick)
        self.assertFalse(protocol.transport.disconnected)
        self.reactor.advance(self.tick)
        self.assertTrue(protocol.transport.disconnected)

    def test_no_abort_after_clean_close(self):
        """Once the connection has closed, the abort timer is gone."""
        protocol = self.connect(hello=True)
        protocol.goodbye("shutdown", "bye")
        protocol.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_handshake_timeout_despite_traffic(self):
        """Data that is not a completed hello does not extend the handshake timeout."""
        protocol = self.connect()
        frame = codec.frame({"t": "hello", "id": 1, "versions": [1]})
        self.reactor.advance(4.0)
        protocol.dataReceived(frame[:3])
        self.reactor.advance(1.0)
        [error] = self.received(protocol)
        self.assertError(error, codes.HANDSHAKE_TIMEOUT, None, fatal=True)

    def test_hello_cancels_handshake_timeout(self):
        protocol = self.connect()
        self.reactor.advance(4.0)
        self.send(protocol, {"t": "hello", "id": 1, "versions": [1]})
        self.received(protocol)
        # Only the idle timer is left.
        self.assertEqual(len(self.reactor.getDelayedCalls()), 1)
        self.reactor.advance(10.0)
        self.assertEqual(self.received(protocol), [])
        self.assertFalse(protocol.transport.disconnecting)

    def test_idle_timeout(self):
        """Silence for idle_timeout: a fatal idle_timeout error and a close."""
        protocol = self.connect(hello=True)
        self.reactor.advance(30.0 - self.tick)
        self.assertFalse(protocol.transport.disconnecting)
        self.reactor.advance(self.tick)
        [error] = self.received(protocol)
        self.assertError(error, codes.IDLE_TIMEOUT, None, fatal=True)
        self.assertIn("30 seconds", error["message"])
        self.assertTrue(protocol.transport.disconnecting)

    def test_idle_timeout_reset_by_data(self):
        """Every piece of data received restarts the idle timeout."""
        protocol = self.connect(hello=True)
        for _ in range(4):
            self.reactor.advance(29.0)
            self.assertUsable(protocol)
        ping = codec.frame({"t": "ping", "id": 5})
        for byte in range(len(ping)):
            self.reactor.advance(29.0)
            protocol.dataReceived(ping[byte : byte + 1])
        [reply] = self.received(protocol)
        self.assertEqual(reply["id"], 5)
        self.reactor.advance(30.0 - self.tick)
        self.assertFalse(protocol.transport.disconnecting)
        self.reactor.advance(self.tick)
        [error] = self.received(protocol)
        self.assertError(error, codes.IDLE_TIMEOUT, None, fatal=True)

    def test_idle_timeout_during_handshake(self):
        """The idle timeout runs from the start, handshake or not."""
        self.config = make_config(handshake_timeout=60.0, idle_timeout=2.0)
        self.factory = EmoteFactory(self.config, self.config.processes["mmo"], self.reactor)
        protocol = self.connect()
        self.reactor.advance(2.0)
        [error] = self.received(protocol)
        self.assertError(error, codes.IDLE_TIMEOUT, None, fatal=True)

    def test_one_timer_for_every_connection(self):
        """
        The idle deadlines of all connections run on one timer of the
        factory, which data received does not move; each still times out
        on its own deadline.
        """
        first = self.connect(hello=True)
        self.reactor.advance(10.0)
        second = self.connect(hello=True)
        [timer] = self.reactor.getDelayedCalls()
        due = timer.getTime()
        self.reactor.advance(5.0)
        self.send(first, {"t": "ping", "id": 2})
        self.received(first)
        self.assertEqual(self.reactor.getDelayedCalls(), [timer])
        self.assertEqual(timer.getTime(), due)
        self.reactor.advance(25.0 - self.tick)
        self.assertEqual((self.received(first), self.received(second)), ([], []))
        self.reactor.advance(self.tick)
        [error] = self.received(second)
        self.assertError(error, codes.IDLE_TIMEOUT, None, fatal=True)
        self.assertEqual(self.received(first), [])
        self.reactor.advance(5.0)
        [error] = self.received(first)
        self.assertError(error, codes.IDLE_TIMEOUT, None, fatal=True)

    def test_timers_cancelled_on_close(self):
        """A closed connection leaves no timer behind."""
        protocol = self.connect()
        self.assertEqual(len(self.reactor.getDelayedCalls()), 2)
        gone(protocol)
        self.assertEqual(self.reactor.getDelayedCalls(), [])
        self.assertEqual(protocol.state, CLOSED)
        self.assertNotIn(protocol, self.factory.connections)

    def test_nothing_after_fatal_error(self):
        """
        After a fatal error the handshake timer does not add a second error
        frame while the close is under way.
        """
        protocol = self.connect()
        [error] = self.request(protocol, {"t": "ping", "id": 1})
        self.assertError(error, codes.HANDSHAKE_REQUIRED, 1, fatal=True)
        self.reactor.advance(60.0)
        self.assertEqual(self.received(protocol), [])


# -- pushes and goodbyes -------------------------------------------------------


class SendingTests(GatewayTestCase):
    def test_push_sequence(self):
        """Pushes are numbered from 1 upward, per connection."""
        protocol = self.connect(hello=True)
        other = self.connect(hello=True)
        self.assertEqual(protocol.push("news", text="a"), 1)
        self.assertEqual(protocol.push("news", text="b"), 2)
        self.assertEqual(protocol.push("chat", seq=99, t="x"), 3)
        self.assertEqual(other.push("news", text="c"), 1)
        self.assertEqual(
            self.received(protocol),
            [
                {"t": "news", "text": "a", "seq": 1},
                {"t": "news", "text": "b", "seq": 2},
                {"t": "chat", "seq": 3},
            ],
        )
        self.assertEqual(self.received(other), [{"t": "news", "text": "c", "seq": 1}])

    def test_replies_not_numbered(self):
        """Replies and errors do not use up sequence numbers."""
        protocol = self.connect(hello=True)
        self.request(protocol, {"t": "ping", "id": 2})
        self.request(protocol, {"t": "dance", "id": 3})
        self.assertEqual(protocol.push("news"), 1)

    def test_goodbye(self):
        """goodbye() sends a bye frame, then closes; only once."""
        protocol = self.connect(hello=True)
        protocol.goodbye(codes.SHUTDOWN, "maintenance")
        self.assertEqual(
            self.received(protocol), [{"t": "bye", "code": "shutdown", "message": "maintenance"}]
        )
        self.assertTrue(protocol.transport.disconnecting)
        protocol.goodbye("other", "again")
        self.assertEqual(self.received(protocol), [])

    def test_goodbye_ignores_later_frames(self):
        protocol = self.connect(hello=True)
        protocol.goodbye(codes.SHUTDOWN, "bye")
        self.received(protocol)
        self.assertEqual(self.request(protocol, {"t": "ping", "id": 2}), [])
        self.assertEqual(self.request(protocol, {"t": "dance", "id": 3}), [])

    def test_goodbye_after_close(self):
        protocol = self.connect(hello=True)
        gone(protocol)
        protocol.goodbye(codes.SHUTDOWN, "late")
        self.assertEqual(self.received(protocol), [])

    def test_goodbye_before_handshake(self):
        protocol = self.connect()
        protocol.goodbye(codes.SHUTDOWN, "not now")
        self.assertEqual(
            self.received(protocol), [{"t": "bye", "code": "shutdown", "message": "not now"}]
        )

    def test_client_bye(self):
        """A client's bye closes the connection without a reply, even with an id."""
        for message in ({"t": "bye"}, {"t": "bye", "id": 4, "code": "x"}):
            protocol = self.connect(hello=True)
            self.assertEqual(self.request(protocol, message), [])
            self.assertTrue(protocol.transport.disconnecting)
            # Nothing after it is read.
            self.assertEqual(self.request(protocol, {"t": "ping", "id": 5}), [])


class WriteNowTransport(StringTransport):
    """
    A transport that can also write at once, as mmo's TLS connections can
    (C{writeNow}): every write and the close recorded, in order, by how.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.writes: list[tuple[str, bytes]] = []

    def write(self, data):
        self.writes.append(("write", data))
        super().write(data)

    def writeNow(self, data):
        self.writes.append(("now", data))
        super().write(data)

    def loseConnection(self):
        self.writes.append(("close", b""))
        super().loseConnection()


class FlashProtocol(EmoteProtocol):
    """Also writes frames at once while a read is handled, as a resume's replay does."""

    def message_flash(self, message):
        self.sendFramesNow(codec.frame({"t": "flash", "n": message.get("n", 0)}))
        return {"flashed": True}


class FlashFactory(EmoteFactory):
    protocol = FlashProtocol


class ReadRepliesTests(GatewayTestCase):
    """
    The replies made while a read is handled leave in one write at its
    end, sent at once (not gathered for the end of the reactor's turn).
    """

    factoryClass = FlashFactory

    def connect_now(self):
        """A connection whose transport writes at once, its handshake done."""
        protocol = self.factory.buildProtocol(PEER)
        protocol.makeConnection(WriteNowTransport(peerAddress=PEER))
        self.send(protocol, {"t": "hello", "id": 1, "versions": [PROTOCOL_VERSION]})
        [reply] = self.received(protocol)
        self.assertEqual(reply["t"], "reply")
        protocol.transport.writes.clear()
        return protocol

    def test_one_write_per_read(self):
        protocol = self.connect_now()
        protocol.dataReceived(
            codec.frame({"t": "ping", "id": 2})
            + codec.frame({"t": "emote", "id": 3, "name": "wave"})
            + codec.frame({"t": "silent", "id": 4})
        )
        [(how, data)] = protocol.transport.writes
        self.assertEqual(how, "now")
        self.assertEqual(
            [(m["t"], m["id"]) for m in support.decode_frames(data)],
            [("reply", 2), ("reply", 3)],
        )

    def test_a_large_read_sent_in_parts(self):
        """What a read gathers is sent every GATHERED_MOST frames, the rest at its end."""
        protocol = self.connect_now()
        count = 3 * GATHERED_MOST + 5
        protocol.dataReceived(b"".join(codec.frame({"t": "ping", "id": i}) for i in range(count)))
        writes = protocol.transport.writes
        self.assertEqual([how for how, _ in writes], ["now"] * 4)
        self.assertEqual(
            [len(support.decode_frames(data)) for _, data in writes],
            [GATHERED_MOST] * 3 + [5],
        )
        self.assertEqual([m["id"] for m in self.received(protocol)], list(range(count)))

    def test_frames_written_at_once_come_after_earlier_replies(self):
        """A frame written at once during the read goes after the replies made before it."""
        protocol = self.connect_now()
        protocol.dataReceived(
            codec.frame({"t": "ping", "id": 2})
            + codec.frame({"t": "flash", "id": 3, "n": 7})
            + codec.frame({"t": "ping", "id": 4})
        )
        self.assertEqual([how for how, _ in protocol.transport.writes], ["now", "now"])
        messages = self.received(protocol)
        self.assertEqual(
            [(m["t"], m.get("id"), m.get("n")) for m in messages],
            [("reply", 2, None), ("flash", None, 7), ("reply", 3, None), ("reply", 4, None)],
        )

    def test_fatal_error_written_before_the_close(self):
        protocol = self.connect_now()
        protocol.dataReceived(codec.frame({"t": "ping", "id": 2}) + struct.pack(">I", 10**6))
        writes = protocol.transport.writes
        self.assertEqual([how for how, _ in writes], ["now", "close"])
        [reply, error] = support.decode_frames(writes[0][1])
        self.assertEqual((reply["t"], reply["id"]), ("reply", 2))
        self.assertError(error, codes.FRAME_TOO_LARGE, fatal=True)

    def test_frames_outside_a_read_as_before(self):
        """A push or a late reply, outside a read, is written as before."""
        protocol = self.connect_now()
        protocol.push("news", text="a")
        self.send(protocol, {"t": "slow", "id": 5})
        self.factory.pending.pop().callback({"late": True})
        self.assertEqual([how for how, _ in protocol.transport.writes], ["write", "write"])
        self.assertEqual(
            [(m["t"], m.get("id")) for m in self.received(protocol)],
            [("news", None), ("reply", 5)],
        )

    def test_a_handler_that_raises_still_sends(self):
        """What the read made before a handler's error is sent with the error frame."""
        protocol = self.connect_now()
        protocol.dataReceived(
            codec.frame({"t": "ping", "id": 2}) + codec.frame({"t": "boom", "id": 3})
        )
        self.flushLoggedErrors(ZeroDivisionError)
        [(how, data)] = protocol.transport.writes
        [reply, error] = support.decode_frames(data)
        self.assertEqual((reply["t"], reply["id"]), ("reply", 2))
        self.assertError(error, codes.INTERNAL, 3)


class CloseAllTests(GatewayTestCase):
    def test_no_connections(self):
        self.assertIsNone(self.successResultOf(self.factory.closeAll()))

    def test_close_all(self):
        """Everyone gets a goodbye; the result fires once every connection is gone."""
        first = self.connect(hello=True)
        second = self.connect()
        d = self.factory.closeAll()
        for protocol in (first, second):
            self.assertEqual(
                self.received(protocol),
                [{"t": "bye", "code": "shutdown", "message": "the server is shutting down"}],
            )
            self.assertTrue(protocol.transport.disconnecting)
        self.assertNoResult(d)
        gone(first)
        self.assertNoResult(d)
        gone(second)
        self.assertIsNone(self.successResultOf(d))
        self.assertEqual(self.factory.connections, set())
        # The abort timer is gone, and so are the connections' timers.
        self.assertEqual(self.reactor.getDelayedCalls(), [])
        self.assertFalse(first.transport.disconnected)
        self.assertFalse(second.transport.disconnected)

    def test_code_and_message(self):
        protocol = self.connect(hello=True)
        self.factory.closeAll("restart", "back soon")
        self.assertEqual(
            self.received(protocol), [{"t": "bye", "code": "restart", "message": "back soon"}]
        )

    def test_abort_after_timeout(self):
        """Connections that did not close within the timeout are aborted."""
        polite = self.connect(hello=True)
        stubborn = self.connect(hello=True)
        d = self.factory.closeAll(timeout=3.0)
        gone(polite)
        self.reactor.advance(3.0 - 2**-10)
        self.assertFalse(stubborn.transport.disconnected)
        self.reactor.advance(2**-10)
        self.assertTrue(stubborn.transport.disconnected)
        self.assertFalse(polite.transport.disconnected)
        self.assertNoResult(d)
        gone(stubborn)
        self.assertIsNone(self.successResultOf(d))

    def test_waiting_twice(self):
        protocol = self.connect(hello=True)
        first = self.factory.closeAll()
        second = self.factory.closeAll()
        self.assertEqual(len(self.received(protocol)), 1)
        gone(protocol)
        self.assertIsNone(self.successResultOf(first))
        self.assertIsNone(self.successResultOf(second))

    def test_connection_set(self):
        first, second = self.connect(), self.connect()
        self.assertEqual(self.factory.connections, {first, second})
        gone(first)
        self.assertEqual(self.factory.connections, {second})


class GatewayProtocolTests(GatewayTestCase):
    """The gateway protocol before a client is admitted (sessions: tests/test_sessions.py)."""

    def setUp(self):
        super().setUp()
        bus = MemoryBus(reactor=self.reactor)
        signer = TicketSigner(b"k" * 64, 60.0, self.reactor)
        self.factory = support.gateway(self.config, "mmo", bus, signer, clock=self.reactor)

    def test_hello_heartbeat(self):
        """A gateway's hello reply tells the [gateway] heartbeat interval and timeout."""
        protocol = self.connect()
        [reply] = self.request(protocol, {"t": "hello", "id": 1, "versions": [1]})
        gateway = self.config.gateway
        self.assertEqual(
            (reply["heartbeat_interval"], reply["heartbeat_timeout"]),
            (float(gateway.heartbeat_interval), float(gateway.heartbeat_timeout)),
        )
        self.assertIsInstance(reply["heartbeat_interval"], float)

    def test_push_before_admission(self):
        """Until a session exists, pushes are numbered per connection, as before."""
        protocol = self.connect(hello=True)
        self.assertIsNone(protocol.session)
        self.assertEqual([protocol.push("news", n=i) for i in range(3)], [1, 2, 3])
        self.assertEqual([m["seq"] for m in self.received(protocol)], [1, 2, 3])

    def test_open_before_admission(self):
        """pong and resume are open before auth; routed types are not."""
        protocol = self.connect(hello=True)
        self.assertEqual(self.request(protocol, {"t": "pong", "id": 2}), [{"t": "reply", "id": 2}])
        [error] = self.request(protocol, {"t": "room.join", "id": 3})
        self.assertError(error, codes.AUTH_REQUIRED, 3)
        [error] = self.request(protocol, {"t": "resume", "id": 4, "token": 5, "last_seq": 0})
        self.assertError(error, codes.BAD_REQUEST, 4)

    def test_no_heartbeat_before_admission(self):
        protocol = self.connect(hello=True)
        self.reactor.advance(self.config.gateway.heartbeat_interval * 2)
        self.assertEqual(self.received(protocol), [])


# -- the factory class named by the config ----------------------------------


class FactoryClassTests(unittest.TestCase):
    def test_default(self):
        config = make_config()
        self.assertIs(factory_class(config, config.processes["mmo"]), ClientFactory)

    def test_named(self):
        config = make_config(factory="tests.test_frontend.EmoteFactory")
        self.assertIs(factory_class(config, config.processes["mmo"]), EmoteFactory)

    def assertFactoryError(self, name, *fragments):
        config = make_config(factory=name)
        error = self.assertRaises(ConfigError, factory_class, config, config.processes["mmo"])
        self.assertEqual(error.path, ("processes", "mmo", "factory"))
        self.assertTrue(str(error).startswith("processes.mmo.factory: "), str(error))
        for fragment in fragments:
            self.assertIn(fragment, str(error))
        return error

    def test_unknown(self):
        self.assertFactoryError("tests.test_frontend.NoSuchFactory", "cannot import")
        self.assertFactoryError("no_such_module_here.Factory", "cannot import")

    def test_not_a_factory(self):
        for name in (
            "mmo.config.Config",
            "tests.test_frontend.not_a_factory",
            "mmo.gateway.protocol.ClientProtocol",
        ):
            self.assertFactoryError(name, "not a subclass of mmo.frontend.factory.ClientFactory")

    def test_names_file(self):
        config = make_config(factory="mmo.config.Config")
        config.file = "/etc/mmo.toml"
        error = self.assertRaises(ConfigError, factory_class, config, config.processes["mmo"])
        self.assertTrue(str(error).startswith("/etc/mmo.toml: processes.mmo.factory: "))

    def test_service_uses_it(self):
        """The gateway service builds the named factory, on its reactor."""
        config = deployment(
            self,
            """
            [processes.mmo]
            kind = "mmo"
            client = "tcp:0:interface=127.0.0.1"
            factory = "tests.test_frontend.EmoteFactory"
            """,
        )
        reactor = MemoryReactorClock()
        service = ClientListener(config, config.processes["mmo"], reactor=reactor)
        self.assertIsInstance(service.factory, EmoteFactory)
        self.assertIs(service.factory.reactor, reactor)
        self.assertIs(service.portFactory.wrappedFactory, service.factory)


# -- the client SDK --------------------------------------------------------------


class ClientTests(unittest.TestCase):
    """L{mmo.client.Client} against a StringTransport."""

    def setUp(self):
        self.client = sdk.Client()
        self.transport = StringTransport()
        self.client.makeConnection(self.transport)

    def sent(self) -> list[dict]:
        return written_frames(self.transport)

    def feed(self, message: dict) -> None:
        self.client.dataReceived(codec.frame(message))

    def welcome(self, **fields):
        self.sent()
        self.feed(
            {
                "t": "reply",
                "id": 1,
                "version": 1,
                "server": "mmo/test",
                "max_frame_size": 4096,
                "idle_timeout": 60.0,
                **fields,
            }
        )

    def test_hello(self):
        """The client opens with a hello offering its versions, with id 1."""
        [hello] = self.sent()
        self.assertEqual(
            hello,
            {
                "t": "hello",
                "id": 1,
                "versions": list(SUPPORTED_VERSIONS),
                "client": f"mmo-python/{mmo.__version__}",
            },
        )

    def test_when_ready(self):
        """whenReady fires with the client once the hello reply is in."""
        d = self.client.whenReady()
        self.assertNoResult(d)
        self.welcome()
        self.assertIs(self.successResultOf(d), self.client)
        self.assertEqual(self.client.welcome["server"], "mmo/test")
        self.assertNotIn("t", self.client.welcome)
        self.assertEqual(self.client.MAX_LENGTH, 4096)
        # Later callers get the same outcome at once.
        self.assertIs(self.successResultOf(self.client.whenReady()), self.client)

    def test_refused(self):
        d = self.client.whenReady()
        self.feed(
            {
                "t": "error",
                "id": 1,
                "code": "unsupported_version",
                "message": "no",
                "fatal": True,
            }
        )
        failure = self.failureResultOf(d, sdk.ServerError)
        self.assertEqual((failure.value.code, failure.value.fatal), ("unsupported_version", True))

    def test_request_ids_increase(self):
        self.welcome()
        self.client.request("ping")
        self.client.request("emote", name="wave")
        self.client.request("ping")
        self.assertEqual(
            self.sent(),
            [
                {"t": "ping", "id": 2},
                {"t": "emote", "id": 3, "name": "wave"},
                {"t": "ping", "id": 4},
            ],
        )

    def test_reply_resolves_its_request(self):
        self.welcome()
        first = self.client.request("ping")
        second = self.client.request("ping")
        self.feed({"t": "reply", "id": 3, "time": 2.0})
        self.assertNoResult(first)
        self.assertEqual(self.successResultOf(second), {"time": 2.0})
        self.feed({"t": "reply", "id": 2, "time": 1.0})
        self.assertEqual(self.successResultOf(first), {"time": 1.0})

    def test_unknown_reply_ignored(self):
        self.welcome()
        d = self.client.request("ping")
        self.feed({"t": "reply", "id": 99})
        self.assertNoResult(d)

    def test_error_fails_its_request(self):
        self.welcome()
        first = self.client.request("dance")
        second = self.client.request("ping")
        self.feed(
            {"t": "error", "id": 2, "code": "unknown_type", "message": "what", "fatal": False}
        )
        failure = self.failureResultOf(first, sdk.ServerError)
        self.assertEqual(
            (failure.value.code, failure.value.message, failure.value.fatal),
            ("unknown_type", "what", False),
        )
        self.assertEqual(str(failure.value), "unknown_type: what")
        self.assertNoResult(second)

    def test_error_without_id(self):
        """Errors not tied to a request go to the "error" handlers."""
        self.welcome()
        seen = []
        self.client.on("error", seen.append)
        d = self.client.request("ping")
        error = {"t": "error", "id": None, "code": "idle_timeout", "message": "m", "fatal": True}
        self.feed(error)
        self.assertEqual(seen, [error])
        self.assertNoResult(d)

    def test_pushes(self):
        self.welcome()
        news, chat = [], []
        self.client.on("news", news.append)
        self.client.on("news", lambda m: news.append("again"))
        self.client.on("chat", chat.append)
        self.feed({"t": "news", "seq": 1, "text": "a"})
        self.assertEqual(self.client.last_seq, 1)
        self.feed({"t": "chat", "seq": 2, "text": "b"})
        self.feed({"t": "other", "seq": 3})
        self.assertEqual(news, [{"t": "news", "seq": 1, "text": "a"}, "again"])
        self.assertEqual(chat, [{"t": "chat", "seq": 2, "text": "b"}])
        self.assertEqual(self.client.last_seq, 3)

    def test_failing_handler(self):
        """A handler that raises is logged; the others still run."""
        self.welcome()
        seen = []
        self.client.on("news", lambda m: 1 / 0)
        self.client.on("news", seen.append)
        self.feed({"t": "news", "seq": 1})
        self.assertEqual(len(seen), 1)
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)

    def test_bye_then_close(self):
        """After a bye, pending requests fail with the goodbye's code."""
        self.welcome()
        byes = []
        self.client.on("bye", byes.append)
        d = self.client.request("slow")
        self.feed({"t": "bye", "code": "shutdown", "message": "maintenance"})
        self.assertEqual(byes, [{"t": "bye", "code": "shutdown", "message": "maintenance"}])
        self.assertNoResult(d)
        self.client.connectionLost(Failure(ConnectionDone()))
        failure = self.failureResultOf(d, sdk.ConnectionClosed)
        self.assertEqual((failure.value.code, failure.value.message), ("shutdown", "maintenance"))
        closed = self.successResultOf(self.client.whenClosed())
        self.assertEqual(closed.code, "shutdown")
        # And nothing more can be asked.
        late = self.client.request("ping")
        self.assertIsNone(self.failureResultOf(late, sdk.ConnectionClosed).value.code)

    def test_lost_without_bye(self):
        self.welcome()
        d = self.client.request("ping")
        self.client.connectionLost(Failure(ConnectionLost("reset")))
        failure = self.failureResultOf(d, sdk.ConnectionClosed)
        self.assertIsNone(failure.value.code)
        self.assertIn("reset", failure.value.message)

    def test_lost_before_ready(self):
        ready = self.client.whenReady()
        self.client.connectionLost(Failure(ConnectionDone()))
        self.failureResultOf(ready, sdk.ConnectionClosed)

    def test_close(self):
        """close() says bye and closes; it fires once the connection is gone."""
        self.welcome()
        d = self.client.close()
        self.assertEqual(self.sent(), [{"t": "bye"}])
        self.assertTrue(self.transport.disconnecting)
        self.assertNoResult(d)
        self.client.connectionLost(Failure(ConnectionDone()))
        self.assertIsInstance(self.successResultOf(d), sdk.ConnectionClosed)

    def test_unreadable_frame(self):
        """A server frame the client cannot read closes the connection."""
        self.welcome()
        self.client.dataReceived(struct.pack(">I", 1) + b"\xc1")
        self.assertTrue(self.transport.disconnecting)
        self.assertTrue(self.client.closing)

    def test_frames_however_cut(self):
        """
        Several frames in one read, and frames cut anywhere across reads,
        are all read, in order.
        """
        self.welcome()
        seen = []
        self.client.on("news", lambda m: seen.append(m["seq"]))
        data = b"".join(codec.frame({"t": "news", "seq": n}) for n in range(1, 8))
        for cut in ([len(data)], [5, 7, 30, len(data)], [3, 40, 41, 45, len(data)]):
            start = 0
            for end in cut:
                self.client.dataReceived(data[start:end])
                start = end
            self.assertEqual(seen, list(range(1, 8)))
            del seen[:]

    def test_stops_at_a_bad_frame(self):
        """
        In a read of several frames, those before an unreadable one are
        handled, and none after it; one over the limit closes as well.
        """
        self.welcome()
        seen = []
        self.client.on("news", lambda m: seen.append(m["seq"]))
        news = [codec.frame({"t": "news", "seq": n}) for n in (1, 2)]
        self.client.dataReceived(news[0] + struct.pack(">I", 1) + b"\xc1" + news[1])
        self.assertEqual((seen, self.client.closing), ([1], True))

        over = sdk.Client()
        over.makeConnection(StringTransport())
        over.MAX_LENGTH = 64
        over.on("news", lambda m: seen.append(m["seq"]))
        over.dataReceived(news[1] + struct.pack(">I", 65) + b"x" * 65 + news[0])
        self.assertEqual((seen, over.closing), ([1, 2], True))


class RecordingEndpoint:
    """An endpoint that connects at once to a StringTransport and keeps the factories."""

    def __init__(self):
        self.factories = []

    def connect(self, factory):
        self.factories.append(factory)
        protocol = factory.buildProtocol(PEER)
        protocol.makeConnection(StringTransport())
        return defer.succeed(protocol)


class ConnectProtocolTests(unittest.TestCase):
    def test_connects_the_given_protocol(self):
        """The result fires with the very protocol given, connected."""
        endpoint, client = RecordingEndpoint(), sdk.Client()
        connected = self.successResultOf(sdk.connect_protocol(endpoint, client))
        self.assertIs(connected, client)
        self.assertIsNotNone(client.transport)

    def test_one_factory_class(self):
        """
        Every connection's factory is of one class, which zope.interface
        describes once (Twisted's C{connectProtocol} makes a class per call).
        """
        endpoint = RecordingEndpoint()
        for _ in range(3):
            sdk.connect_protocol(endpoint, sdk.Client())
        self.assertEqual(len({type(factory) for factory in endpoint.factories}), 1)


class EndToEndTests(unittest.TestCase):
    """The SDK client and the gateway protocol over a pair of linked fake transports."""

    def setUp(self):
        self.reactor = MemoryReactorClock()
        config = make_config(max_frame_size=8192)
        self.factory = EmoteFactory(config, config.processes["mmo"], reactor=self.reactor)
        self.server = self.factory.buildProtocol(PEER)
        self.client = sdk.Client()
        self.pump = iosim.connect(
            self.server,
            iosim.makeFakeServer(self.server),
            self.client,
            iosim.makeFakeClient(self.client),
            clock=self.reactor,
        )

    def test_session(self):
        self.assertIs(self.successResultOf(self.client.whenReady()), self.client)
        self.assertEqual(self.client.welcome["max_frame_size"], 8192)
        self.assertEqual(self.server.state, OPEN)
        self.reactor.advance(3.0)
        ping = self.client.request("ping")
        emote = self.client.request("emote", name="bow")
        dance = self.client.request("dance")
        self.pump.flush()
        self.assertEqual(self.successResultOf(ping)["time"], self.reactor.seconds())
        self.assertEqual(self.successResultOf(emote)["name"], "bow")
        self.assertEqual(self.failureResultOf(dance, sdk.ServerError).value.code, "unknown_type")
        seen = []
        self.client.on("news", seen.append)
        self.server.push("news", text="hi")
        self.pump.flush()
        self.assertEqual(seen, [{"t": "news", "text": "hi", "seq": 1}])
        self.assertEqual(self.client.last_seq, 1)
        closed = self.client.whenClosed()
        pending = self.client.request("slow")
        self.factory.closeAll()
        self.pump.flush()
        self.assertEqual(self.successResultOf(closed).code, "shutdown")
        self.assertEqual(self.failureResultOf(pending, sdk.ConnectionClosed).value.code, "shutdown")
        self.assertEqual(self.factory.connections, set())

    def test_client_close(self):
        self.successResultOf(self.client.whenReady())
        d = self.client.close()
        self.pump.flush()
        self.assertIsNone(self.successResultOf(d).code)
        self.assertEqual(self.server.state, CLOSED)
        self.assertEqual(self.factory.connections, set())


class DeadlinesTests(unittest.TestCase):
    """L{Deadlines}: many connections' deadlines on one timer."""

    def test_in_order_on_one_timer(self):
        """
        Each connection is looked at on its time, earliest first, on one
        timer; one whose deadline fails is logged and the others go on.
        """
        clock = task.Clock()
        deadlines = Deadlines(clock)
        seen = []

        class Watched:
            def __init__(self, name, again=None):
                self.name, self.again = name, again

            def deadlineReached(self, now):
                seen.append((self.name, now))
                if self.name == "broken":
                    raise ZeroDivisionError("a bug")
                again, self.again = self.again, None
                return again

        deadlines.due(Watched("late"), 5.0)
        early = Watched("early", again=7.0)
        deadlines.due(early, 2.0)
        deadlines.due(early, 3.0)  # later than it asked already: no change
        deadlines.due(Watched("broken"), 1.0)
        self.assertEqual(len(clock.getDelayedCalls()), 1)
        for step in (1.0, 1.0, 3.0, 2.0):
            clock.advance(step)
        self.assertEqual(seen, [("broken", 1.0), ("early", 2.0), ("late", 5.0), ("early", 7.0)])
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)
        self.assertEqual((len(deadlines), clock.getDelayedCalls()), (0, []))

    def test_forgotten(self):
        """A connection forgotten (closed) is not looked at, and leaves no timer."""
        clock = task.Clock()
        deadlines = Deadlines(clock)
        seen = []

        class Watched:
            def deadlineReached(self, now):
                seen.append(now)

        one, other = Watched(), Watched()
        deadlines.due(one, 1.0)
        deadlines.due(other, 2.0)
        deadlines.forget(one)
        clock.advance(1.5)
        self.assertEqual(seen, [])
        deadlines.forget(other)
        self.assertEqual(clock.getDelayedCalls(), [])
