"""
A zone's pushes as stems (L{mmo.game.messages.PushStems}): encoded once by
the zone (L{mmo.zone.outbox.Outbox}), numbered and sent as they are by the
gateway (L{mmo.gateway.delivery.Delivery.push_stems}); an older gateway,
and an older zone, as before (L{mmo.game.messages.PushBatch}).
"""

from __future__ import annotations

import copy
import pickle
from collections.abc import Mapping
from types import SimpleNamespace

from twisted.internet import task
from twisted.trial import unittest

from mmo import config
from mmo.bus.memory import MemoryBus
from mmo.client import WorldView
from mmo.frontend.websocket import FrameTransport
from mmo.game import messages, routes
from mmo.game.messages import PushBatch, PushStems, gateway_channel
from mmo.game.service import Caller
from mmo.gateway.delivery import Delivery
from mmo.gateway.handover import Forwards
from mmo.gateway.routing import Services
from mmo.gateway.session import Session
from mmo.gateway.sessions import Sessions
from mmo.wire import codec
from mmo.zone import kernel as pure_kernel
from mmo.zone.kernel import ATTRS, NAME, POSITION
from mmo.zone.outbox import Outbox
from mmo.zone.streams import BusGateways, GatewayStreams
from tests.support import LogCapture, compiled_module, write_config
from tests.test_streams import FakeLink
from tests.test_zone_service import WORLD

UPDATE = ("world.update", {"tick": 3, "entities": [{"id": "e-1", "x": 1.5, "y": 2.0}]})
CORRECT = ("world.correct", {"x": 1.0, "y": 2.0, "seq": 7})


def tick(pushes: dict):
    """A L{mmo.zone.simulation.TickResult} as the outbox reads it: only its pushes."""
    return SimpleNamespace(pushes=pushes)


class Connection:
    """A client's connection as a session sees it: the frames written to it."""

    def __init__(self, transport=None):
        self.frames: list[bytes] = []
        #: What each write that leaves at once was given (frames joined).
        self.writes: list[bytes] = []
        self.transport = transport
        #: Raised by every write that leaves at once, if set.
        self.failure: Exception | None = None

    def canSend(self) -> bool:
        return True

    def sendFrame(self, frame: bytes) -> None:
        self.frames.append(frame)
        if self.transport is not None:
            self.transport.write(frame)

    def sendFramesNow(self, frames: bytes) -> None:
        # As ClientProtocol's on a transport that cannot write at once:
        # the frames, joined, in one write.
        if self.failure is not None:
            raise self.failure
        self.writes.append(frames)
        offset = 0
        while offset < len(frames):
            end = offset + 4 + codec.HEADER.unpack_from(frames, offset)[0]
            self.frames.append(frames[offset:end])
            offset = end
        if self.transport is not None:
            self.transport.write(frames)

    def sendFramesWith(self, frames: bytes, writes, tag) -> bool:
        # A transport no compiled loop writes: at once.
        self.sendFramesNow(frames)
        return False


class Gateways:
    """A zone's gateways (L{BusGateways}): whether each takes stems, what each was sent."""

    def __init__(self, stems: bool):
        self.stems = stems
        self.sent: list = []

    def takes_stems(self, gateway: str) -> bool:
        return self.stems

    def send(self, gateway: str, value, sender: str) -> None:
        self.sent.append((gateway, value, sender))


