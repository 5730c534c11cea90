"""
Tests for L{mmo.bus.resp}, the strict reader of the Redis subscriber
connection's replies: what it reads, however the bytes are cut; what it
refuses; and the subscriber link that meets such bytes (dropped, then made
again on a private redis-server).
"""

from __future__ import annotations

from twisted.internet import reactor
from twisted.internet.testing import StringTransport
from twisted.logger import Logger
from twisted.trial import unittest
from txredisapi import ResponseError

from mmo import config
from mmo.bus.resp import RespError, RespReader
from tests.redis import redis_config_text, start_redis
from tests.support import LogCapture, bounded, until, write_config

BUS = """
[bus]
backend = "redis"

[processes.zone-1]
kind = "zone"

[processes.zone-2]
kind = "zone"
"""
MESSAGE = b"*3\r\n$7\r\nmessage\r\n$10\r\ntest:ch:zo\r\n$5\r\n\x81\xa1a\x01\r\r\n"
REPLIES = (
    MESSAGE
    + b"*3\r\n$9\r\nsubscribe\r\n$2\r\nch\r\n:1\r\n"
    + b"+OK\r\n"
    + b"-WRONGPASS invalid username-password pair\r\n"
    + b"*2\r\n$4\r\npong\r\n$0\r\n\r\n"
    + b"$-1\r\n"
    + b"*-1\r\n"
    + b":-3\r\n"
)
EXPECTED = [
    [b"message", b"test:ch:zo", b"\x81\xa1a\x01\r"],
    [b"subscribe", b"ch", 1],
    "OK",
    "WRONGPASS invalid username-password pair",
    [b"pong", b""],
    None,
    None,
    -3,
]


def comparable(replies):
    return [str(r) if isinstance(r, ResponseError) else r for r in replies]


class ReaderTests(unittest.TestCase):
    def test_replies(self):
        """Every kind of reply of a subscriber connection, as txredisapi gives them."""
        replies = RespReader().feed(REPLIES)
        self.assertEqual(comparable(replies), EXPECTED)
        self.assertIsInstance(replies[3], ResponseError)

    def test_any_cut(self):
        """Cut in two anywhere, or fed a byte at a time, the bytes give the same replies."""
        for cut in range(1, len(REPLIES)):
            reader = RespReader()
            replies = reader.feed(REPLIES[:cut]) + reader.feed(REPLIES[cut:])
            self.assertEqual(comparable(replies), EXPECTED, cut)
        reader = RespReader()
        replies = []
        for i in range(len(REPLIES)):
            replies += reader.feed(REPLIES[i : i + 1])
        self.assertEqual(comparable(replies), EXPECTED)

    def test_long_message_in_chunks(self):
        """A message longer than a read comes whole, once its last byte is in."""
        body = bytes(range(256)) * 4000
        data = b"*3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$%d\r\n%s\r\n" % (len(body), body)
        reader = RespReader()
        replies = []
        for i in range(0, len(data), 65536):
            replies += reader.feed(data[i : i + 65536])
        self.assertEqual(replies, [[b"message", b"c", body]])

    def test_refused(self):
        """Bytes that are no reply of a subscriber connection, or past the bounds."""
        reader = RespReader(max_bulk=10, max_items=4, max_line=20)
        for data in [
            b"?what\r\n",
            b"$+5\r\nhello\r\n",
            b"$ 5\r\nhello\r\n",
            b":1_0\r\n",
            b"*\r\n",
            b"$3\r\nhello\r\n",
            b"$-2\r\n",
            b"$11\r\n",
            b"*5\r\n",
            b"*1\r\n*1\r\n:1\r\n",
            b"+" + b"x" * 30,
            b"+" + b"x" * 30 + b"\r\n",
            b"+\xff\r\n",
        ]:
            refusing = RespReader(max_bulk=10, max_items=4, max_line=20)
            self.assertRaises(RespError, refusing.feed, data)
        self.assertEqual(reader.feed(b"$10\r\n0123456789\r\n"), [b"0123456789"])


