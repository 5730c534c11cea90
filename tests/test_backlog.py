"""
A connection's unread output (L{mmo.frontend.backlog}): the producer the
transport pauses when its buffer is full, the count of what is written
meanwhile, and the goodbye (C{slow_reader}) past C{[listeners]
max_unsent}, over TCP, on a gateway (the session is kept for a resume) and
over WebSocket (pongs count).  C{StringTransport}s and a fake clock; the
real processes are in L{tests.test_slow_readers_e2e}.
"""

from __future__ import annotations

import base64

from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionLost
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure
from twisted.trial import unittest

from mmo.frontend.backlog import SendBacklog
from mmo.frontend.factory import ClientFactory
from mmo.frontend.websocket import CLOSE_GRACE, WebSocketFactory
from mmo.wire import codec, codes
from tests import support
from tests.test_sessions import Player, SessionTestCase

PEER = IPv4Address("TCP", "192.0.2.9", 40000)
LIMIT = 64 * 1024


class SendBacklogTests(unittest.TestCase):
    def setUp(self):
        self.overflows = []
        self.backlog = SendBacklog(100, self.overflows.append)
        self.transport = StringTransport()
        self.backlog.watch(self.transport)

    def test_no_instance_dict(self):
        """One per connection: it keeps no per-instance dict."""
        self.assertFalse(hasattr(self.backlog, "__dict__"))

    def test_registered_as_streaming_producer(self):
        self.assertIs(self.transport.producer, self.backlog)
        self.assertTrue(self.transport.streaming)

    def test_counts_only_while_paused(self):
        """What is written while the transport has room is not counted."""
        self.backlog.wrote(1000)
        self.assertEqual((self.backlog.unsent, self.overflows), (0, []))
        self.transport.producer.pauseProducing()
        self.backlog.wrote(60)
        self.backlog.wrote(40)
        self.assertEqual((self.backlog.unsent, self.overflows), (100, []))

    def test_over_the_limit_once(self):
        self.transport.producer.pauseProducing()
        self.backlog.wrote(101)
        self.backlog.wrote(500)
        self.assertEqual(self.overflows, [101])

    def test_resumed_starts_over(self):
        """The transport emptied its buffer: the count starts again."""
        self.transport.producer.pauseProducing()
        self.backlog.wrote(90)
        self.transport.producer.resumeProducing()
        self.backlog.wrote(90)
        self.transport.producer.pauseProducing()
        self.backlog.wrote(90)
        self.assertEqual((self.backlog.unsent, self.overflows), (90, []))

    def test_unwatch(self):
        self.backlog.unwatch()
        self.backlog.unwatch()
        self.assertIsNone(self.transport.producer)


def config(**listeners):
    return support.config_of(
        listeners={"max_unsent": LIMIT, **listeners},
        gateway={"resume_buffer_bytes": LIMIT},
        wire={"idle_timeout": 3600.0, "handshake_timeout": 3600.0},
    )


class ClientBacklogTests(unittest.TestCase):
    """The client protocol over TCP (a C{StringTransport}) keeps its own backlog."""

    def setUp(self):
        self.clock = MemoryReactorClock()
        self.factory = ClientFactory(config(), None, self.clock)
        self.protocol = self.factory.buildProtocol(PEER)
        self.transport = StringTransport(peerAddress=PEER)
        self.protocol.makeConnection(self.transport)
        self.protocol.dataReceived(codec.frame({"t": "hello", "id": 1, "versions": [1]}))
        self.transport.clear()

    def pings(self, count: int) -> None:
        self.protocol.dataReceived(
            b"".join(codec.frame({"t": "ping", "id": i}) for i in range(count))
        )

    def test_a_reader_is_never_cut_off(self):
        """Output the transport takes (it never pauses) is not limited."""
        self.pings(5000)
        self.assertGreater(len(self.transport.value()), LIMIT)
        self.assertFalse(self.transport.disconnecting)

    def test_cut_off_past_the_limit(self):
        """
        Once the transport is full, replies past C{max_unsent} bytes end
        the connection: goodbye C{slow_reader}, then close; the producer is
        unregistered first (TLS closes only then), nothing is read or
        answered any more, and the connection is aborted after the grace
        period.
        """
        self.assertIs(self.transport.producer, self.protocol.backlog)
        self.transport.producer.pauseProducing()
        self.pings(5000)
        frames = support.written_frames(self.transport)
        bye = frames[-1]
        self.assertEqual((bye["t"], bye["code"]), ("bye", codes.SLOW_READER))
        written = sum(len(codec.encode(f)) + 4 for f in frames[:-1])
        self.assertGreater(written, LIMIT)
        self.assertLess(written, LIMIT + 100)
        self.assertTrue(self.transport.disconnecting)
        self.assertIsNone(self.transport.producer)
        self.assertEqual(self.transport.producerState, "paused")
        self.pings(10)
        self.assertEqual(self.transport.value(), b"")
        self.clock.advance(5.0)
        self.assertTrue(self.transport.disconnected)