class OutboxTests(unittest.TestCase):
    """The zone encodes each push once, as its client's frame, for a gateway that takes that."""

    def outbox(self, gateways) -> Outbox:
        outbox = Outbox(MemoryBus(), "r0c0", None)
        outbox.stream_to(gateways)
        return outbox

    def test_stems(self):
        gateways = Gateways(stems=True)
        self.outbox(gateways).pushes(
            tick({"gw-1": {"s-1": [CORRECT, UPDATE], "s-2": [UPDATE], None: [UPDATE]}, None: {}})
        )
        stems = {"s-1": [codec.push_stem(*CORRECT), codec.push_stem(*UPDATE)]}
        stems["s-2"] = [codec.push_stem(*UPDATE)]
        self.assertEqual(gateways.sent, [("gw-1", PushStems(stems), "r0c0")])

    def test_shared_entries(self):
        """
        An entry in many sessions' pushes, on any gateway, is in each stem
        as in the stem of that push alone; one tick's packing of it is not
        the next's, where the same object says something else.
        """
        gateways = Gateways(stems=True)
        outbox = self.outbox(gateways)
        entry = {"id": "npc-1", "x": 1.5, "y": 2.0}
        # Enough entries for the stems to be joined from their fragments.
        others = [{"id": f"npc-{i}"} for i in range(2, 20)]
        for x in (1.5, 8.25):
            entry["x"] = x
            pushes = {
                "gw-1": {"s-1": [("world.update", {"tick": 3, "update": [entry, *others]})]},
                "gw-2": {"s-2": [("world.update", {"tick": 3, "update": [*others, entry]})]},
            }
            del gateways.sent[:]
            outbox.pushes(tick(pushes))
            for gateway, by_session in pushes.items():
                stems = {s: [codec.push_stem(*push) for push in p] for s, p in by_session.items()}
                self.assertIn((gateway, PushStems(stems), "r0c0"), gateways.sent)
            [stem] = gateways.sent[-1][1].pushes["s-2"]
            update = codec.decode(codec.numbered(stem, 1)[4:])["update"]
            self.assertEqual(update, [*others, {"id": "npc-1", "x": x, "y": 2.0}])

    def test_older_gateway_gets_a_batch(self):
        gateways = Gateways(stems=False)
        self.outbox(gateways).pushes(tick({"gw-1": {"s-1": [CORRECT, UPDATE]}}))
        batch = PushBatch({"s-1": [list(CORRECT), list(UPDATE)]})
        self.assertEqual(gateways.sent, [("gw-1", batch, "r0c0")])

    def test_unencodable_push_dropped(self):
        """A push msgpack cannot encode is logged and dropped; the others go."""
        gateways = Gateways(stems=True)
        self.outbox(gateways).pushes(
            tick({"gw-1": {"s-1": [("world.odd", {"x": object()}), UPDATE], "s-2": []}})
        )
        self.assertEqual(
            gateways.sent, [("gw-1", PushStems({"s-1": [codec.push_stem(*UPDATE)]}), "r0c0")]
        )
        self.assertEqual(len(self.flushLoggedErrors(TypeError)), 1)

    def test_nothing_encoded_for_a_stream_down(self):
        """A gateway whose stream is down takes no stems: the batch is dropped as ever."""
        streams = GatewayStreams(MemoryBus())
        self.assertFalse(streams.takes_stems("gw-1"))
        self.outbox(streams).pushes(tick({"gw-1": {"s-1": [UPDATE]}}))
        self.assertFalse(streams.streaming("gw-1"))


class Gateway:
    """A gateway's sessions and delivery, on a memory bus, with session C{s-1} of Alice."""

    def __init__(self, testcase, limit: int = 1000):
        conf = config.load(write_config(testcase, WORLD))
        self.clock = task.Clock()
        self.bus = MemoryBus(reactor=self.clock)
        testcase.addCleanup(self.bus.stop)
        self.sessions = Sessions(conf, "gw-1", self.bus, Services(), self.clock)
        self.forwards = Forwards(self.clock)
        testcase.addCleanup(self.forwards.stop)
        self.delivery = Delivery(self.sessions, self.forwards, self.bus)
        alice = Caller(session="s-1", gateway="gw-1", account_id="a-1", name="Alice")
        self.alice = Session(alice, None, "token", 100, limit)
        self.sessions.registry.add(self.alice)
        self.connection = Connection()
        self.alice.attach(self.connection)
        dispatcher = messages.Dispatcher("gateway gw-1")
        dispatcher.on(PushBatch, self.delivery.push_batch)
        dispatcher.on(PushStems, self.delivery.push_stems)
        self.bus.subscribe(gateway_channel("gw-1"), dispatcher)


def numbered(*pushes, first: int = 1) -> list[bytes]:
    """The frames a client gets for C{pushes}, numbered from C{first}."""
    return [codec.numbered(codec.push_stem(*push), first + i) for i, push in enumerate(pushes)]


