"""
The zone -> gateway stream (L{mmo.zone.streams}): the gateway's responder
(over an in-memory transport), the zone process's streams (with fake
links), and both over a real mutual-TLS link.
"""

from __future__ import annotations

from twisted.internet import endpoints, reactor
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.protocols import amp
from twisted.trial import unittest

from mmo.bus.memory import MemoryBus
from mmo.game import messages
from mmo.game.messages import Done, Moved, PushBatch, PushStems, gateway_channel
from mmo.game.routes import pack
from mmo.game.server import ServiceRPCFactory
from mmo.rpc import RPCClientService, listen_port
from mmo.rpc.commands import Stream, StreamStems
from mmo.wire import codec
from mmo.zone.streams import BusGateways, GatewayStreams, StreamedLinkFactory
from tests.support import LogCapture, bounded, deployment, until

#: A gateway and a zone process, and a process of another kind.
PROCESSES = """
[processes.gateway-1]
kind = "gateway"
client = "tcp:0:interface=127.0.0.1"

[processes.zone-1]
kind = "zone"
rpc = "tcp:0:interface=127.0.0.1"

[processes.lobby-1]
kind = "lobby"
rpc = "tcp:0:interface=127.0.0.1"
"""


def stream_box(data, command: bytes = b"Stream") -> bytes:
    """The bytes of a L{Stream} box carrying C{data} (no answer asked)."""
    return amp.AmpBox(_command=command, message=pack(data)).serialize()


#: A tick's pushes as stems.
STEMS = PushStems({"s": [codec.push_stem("world.update", {"tick": 3})]})