class WritingNow(StringTransport):
    """A transport that can write at once (as the client listeners' TLS can)."""

    def __init__(self, pause_at: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.now: list[bytes] = []
        self.pause_at = pause_at

    def writeNow(self, data: bytes) -> None:
        self.now.append(data)
        self.write(data)
        # A write may fill the transport's buffer, which pauses its producer.
        if self.pause_at is not None and len(self.value()) >= self.pause_at:
            self.producer.pauseProducing()


class SendFramesNowTests(unittest.TestCase):
    """L{ClientProtocol.sendFramesNow}: frames written at once where the transport can."""

    def connect(self, transport):
        factory = ClientFactory(config(), None, MemoryReactorClock())
        protocol = factory.buildProtocol(PEER)
        protocol.makeConnection(transport)
        return protocol

    def test_written_now(self):
        transport = WritingNow(peerAddress=PEER)
        protocol = self.connect(transport)
        frames = codec.frame({"t": "a", "seq": 1}) + codec.frame({"t": "b", "seq": 2})
        protocol.sendFramesNow(frames)
        self.assertEqual(transport.now, [frames])
        self.assertEqual([f["t"] for f in support.written_frames(transport)], ["a", "b"])

    def test_other_transports_written(self):
        """A transport that cannot write at once (WebSocket's, a test's) is written."""
        transport = StringTransport(peerAddress=PEER)
        protocol = self.connect(transport)
        protocol.sendFramesNow(codec.frame({"t": "a", "seq": 1}))
        self.assertEqual([f["t"] for f in support.written_frames(transport)], ["a"])

    def test_counted_as_gathered_writes_are(self):
        """
        The backlog counts what is written while the transport was already
        full, not the write that fills it: as for a write gathered for the
        end of the turn, which cannot pause the transport as it is made.
        """
        frame = codec.frame({"t": "a", "seq": 1})
        transport = WritingNow(pause_at=1, peerAddress=PEER)
        protocol = self.connect(transport)
        protocol.sendFramesNow(frame)
        self.assertTrue(protocol.backlog.paused)
        self.assertEqual(protocol.backlog.unsent, 0)
        protocol.sendFramesNow(frame)
        self.assertEqual(protocol.backlog.unsent, len(frame))


class GatewayBacklogTests(SessionTestCase):
    """A gateway connection cut off for not reading is a drop: the session waits for a resume."""

    def test_session_kept_for_resume(self):
        self.config.listeners.max_unsent = LIMIT
        player, reply = self.admit(self.a)
        player.transport.producer.pauseProducing()
        texts = [str(i) + "x" * 10000 for i in range(10)]
        self.deliver("gw-a", reply["session"], *texts)
        frames = player.frames()
        self.assertEqual((frames[-1]["t"], frames[-1]["code"]), ("bye", codes.SLOW_READER))
        self.assertTrue(player.transport.disconnecting)
        seen = [f["seq"] for f in frames if "seq" in f]
        player.drop()
        session = self.a.sessions.get(reply["session"])
        self.assertEqual(session.state, "detached")
        self.assertEqual(self.lobby.seen("ended"), [])
        again = Player(self.a)
        [resumed, *replayed] = again.request("resume", token=reply["resume"], last_seq=seen[-1])
        self.assertEqual((resumed["t"], resumed["seq"]), ("reply", 10))
        self.assertEqual(
            [p["text"] for p in replayed], [texts[seq - 1] for seq in range(seen[-1] + 1, 11)]
        )


def ws_frame(opcode: int, payload: bytes) -> bytes:
    """A client's masked WebSocket frame (the mask is zeros: the payload as it is)."""
    assert len(payload) < 126
    return bytes([0x80 | opcode, 0x80 | len(payload)]) + b"\0\0\0\0" + payload


class WebSocketBacklogTests(unittest.TestCase):
    """Over WebSocket the WebSocket connection keeps the backlog: pongs count."""

    def setUp(self):
        self.clock = MemoryReactorClock()
        self.clients = ClientFactory(config(), None, self.clock)
        self.factory = WebSocketFactory(
            self.clients, 65536, 3600.0, reactor=self.clock, max_unsent=LIMIT
        )
        self.protocol = self.factory.buildProtocol(PEER)
        self.transport = StringTransport(peerAddress=PEER)
        self.protocol.makeConnection(self.transport)
        key = base64.b64encode(b"0123456789abcdef")
        self.protocol.dataReceived(
            b"GET /play HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
            b"Sec-WebSocket-Key: " + key + b"\r\n\r\n"
        )
        self.assertIn(b" 101 ", self.transport.value())
        self.assertIsNotNone(self.protocol.inner)
        self.addCleanup(self.cleanup)

    def cleanup(self):
        # A StringTransport never reports the connection lost; the protocol
        # cancels autobahn's timers (on the real reactor) when told.
        self.protocol.connectionLost(Failure(ConnectionLost("test over")))

    def test_one_producer_on_tls(self):
        """The WebSocket connection's backlog is registered; the inner protocol keeps none."""
        self.assertIs(self.transport.producer, self.protocol.backlog)
        self.assertIsNone(self.protocol.inner.backlog)

    def test_pings_without_reading(self):
        """
        A browser that sends pings and reads nothing is told goodbye
        (C{slow_reader}) once the pongs pass the limit, and gets no more
        pongs; the closing handshake has its grace period, then the
        producer is unregistered and the connection dropped.
        """
        self.transport.producer.pauseProducing()
        self.transport.clear()
        ping = ws_frame(0x9, b"p" * 125)
        for _ in range(1000):
            self.protocol.dataReceived(ping * 10)
            if self.protocol.inner is None or not self.protocol.inner.canSend():
                break
        self.assertFalse(self.protocol.inner.canSend())
        out = self.transport.value()
        self.assertIn(b"slow_reader", out)
        self.assertGreater(len(out), LIMIT)
        self.assertLess(len(out), LIMIT + 2000)
        self.transport.clear()
        self.protocol.dataReceived(ping * 10)
        self.assertEqual(self.transport.value(), b"")
        self.clock.advance(CLOSE_GRACE)
        self.assertIsNone(self.transport.producer)
        self.assertTrue(self.transport.disconnecting)