class PushStemsTests(unittest.TestCase):
    """A gateway numbers a zone's stems and sends them as they are."""

    def setUp(self):
        self.gateway = Gateway(self)
        self.log = LogCapture(self)

    def test_sent_kept_and_forwarded(self):
        """
        Sent in order to an attached session and kept for its resume;
        forwarded as stems for a session that moved to another gateway.
        """
        gateway = self.gateway
        gateway.forwards.add("s-gone", "gw-2")
        forwarded: list = []
        gateway.bus.subscribe(gateway_channel("gw-2"), forwarded.append)
        stems = [codec.push_stem(*CORRECT), codec.push_stem(*UPDATE)]
        gateway.delivery.push_stems(
            "r0c0", PushStems({"s-1": stems, "s-gone": stems[1:], "s-unknown": stems})
        )
        gateway.clock.advance(0)
        self.assertEqual(gateway.connection.frames, numbered(CORRECT, UPDATE))
        # The session's frames of the tick: one write, which leaves at once.
        self.assertEqual(gateway.connection.writes, [b"".join(numbered(CORRECT, UPDATE))])
        self.assertEqual(
            gateway.alice.missed(0), [frame[4:] for frame in numbered(CORRECT, UPDATE)]
        )
        self.assertEqual(
            [messages.decode(data) for data in forwarded],
            [("gw-1", PushStems({"s-gone": stems[1:]}))],
        )

    def test_frames_as_a_gateway_encodes_them(self):
        """
        The frames a client gets from a zone's stems are those a gateway
        makes of the same pushes in a batch (an older zone's).
        """
        gateway = self.gateway
        gateway.delivery.push_batch("r0c0", PushBatch({"s-1": [list(CORRECT), list(UPDATE)]}))
        stems = [codec.push_stem(*CORRECT), codec.push_stem(*UPDATE)]
        gateway.delivery.push_stems("r0c0", PushStems({"s-1": stems}))
        frames = gateway.connection.frames
        self.assertEqual([frame[:-4] for frame in frames[:2]], [f[:-4] for f in frames[2:]])
        self.assertEqual(
            [codec.decode(frame[4:]) for frame in frames],
            [
                {**CORRECT[1], "t": "world.correct", "seq": 1},
                {**UPDATE[1], "t": "world.update", "seq": 2},
            ]
            + [
                {**CORRECT[1], "t": "world.correct", "seq": 3},
                {**UPDATE[1], "t": "world.update", "seq": 4},
            ],
        )

    def test_malformed_stems_dropped(self):
        """
        A stem that is not bytes, whose header does not match its length,
        or that is over the session's frame limit, is dropped with a log
        line; the stems after it, and the other sessions, go on.
        """
        gateway = Gateway(self, limit=60)
        good = codec.push_stem(*CORRECT)
        big = codec.push_stem("world.update", {"pad": "x" * 100})
        bad = [
            "a string",
            None,
            good[:-1],
            codec.HEADER.pack(len(good) + 1) + good[4:],
            codec.HEADER.pack(1 << 30) + good[4:],
            b"",
            big,
        ]
        for stem in bad:
            gateway.delivery.push_stems("r0c0", PushStems({"s-1": [stem, good]}))
        self.assertEqual(len(gateway.connection.frames), len(bad))
        self.assertEqual(
            gateway.connection.frames, numbered(*[CORRECT] * len(bad)), gateway.connection.frames
        )
        self.assertEqual(len(self.log.matching("a push from r0c0 to Alice dropped")), len(bad))
        self.assertTrue(self.log.matching("over the limit of 60"))

    def test_send_failure(self):
        """
        A connection whose write fails: the session's stems are numbered
        and kept (for a resume), the failure is logged once, and the other
        sessions are pushed.
        """
        gateway = self.gateway
        bob = Session(
            Caller(session="s-2", gateway="gw-1", account_id="a-2", name="Bob"),
            None,
            "token",
            100,
            1000,
        )
        gateway.sessions.registry.add(bob)
        bob_connection = Connection()
        bob.attach(bob_connection)
        gateway.connection.failure = RuntimeError("the socket is gone")
        stems = [codec.push_stem(*CORRECT), codec.push_stem(*UPDATE)]
        gateway.delivery.push_stems("r0c0", PushStems({"s-1": stems, "s-2": stems}))
        self.assertEqual(gateway.alice.seq, 2)
        self.assertEqual(
            gateway.alice.missed(0), [frame[4:] for frame in numbered(CORRECT, UPDATE)]
        )
        self.assertEqual(bob_connection.frames, numbered(CORRECT, UPDATE))
        self.assertEqual(len(self.log.matching("a push from r0c0 to Alice dropped")), 1)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_malformed_batch_dropped(self):
        """Not a map of lists: logged and dropped."""
        self.gateway.delivery.push_stems("r0c0", PushStems(["x"]))
        self.gateway.delivery.push_stems("r0c0", PushStems({"s-1": b"stem"}))
        self.assertEqual(self.gateway.connection.frames, [])
        self.assertEqual(len(self.log.matching("malformed push stems from r0c0")), 1)
        self.assertEqual(len(self.log.matching("malformed pushes from r0c0")), 1)

    def test_over_the_bus_dispatcher(self):
        """A malformed stem that came on the bus drops that push, not what follows."""
        gateway = self.gateway
        data = messages.encode(PushStems({"s-1": [b"\x00\x00\x00\x09junk", b"x"]}), "r0c0")
        gateway.bus.publish(gateway_channel("gw-1"), data)
        gateway.bus.publish(
            gateway_channel("gw-1"),
            messages.encode(PushStems({"s-1": [codec.push_stem(*UPDATE)]}), "r0c0"),
        )
        gateway.clock.advance(0)
        self.assertEqual(gateway.connection.frames, numbered(UPDATE))

    def test_websocket_messages(self):
        """Over WebSocket, each numbered stem is one binary message: the push's body."""
        bodies: list[bytes] = []
        websocket = SimpleNamespace(sendBody=bodies.append)
        gateway = self.gateway
        gateway.alice.attach(Connection(FrameTransport(websocket)))
        stems = [codec.push_stem(*CORRECT), codec.push_stem(*UPDATE)]
        gateway.delivery.push_stems("r0c0", PushStems({"s-1": stems}))
        self.assertEqual(bodies, [frame[4:] for frame in numbered(CORRECT, UPDATE)])