class ResponderTests(unittest.TestCase):
    """A gateway's link to a zone process hearing its stream (L{StreamedLinkFactory})."""

    def setUp(self):
        self.conf = deployment(self, PROCESSES)
        self.heard: list = []
        self.texts = LogCapture(self).lines

    def link(self, peer: str):
        factory = StreamedLinkFactory(
            self.conf, self.conf.process("gateway-1"), self.conf.process(peer), MemoryReactorClock()
        )
        factory.hear(self.heard.append)
        link = factory.buildProtocol(None)
        self.transport = StringTransport()
        link.makeConnection(self.transport)
        link.peer = peer
        return link

    def test_heard_in_order_nothing_answered(self):
        """A zone's messages reach the dispatcher in order; nothing goes back."""
        link = self.link("zone-1")
        first = messages.encode(PushBatch({"s": [["world.update", {}]]}), "r0c0")
        second = messages.encode(Moved("s", "e", "r0c1", 2), "r0c0")
        link.dataReceived(stream_box(first) + stream_box(second))
        self.assertEqual(self.heard, [first, second])
        self.assertEqual(self.transport.value(), b"")

    def test_ping_says_it_takes_stream(self):
        """
        The gateway's link tells the zone (answering its Ping) that it
        takes Stream, and StreamStems (it knows PushStems).
        """
        link = self.link("zone-1")
        link.dataReceived(amp.AmpBox(_command=b"Ping", _ask=b"1", nonce=b"7").serialize())
        [answer] = amp.parseString(self.transport.value())
        self.assertIn(b"Stream", answer[b"takes"])
        self.assertIn(b"StreamStems", answer[b"takes"])

    def test_stems_in_order_with_the_stream(self):
        """A StreamStems is heard in its place among the Streams around it."""
        link = self.link("zone-1")
        first = messages.encode(Moved("s", "e", "r0c1", 2), "r0c0")
        stems = messages.encode(STEMS, "r0c0")
        last = messages.encode(Moved("s", "e", "r0c1", 3), "r0c0")
        link.dataReceived(stream_box(first) + stream_box(stems, b"StreamStems") + stream_box(last))
        self.assertEqual(self.heard, [first, stems, last])
        self.assertEqual(self.transport.value(), b"")

    def test_stream_heard_without_amp_dispatch(self):
        """
        Once the zone was found allowed to send a stream's command (its
        first box, through AMP's dispatch and the senders' check), its
        later boxes are heard straight from the box: in order, a long
        message (split over several values) whole, nothing answered.
        """
        link = self.link("zone-1")
        dispatched = []
        dispatch = link.dispatchCommand
        link.dispatchCommand = lambda box: dispatched.append(box[b"_command"]) or dispatch(box)
        stems = [
            messages.encode(PushStems({"s": [codec.push_stem("world.update", {"n": n})]}), "r")
            for n in range(3)
        ]
        long = messages.encode(
            PushStems({"s": [codec.push_stem("world.update", {"pad": "x" * 150_000})]}), "r"
        )
        moved = messages.encode(Moved("s", "e", "r0c1", 2), "r0c0")
        boxes = [
            stream_box(stems[0], b"StreamStems"),
            stream_box(stems[1], b"StreamStems"),
            amp.AmpBox(
                StreamStems.makeArguments({"message": pack(long)}, None), _command=b"StreamStems"
            ).serialize(),
            stream_box(moved),
            stream_box(moved),
            stream_box(stems[2], b"StreamStems"),
        ]
        link.dataReceived(b"".join(boxes))
        self.assertEqual(self.heard, [stems[0], stems[1], long, moved, moved, stems[2]])
        self.assertEqual(dispatched, [b"StreamStems", b"Stream"])
        self.assertEqual(self.transport.value(), b"")

    def test_stream_asking_an_answer_answered(self):
        """A stream's box that asks for an answer (none does) still gets AMP's."""
        link = self.link("zone-1")
        moved = messages.encode(Moved("s", "e", "r0c1", 2), "r0c0")
        link.dataReceived(
            stream_box(moved)
            + amp.AmpBox(_command=b"Stream", _ask=b"9", message=pack(moved)).serialize()
        )
        self.assertEqual(self.heard, [moved, moved])
        [answer] = amp.parseString(self.transport.value())
        self.assertEqual(answer[b"_answer"], b"9")

    def test_stems_refused_from_other_kinds_every_time(self):
        """A process that is no zone is refused each stream box, never heard."""
        link = self.link("lobby-1")
        box = stream_box(messages.encode(STEMS, "x"), b"StreamStems")
        link.dataReceived(box + box)
        self.assertEqual(self.heard, [])
        self.assertEqual(len(self.flushLoggedErrors(amp.RemoteAmpError)), 2)

    def test_stems_refused_from_other_kinds(self):
        link = self.link("lobby-1")
        link.dataReceived(stream_box(messages.encode(STEMS, "x"), b"StreamStems"))
        self.assertEqual(self.heard, [])
        self.assertEqual(len(self.flushLoggedErrors(amp.RemoteAmpError)), 1)
        self.assertTrue(self.transport.disconnecting)

    def test_malformed_dropped(self):
        """A frame that is not msgpack is logged and dropped; the link goes on."""
        link = self.link("zone-1")
        box = amp.AmpBox(_command=b"Stream", message=b"\xc1not msgpack").serialize()
        link.dataReceived(box)
        good = messages.encode(Moved("s", "e", "r0c1", 2), "r0c0")
        link.dataReceived(stream_box(good))
        self.assertEqual(self.heard, [good])
        self.assertTrue(any("malformed" in t for t in self.texts), self.texts)
        self.assertFalse(self.transport.disconnecting)

    def test_handler_failure_logged(self):
        """A handler that raises is logged; the link goes on."""
        link = self.link("zone-1")
        link.factory.hear(lambda data: 1 / 0)
        link.dataReceived(stream_box({"type": "Moved"}))
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)
        self.assertFalse(self.transport.disconnecting)

    def test_refused_from_other_kinds(self):
        """
        A process that is no zone may not stream to a gateway: refused
        before it is heard (AMP then drops the link: nothing can be
        answered to a box that asks for no answer).
        """
        link = self.link("lobby-1")
        link.dataReceived(stream_box(messages.encode(Moved("s", "e", "r0c1", 2), "x")))
        self.assertEqual(self.heard, [])
        self.assertTrue(any("Stream from lobby-1" in t and "refused" in t for t in self.texts))
        self.assertEqual(len(self.flushLoggedErrors(amp.RemoteAmpError)), 1)
        self.assertTrue(self.transport.disconnecting)
        self.assertEqual(amp.parseString(self.transport.value()), [])