class Bus:
    """What a L{_Subscriber} reports to."""

    where = "nowhere"

    log = Logger()

    def __init__(self):
        self.messages = []
        self.runs = []

    def messages_received(self, channel, datas):
        self.runs.append((channel, list(datas)))
        self.messages.extend((channel, data) for data in datas)


class SubscriberTests(unittest.TestCase):
    def setUp(self):
        from mmo.bus.redis_subscriber import _Subscriber

        self.logs = LogCapture(self)
        self.bus = Bus()
        self.proto = _Subscriber(charset=None, convertNumbers=False)
        self.proto.factory = self
        self.transport = StringTransport()
        self.proto.transport = self.transport

    def test_messages(self):
        """Messages go to the bus, in order, however they are cut."""
        self.proto.dataReceived(MESSAGE[:20])
        self.assertEqual(self.bus.messages, [])
        self.proto.dataReceived(MESSAGE[20:] + MESSAGE)
        self.assertEqual(self.bus.messages, [(b"test:ch:zo", b"\x81\xa1a\x01\r")] * 2)
        self.assertEqual(self.proto.reads, 2)

    def test_runs(self):
        """
        The consecutive messages of one channel in a read go to the bus as
        one run; another channel's message, or a reply that is not a
        message, ends a run, and the order of everything is kept.
        """
        other = b"*3\r\n$7\r\nmessage\r\n$10\r\ntest:ch:gw\r\n$1\r\nx\r\n"
        replied = []
        self.proto.replyReceived = lambda reply: replied.append((len(self.bus.messages), reply))
        self.proto.dataReceived(MESSAGE * 3 + other + MESSAGE + b"+PONG\r\n" + MESSAGE)
        body = b"\x81\xa1a\x01\r"
        self.assertEqual(
            self.bus.runs,
            [
                (b"test:ch:zo", [body] * 3),
                (b"test:ch:gw", [b"x"]),
                (b"test:ch:zo", [body]),
                (b"test:ch:zo", [body]),
            ],
        )
        # The PONG was handled after the fifth message and before the sixth.
        self.assertEqual(replied, [(5, "PONG")])

    def test_unreadable(self):
        """Bytes that are no reply drop the link, with an error; nothing after them is read."""
        self.proto.dataReceived(MESSAGE + b"%3\r\n" + MESSAGE)
        self.assertEqual(self.bus.messages, [])
        self.assertTrue(self.transport.disconnecting)
        self.assertTrue(self.logs.matching("unreadable reply"))
        self.proto.dataReceived(MESSAGE)
        self.assertEqual(self.bus.messages, [])


class RedisSubscriberTests(unittest.TestCase):
    """The reader on a real redis-server."""

    timeout = 60

    def setUp(self):
        self.server = start_redis(self)
        text = redis_config_text(self.server)
        self.config = config.load(write_config(self, f"{text}{BUS}"))
        self.logs = LogCapture(self)

    async def make_bus(self):
        from mmo.bus.redis import RedisBus

        bus = RedisBus(self.config, reactor=reactor)
        await bounded(bus.start())
        self.addCleanup(bus.stop)
        return bus

    async def test_long_and_many(self):
        """Long messages and bursts of short ones arrive whole and in order."""
        bus = await self.make_bus()
        other = await self.make_bus()
        received = []
        await bus.subscribe("ghosts", received.append)
        sent = [{"n": i, "pad": b"x" * (i * 997 % 300_000)} for i in range(60)]
        for message in sent:
            other.publish("ghosts", message)
        await until(lambda: len(received) == len(sent))
        self.assertEqual(received, sent)

    async def test_unreadable_link_made_again(self):
        """A link that meets bytes it cannot read is dropped, and made again with every channel."""
        bus = await self.make_bus()
        other = await self.make_bus()
        received = []
        await bus.subscribe("ghosts", received.append)
        link = bus._link
        link.dataReceived(b"!garbage\r\n")
        await until(lambda: bus._link is not None and bus._link is not link)
        await bounded(bus.subscriber_ready())
        await bounded(other.publish("ghosts", {"n": 1}))
        await until(lambda: received)
        self.assertEqual(received, [{"n": 1}])
        self.assertTrue(self.logs.matching("unreadable reply"))