class BusTests(unittest.TestCase):
    """
    Where the zone has no process of its own (the standalone server), it
    sends stems on the bus, to a gateway of its own release; to an older
    gateway on the bus (one that takes no L{mmo.rpc.commands.Stream}), a
    batch.  Either way the client gets the same frames.
    """

    def setUp(self):
        self.gateway = Gateway(self)
        self.heard: list = []
        self.gateway.bus.subscribe(gateway_channel("gw-1"), self.heard.append)

    def run_tick(self, gateways, pushes=(CORRECT, UPDATE)) -> None:
        outbox = Outbox(self.gateway.bus, "r0c0", None)
        outbox.stream_to(gateways)
        outbox.pushes(tick({"gw-1": {"s-1": list(pushes)}}))
        self.gateway.clock.advance(0)

    def test_standalone_bus_stems(self):
        gateways = BusGateways(self.gateway.bus)
        self.assertTrue(gateways.takes_stems("gw-1"))
        self.run_tick(gateways)
        self.assertEqual([data["type"] for data in self.heard], ["PushStems"])
        self.assertEqual(self.gateway.connection.frames, numbered(CORRECT, UPDATE))

    def test_older_gateway_batch(self):
        streams = GatewayStreams(self.gateway.bus)
        streams.linked(FakeLink("gw-1", takes=()))
        self.assertFalse(streams.takes_stems("gw-1"))
        self.run_tick(streams)
        self.assertEqual([data["type"] for data in self.heard], ["PushBatch"])
        self.assertEqual(self.gateway.connection.frames, numbered(CORRECT, UPDATE))

    def test_older_gateway_batch_of_compiled_entries(self):
        """The compiled kernel's update entries go in a batch as their dicts."""
        streams = GatewayStreams(self.gateway.bus)
        streams.linked(FakeLink("gw-1", takes=()))
        made = entries(compiled_module("mmo.zone._kernel"))
        self.run_tick(streams, [("world.update", {"tick": 3, "update": made})])
        self.assertEqual([data["type"] for data in self.heard], ["PushBatch"])
        plain = ("world.update", {"tick": 3, "update": entries(pure_kernel)})
        self.assertEqual(self.gateway.connection.frames, numbered(plain))