class OptionalFieldTests(unittest.TestCase):
    """
    A field whose default is C{None} travels only when set, so that a
    release that adds one (L{Done}'s C{unswitched}) still talks to one
    that does not know it.
    """

    def test_left_out_while_none(self):
        self.assertEqual(
            messages.encode(Done("t-1", "e-1"), "r0c0"),
            {"type": "Done", "from": "r0c0", "transfer_id": "t-1", "entity_id": "e-1"},
        )
        self.assertEqual(
            messages.decode(messages.encode(Done("t-1", "e-1", True), "r0c0")),
            ("r0c0", Done("t-1", "e-1", True)),
        )

    def test_older_message_decoded(self):
        """What an older release sends, without the field, is read as not set."""
        data = {"type": "Done", "from": "r0c0", "transfer_id": "t-1", "entity_id": "e-1"}
        self.assertEqual(messages.decode(data), ("r0c0", Done("t-1", "e-1")))


class FakeLink:
    """A gateway's link as the zone's streams see it: its peer, what it takes, what it got."""

    def __init__(self, peer: str, takes=("Stream",)):
        self.peer = peer
        self.peer_takes = frozenset(takes)
        self.sent: list = []

    def takes(self, command) -> bool:
        return command.commandName.decode() in self.peer_takes

    def callRemote(self, command, **kwargs):
        self.sent.append((command, kwargs))


class GatewayStreamsTests(unittest.TestCase):
    """What a zone process sends a gateway: its stream, the bus, or nowhere."""

    async def setUp(self):
        self.bus = MemoryBus()
        self.addCleanup(self.bus.stop)
        self.on_bus: list = []
        await self.bus.subscribe(gateway_channel("gateway-1"), self.on_bus.append)
        self.streams = GatewayStreams(self.bus)
        self.linked: list[str] = []
        self.streams.on_linked.append(self.linked.append)

    async def test_streamed_in_order(self):
        link = FakeLink("gateway-1")
        self.streams.linked(link)
        self.assertTrue(self.streams.streaming("gateway-1"))
        for version in (1, 2, 3):
            self.streams.send("gateway-1", Moved("s", "e", "r0c1", version), "r0c0")
        self.assertEqual(
            [kwargs["message"] for _, kwargs in link.sent],
            [pack(messages.encode(Moved("s", "e", "r0c1", v), "r0c0")) for v in (1, 2, 3)],
        )
        self.assertEqual({command for command, _ in link.sent}, {Stream})
        self.assertEqual(self.on_bus, [])
        # Nothing was missed: the views go on.
        self.assertEqual(self.linked, [])

    async def test_older_gateway_on_the_bus(self):
        """A gateway that takes no Stream gets everything on the bus, link or not."""
        link = FakeLink("gateway-1", takes=("RouteInputs",))
        self.streams.linked(link)
        self.streams.send("gateway-1", Moved("s", "e", "r0c1", 1), "r0c0")
        self.streams.unlinked(link)
        self.streams.send("gateway-1", Moved("s", "e", "r0c1", 2), "r0c0")
        await until(lambda: len(self.on_bus) == 2)
        self.assertEqual([m["version"] for m in self.on_bus], [1, 2])
        self.assertEqual(link.sent, [])

    async def test_down_drops_and_views_start_over(self):
        """
        While a gateway's stream is down what is sent it is dropped (not
        buffered, not on the bus); when it comes up, its players' views
        start over.
        """
        link = FakeLink("gateway-1")
        self.streams.linked(link)
        self.streams.unlinked(link)
        self.assertFalse(self.streams.streaming("gateway-1"))
        self.streams.send("gateway-1", Moved("s", "e", "r0c1", 1), "r0c0")
        again = FakeLink("gateway-1")
        self.streams.linked(again)
        self.assertEqual(self.linked, ["gateway-1"])
        self.assertEqual(again.sent, [])
        self.assertEqual(self.on_bus, [])

    def test_closed_link_may_have_lost(self):
        """A stream that closed may have lost what was on its way: views start over."""
        link = FakeLink("gateway-1")
        self.streams.linked(link)
        self.streams.send("gateway-1", Moved("s", "e", "r0c1", 1), "r0c0")
        self.streams.unlinked(link)
        self.streams.linked(FakeLink("gateway-1"))
        self.assertEqual(self.linked, ["gateway-1"])

    def test_replaced_link(self):
        """
        A gateway's new link (it restarted) replaces the one still up; the
        old one closing later leaves the new one streaming.
        """
        old, new = FakeLink("gateway-1"), FakeLink("gateway-1")
        self.streams.linked(old)
        self.streams.linked(new)
        self.assertEqual(self.linked, ["gateway-1"])
        self.streams.unlinked(old)
        self.assertTrue(self.streams.streaming("gateway-1"))
        self.streams.send("gateway-1", Moved("s", "e", "r0c1", 1), "r0c0")
        self.assertEqual((len(old.sent), len(new.sent)), (0, 1))

    def test_stems_to_a_gateway_that_takes_them(self):
        """Stems go in a StreamStems, on the same link as the rest, to a gateway that takes it."""
        link = FakeLink("gateway-1", takes=("Stream", "StreamStems"))
        self.streams.linked(link)
        self.assertTrue(self.streams.takes_stems("gateway-1"))
        self.streams.send("gateway-1", STEMS, "r0c0")
        self.streams.send("gateway-1", Moved("s", "e", "r0c1", 1), "r0c0")
        self.assertEqual(
            link.sent,
            [
                (StreamStems, {"message": pack(messages.encode(STEMS, "r0c0"))}),
                (Stream, {"message": pack(messages.encode(Moved("s", "e", "r0c1", 1), "r0c0"))}),
            ],
        )

    def test_who_takes_stems(self):
        """
        Only a stream whose gateway takes StreamStems: not one of the
        release before (Stream only), not an older one on the bus, not a
        stream that is down.  A zone without a process of its own sends
        stems on the bus (the standalone server's gateway).
        """
        self.streams.linked(FakeLink("gateway-1", takes=("Stream",)))
        self.streams.linked(FakeLink("gateway-2", takes=()))
        self.assertFalse(self.streams.takes_stems("gateway-1"))
        self.assertFalse(self.streams.takes_stems("gateway-2"))
        self.assertFalse(self.streams.takes_stems("gateway-3"))
        link = FakeLink("gateway-4", takes=("Stream", "StreamStems"))
        self.streams.linked(link)
        self.streams.unlinked(link)
        self.assertFalse(self.streams.takes_stems("gateway-4"))
        self.assertTrue(BusGateways(self.bus).takes_stems("gateway-1"))

    def test_never_linked_gateway(self):
        """A gateway never linked: dropped; its first link starts its views over."""
        self.streams.send("gateway-2", Moved("s", "e", "r0c1", 1), "r0c0")
        self.streams.linked(FakeLink("gateway-2"))
        self.assertEqual(self.linked, ["gateway-2"])


class Service:
    """The game service behind the zone's listener: none of its commands are used."""

    kind = "zone"


class LinkTests(unittest.TestCase):
    """A gateway's link to a zone process over mutual TLS: the zone streams on it."""

    timeout = 30

    async def test_stream_over_a_real_link(self):
        conf = deployment(self, PROCESSES)
        streams = GatewayStreams(MemoryBus())
        server = ServiceRPCFactory(
            conf, conf.process("zone-1"), Service(), reactor, streams=streams
        )
        port = await listen_port(conf, "zone-1", server, reactor)
        self.addCleanup(port.stopListening)
        factory = StreamedLinkFactory(
            conf, conf.process("gateway-1"), conf.process("zone-1"), reactor
        )
        heard: list = []
        factory.hear(heard.append)
        endpoint = endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port)
        client = RPCClientService(
            conf, "gateway-1", "zone-1", endpoint=endpoint, factory=factory, reactor=reactor
        )
        client.startService()
        self.addCleanup(lambda: bounded(client.stopService()))
        await until(lambda: streams.streaming("gateway-1"))
        # The gateway's link takes stems.
        self.assertTrue(streams.takes_stems("gateway-1"))
        sent = [Moved("s", "e", "r0c1", v) for v in range(1, 51)]
        sent[10:10] = [STEMS]
        for message in sent:
            streams.send("gateway-1", message, "r0c0")
        await until(lambda: len(heard) == len(sent))
        self.assertEqual(heard, [messages.encode(m, "r0c0") for m in sent])
        # The gateway's link closes: the stream is down.
        factory.connection.transport.loseConnection()
        await until(lambda: not streams.streaming("gateway-1"))