def entries(kernel) -> list:
    """
    Update entries as C{kernel}'s L{UpdateEntries<mmo.zone.kernel.UpdateEntries>}
    builds them, of entities whose position, name and attributes, or all
    three, changed: the compiled kernel's L{mmo.zone._kernel.UpdateEntry}
    objects, or the pure kernel's dicts.
    """
    published = {
        "e-1": [1.5, 2.0, "one", {}, "e-1"],
        "e-2": [3.0, -4.25, "two", {"hp": 3}, "e-2"],
        "e-3": [5.0, 6.0, "három", {"hp": 1, "tags": ["a"]}, "e-3"],
    }
    changed = {"e-1": POSITION, "e-2": NAME | ATTRS, "e-3": POSITION | NAME | ATTRS}
    made = kernel.UpdateEntries(changed, published)
    return [made[entity_id] for entity_id in changed]


class UpdateEntryTests(unittest.TestCase):
    """
    The compiled kernel's update entries: read-only mappings equal to the
    pure kernel's dicts, and encoded as those are, wherever a push goes.
    """

    def setUp(self):
        self.compiled = entries(compiled_module("mmo.zone._kernel"))
        self.pure = entries(pure_kernel)

    def test_a_mapping_equal_to_the_dict(self):
        for entry, plain in zip(self.compiled, self.pure, strict=True):
            self.assertIsNot(type(entry), dict)
            self.assertIsInstance(entry, Mapping)
            self.assertEqual(entry, plain)
            self.assertEqual(plain, entry)
            self.assertEqual(list(entry), list(plain))
            self.assertEqual(list(entry.items()), list(plain.items()))
            self.assertEqual(list(entry.values()), list(plain.values()))
            self.assertEqual(len(entry), len(plain))
            self.assertEqual(repr(entry), repr(plain))
            self.assertEqual([entry[key] for key in plain], list(plain.values()))
            for key in ("id", "x", "y", "name", "attrs", "other"):
                self.assertEqual(key in entry, key in plain)
                self.assertEqual(entry.get(key, "none"), plain.get(key, "none"))
            # Copied or pickled, it is that dict.
            self.assertEqual(type(copy.copy(entry)), dict)
            self.assertEqual(pickle.loads(pickle.dumps(entry)), plain)
        position, named, everything = self.compiled
        self.assertEqual(position["x"], 1.5)
        with self.assertRaises(KeyError):
            position["name"]
        with self.assertRaises(KeyError):
            named["x"]
        self.assertNotEqual(position, {"id": "e-1", "x": 1.5, "y": 2.5})
        self.assertNotEqual(position, everything)
        self.assertNotEqual(position, ["id", "x", "y"])
        with self.assertRaises(TypeError):
            hash(position)

    def test_a_client_view_takes_it(self):
        """What a client's view does with an update: the same either way."""
        views = []
        for made in (self.compiled, self.pure):
            view = WorldView()
            view.apply({"enter": [{"id": e, "x": 0.0, "y": 0.0} for e in ("e-1", "e-2", "e-3")]})
            view.apply({"update": made})
            views.append(view.entities)
        self.assertEqual(views[0], views[1])
        self.assertEqual(views[0]["e-3"]["attrs"], {"hp": 1, "tags": ["a"]})

    def test_encoded_as_the_dict(self):
        """
        The same bytes as the dict, however it is encoded: alone, in a push
        whole, joined from a tick's fragments, by the compiled kernel's
        stems, on a link between processes.
        """
        kernel = compiled_module("mmo.zone._kernel")
        # Enough of them for a stem to be joined from its fragments.
        many = 6
        pushes = {
            made is self.compiled: {"s-1": [("world.update", {"tick": 3, "update": made * many})]}
            for made in (self.compiled, self.pure)
        }
        for entry, plain in zip(self.compiled, self.pure, strict=True):
            self.assertEqual(codec.encode(entry), codec.encode(plain))
            self.assertEqual(routes.pack([entry]), routes.pack([plain]))
        for fragments in (None, {}):
            self.assertEqual(
                codec.push_stem("world.update", {"update": self.compiled * many}, fragments),
                codec.push_stem("world.update", {"update": self.pure * many}, fragments),
            )
        stems = [
            kernel.stems(pushes[compiled], codec.push_stem, kernel.Fragments(), self.fail)
            for compiled in (True, False)
        ]
        self.assertEqual(stems[0], stems[1])
        [stem] = stems[0]["s-1"]
        self.assertEqual(codec.decode(codec.numbered(stem, 1)[4:])["update"], self.pure * many)
